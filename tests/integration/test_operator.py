"""The real operator process, the real API server and the Azure simulator over HTTPS.

Covers the user's story and its failure modes: apply → Ready with the pool Azure holds carrying
the identity and extension settings the docs require; a renewal seen in status (version,
lastRotationTime, rotations, CertificateRotated Event, NodesReady RotationPropagating then True,
nodes holding the new version); a wrong clientId named in NodesReady without a crash loop; a
disruptive change refused visibly under Report and applied under ScaleToZero; a pool deleted out
of band recreated; deletion with Delete and with Orphan; ``kubectl wait`` on Ready; a misspelt vault
Stalled with VaultNotResolvable naming its host, and no pool is created for it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from support.stack import OperatorStack


def _status(stack: OperatorStack, name: str, ns: str) -> dict:  # type: ignore[type-arg]
    return dict(stack.get(name, ns).get("status", {}))


def _no_tracebacks(stack: OperatorStack) -> None:
    assert stack.operator.is_running()
    assert "Traceback" not in stack.operator.log(), stack.operator.log()[-4000:]


def test_apply_goes_ready_and_azure_holds_what_the_docs_require(stack: OperatorStack) -> None:
    ns = stack.namespace("ready")
    stack.apply(stack.manifest("render", ns))
    stack.wait_ready("render", ns)

    pool = stack.pool_in_azure("render")
    assert pool is not None
    demo = stack.demo
    identities = {k.lower(): v for k, v in pool["identity"]["userAssignedIdentities"].items()}
    assert demo["identity"]["resourceId"].lower() in identities
    vmc = pool["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    (ext,) = vmc["extensions"]
    assert (ext["publisher"], ext["type"]) == ("Microsoft.Azure.KeyVault", "KeyVaultForLinux")
    settings = ext["settings"]
    # clientId looked up from the identity (the manifest omits it), never the principal id
    assert settings["authenticationSettings"]["msiClientId"] == demo["identity"]["clientId"]
    secrets = settings["secretsManagementSettings"]
    assert [c["url"] for c in secrets["observedCertificates"]] == [demo["secretId"]]
    assert secrets["pollingIntervalInS"] == "60"

    status = _status(stack, "render", ns)
    cert = stack.control.certificate(demo["vault"], demo["certificate"])
    assert status["certificates"][0]["version"] == cert["current"]["version"]
    assert status["pool"]["resourceId"].endswith("/pools/render")
    assert (status["nodes"]["ready"], status["nodes"]["total"]) == (1, 1)
    assert status["observedGeneration"] == stack.get("render", ns)["metadata"]["generation"]
    assert "PoolCreated" in stack.event_reasons(ns)
    _no_tracebacks(stack)


def test_rotation_is_seen_counted_and_propagates(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("rotate"), stack.demo
    cert_name = f"rot-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert_name)
    stack.apply(
        stack.manifest("rot", ns, certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert_name}])
    )
    stack.wait_ready("rot", ns)
    before = _status(stack, "rot", ns)["certificates"][0]
    assert before["rotations"] == 0

    new_version = stack.control.renew_certificate(demo["vault"], cert_name)

    def rotated() -> bool:
        return bool(_status(stack, "rot", ns)["certificates"][0]["rotations"] == 1)

    stack.wait_until("rotations == 1", rotated, name="rot", namespace=ns, timeout=60)
    after = _status(stack, "rot", ns)
    item = after["certificates"][0]
    assert item["version"] == new_version != before["version"]
    assert item["thumbprint"] != before["thumbprint"]
    assert item["lastRotationTime"]
    nodes_ready = next(c for c in after["conditions"] if c["type"] == "NodesReady")
    assert (nodes_ready["status"], nodes_ready["reason"]) == ("False", "RotationPropagating")
    assert "CertificateRotated" in stack.event_reasons(ns)

    stack.wait_ready("rot", ns, timeout=120)  # one polling interval (60 s) later
    pool = stack.control.pool(
        demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "rot"
    )
    fetched = [e["versions"] for n in pool["nodes"] for e in n["extensions"].values()]
    assert fetched, pool
    assert all(new_version in versions.values() for versions in fetched), fetched
    assert _status(stack, "rot", ns)["certificates"][0]["rotations"] == 1  # counted once
    _no_tracebacks(stack)


def test_wrong_client_id_is_named_in_nodes_ready(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("wrongid"), stack.demo
    stack.apply(
        stack.manifest(
            "wrongid",
            ns,
            identity={
                "resourceId": demo["identity"]["resourceId"],
                "clientId": "00000000-0000-0000-0000-0000000000ff",
            },
        )
    )

    def named() -> bool:
        return stack.condition("wrongid", ns, "NodesReady").get("reason") == "IdentityNotFound"

    stack.wait_until("NodesReady=IdentityNotFound", named, name="wrongid", namespace=ns)
    nodes = stack.condition("wrongid", ns, "NodesReady")
    assert nodes["status"] == "False"
    assert "spec.identity.clientId" in nodes["message"]
    ready = stack.condition("wrongid", ns, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "IdentityNotFound")
    assert stack.condition("wrongid", ns, "PoolReady")["status"] == "True"
    # The nodes themselves say only the generic fetch failure (as real ones do); the cause in the
    # condition was proven on the control plane.
    failure = _status(stack, "wrongid", ns)["nodes"]["failures"][0]
    assert failure["code"] == "CertificateFetchFailing"
    assert "00000000-0000-0000-0000-0000000000ff" not in failure["message"]
    assert demo["identity"]["clientId"] in nodes["message"]
    _no_tracebacks(stack)


def test_no_vault_access_is_diagnosed_on_the_control_plane(stack: OperatorStack) -> None:
    """Nodes say only "Failed to download ... retrying"; the operator proves the cause."""
    ns, demo = stack.namespace("noaccess"), stack.demo
    vault = f"kv{uuid.uuid4().hex[:8]}"
    stack.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], vault)
    stack.control.grant(
        vault,
        stack.sim.info["principals"]["operator"]["objectId"],
        {"certificates": ["get", "list"]},
    )
    stack.control.add_certificate(vault, "locked")
    vault_url = demo["vaultUrl"].replace("demokv.", f"{vault}.")
    stack.apply(
        stack.manifest("noaccess", ns, certificates=[{"vaultUrl": vault_url, "name": "locked"}])
    )

    def named() -> bool:
        return stack.condition("noaccess", ns, "NodesReady").get("reason") == "VaultAccessDenied"

    stack.wait_until("NodesReady=VaultAccessDenied", named, name="noaccess", namespace=ns)
    message = stack.condition("noaccess", ns, "NodesReady")["message"]
    assert demo["identity"]["principalId"] in message and vault in message
    assert "has no secrets get" in message
    ready = stack.condition("noaccess", ns, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "VaultAccessDenied")
    _no_tracebacks(stack)


def test_an_unprovable_cause_is_said_to_be_on_the_node(stack: OperatorStack) -> None:
    """A vault the operator cannot find on ARM: nothing proven, so it says where to look."""
    ns, demo = stack.namespace("onnode"), stack.demo
    vault = f"kv{uuid.uuid4().hex[:8]}"
    stack.control.request(
        "PUT", "/resourceGroups", {"subscriptionId": demo["subscriptionId"], "name": "elsewhere"}
    )
    stack.control.add_vault(demo["subscriptionId"], "elsewhere", vault)
    stack.control.grant(
        vault,
        stack.sim.info["principals"]["operator"]["objectId"],
        {"certificates": ["get", "list"]},
    )
    stack.control.add_certificate(vault, "hidden")
    vault_url = demo["vaultUrl"].replace("demokv.", f"{vault}.")
    stack.apply(
        stack.manifest("onnode", ns, certificates=[{"vaultUrl": vault_url, "name": "hidden"}])
    )

    def said() -> bool:
        condition = stack.condition("onnode", ns, "NodesReady")
        return condition.get("reason") == "CertificateFetchFailing"

    stack.wait_until("NodesReady=CertificateFetchFailing", said, name="onnode", namespace=ns)
    message = stack.condition("onnode", ns, "NodesReady")["message"]
    assert "The cause is on the node" in message
    assert "/var/log/azure/Microsoft.Azure.KeyVault.KeyVaultForLinux" in message
    assert f"could not verify access to vault {vault}" in message
    assert stack.condition("onnode", ns, "Ready")["status"] == "False"
    _no_tracebacks(stack)


def test_disruptive_change_is_reported_then_applied_by_scaling_to_zero(
    stack: OperatorStack,
) -> None:
    ns = stack.namespace("resize")
    manifest = stack.manifest("resize", ns)
    stack.apply(manifest)
    stack.wait_ready("resize", ns)

    manifest["spec"]["vmSize"] = "STANDARD_D4S_V3"
    stack.apply(manifest)

    def refused() -> bool:
        return (
            stack.condition("resize", ns, "PoolReady").get("reason") == "UpdateRequiresDisruption"
        )

    stack.wait_until("UpdateRequiresDisruption", refused, name="resize", namespace=ns)
    assert stack.condition("resize", ns, "Ready")["status"] == "False"
    message = stack.condition("resize", ns, "PoolReady")["message"]
    assert "ScaleToZero" in message
    # Both values, so nobody has to guess which size runs.
    assert "the pool runs STANDARD_D2S_V3, the spec asks for STANDARD_D4S_V3" in message
    # Status and `kubectl get -o wide` show what runs, not what the spec asks.
    assert stack.get("resize", ns)["status"]["pool"]["vmSize"] == "STANDARD_D2S_V3"
    wide = stack.cluster.kubectl("get", "bcp", "resize", "-n", ns, "-o", "wide", check=True)
    assert "STANDARD_D2S_V3" in wide.stdout and "STANDARD_D4S_V3" not in wide.stdout
    pool = stack.pool_in_azure("resize")
    assert pool is not None
    assert pool["properties"]["vmSize"].upper() == "STANDARD_D2S_V3"  # nothing silently applied

    manifest["spec"]["disruptiveUpdatePolicy"] = "ScaleToZero"
    stack.apply(manifest)
    generation = stack.get("resize", ns)["metadata"]["generation"]

    def applied() -> bool:
        ready = stack.condition("resize", ns, "Ready")
        return ready.get("status") == "True" and ready.get("observedGeneration") == generation

    stack.wait_until("Ready after ScaleToZero", applied, name="resize", namespace=ns, timeout=120)
    pool = stack.pool_in_azure("resize")
    assert pool is not None
    assert pool["properties"]["vmSize"].upper() == "STANDARD_D4S_V3"
    assert pool["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == 1
    reasons = stack.event_reasons(ns)
    assert "PoolScalingToZero" in reasons
    assert "PoolUpdated" in reasons
    _no_tracebacks(stack)


def test_pool_deleted_out_of_band_is_recreated(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("drift"), stack.demo
    stack.apply(stack.manifest("drift", ns))
    stack.wait_ready("drift", ns)
    stack.control.delete_pool_out_of_band(
        demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "drift"
    )

    def recreated() -> bool:
        return stack.event_reasons(ns).count("PoolCreated") == 2

    stack.wait_until("the pool recreated", recreated, name="drift", namespace=ns, timeout=90)
    stack.wait_ready("drift", ns)
    assert stack.pool_in_azure("drift") is not None


@pytest.mark.parametrize(("policy", "kept"), [("Delete", False), ("Orphan", True)])
def test_deletion_policy(stack: OperatorStack, policy: str, kept: bool) -> None:
    ns = stack.namespace(f"del-{policy.lower()}")
    name = f"gone-{policy.lower()}"
    stack.apply(stack.manifest(name, ns, deletionPolicy=policy))
    stack.wait_ready(name, ns)
    result = stack.cluster.kubectl("delete", "bcp", name, "-n", ns, "--timeout=90s", timeout=100)
    assert result.returncode == 0, stack.explain(name, ns, result.stderr)
    listed = stack.cluster.kubectl("get", "bcp", "-n", ns, "-o", "json", check=True)
    assert json.loads(listed.stdout)["items"] == []
    assert (stack.pool_in_azure(name) is not None) is kept
    expected = "PoolOrphaned" if kept else "PoolDeleting"
    assert expected in stack.event_reasons(ns)


def test_a_vault_outside_the_cloud_is_never_contacted(stack: OperatorStack) -> None:
    ns = stack.namespace("foreign")
    stack.apply(
        stack.manifest(
            "foreign",
            ns,
            certificates=[{"vaultUrl": "https://collector.example.net", "name": "mycert"}],
        )
    )

    def refused() -> bool:
        return stack.condition("foreign", ns, "Ready").get("reason") == "VaultNotAllowed"

    stack.wait_until("Ready=VaultNotAllowed", refused, name="foreign", namespace=ns)
    assert "collector.example.net" in stack.condition("foreign", ns, "Ready")["message"]
    # Nothing reached Azure for this object: no pool request, no Key Vault request at all.
    touched = [r for r in stack.control.requests() if "/pools/foreign" in r["path"]]
    assert touched == [], touched
    assert stack.pool_in_azure("foreign") is None


def test_create_if_missing_creates_an_auto_renewing_certificate(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("create"), stack.demo
    cert_name = f"new-{uuid.uuid4().hex[:6]}"
    # createIfMissing needs certificates/create on the vault, beyond the operator's get/list.
    operator_oid = stack.sim.info["principals"]["operator"]["objectId"]
    stack.control.grant(demo["vault"], operator_oid, {"certificates": ["get", "list", "create"]})
    stack.apply(
        stack.manifest(
            "created",
            ns,
            certificates=[
                {
                    "vaultUrl": demo["vaultUrl"],
                    "name": cert_name,
                    "createIfMissing": {
                        "subject": "CN=render.example.com",
                        "renewAtLifetimePercentage": 75,
                    },
                }
            ],
        )
    )
    stack.wait_ready("created", ns)
    cert = stack.control.certificate(demo["vault"], cert_name)
    assert len(cert["versions"]) == 1
    actions = cert["policy"]["lifetime_actions"]
    assert actions == [
        {"trigger": {"lifetime_percentage": 75}, "action": {"action_type": "AutoRenew"}}
    ]
    assert "CertificateCreated" in stack.event_reasons(ns)
    assert _status(stack, "created", ns)["certificates"][0]["version"] == cert["current"]["version"]


def test_grant_secrets_access_lets_the_nodes_read_a_new_vault(stack: OperatorStack) -> None:
    ns, demo, info = stack.namespace("grant"), stack.demo, stack.sim.info
    vault = f"kv{uuid.uuid4().hex[:8]}"
    stack.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], vault)
    stack.control.grant(
        vault, info["principals"]["operator"]["objectId"], {"certificates": ["get", "list"]}
    )
    stack.control.add_certificate(vault, "granted")
    vault_id = (
        f"/subscriptions/{demo['subscriptionId']}/resourceGroups/{demo['resourceGroup']}"
        f"/providers/Microsoft.KeyVault/vaults/{vault}"
    )
    vault_url = demo["vaultUrl"].replace("demokv.", f"{vault}.")
    stack.apply(
        stack.manifest(
            "granted",
            ns,
            identity={
                "resourceId": demo["identity"]["resourceId"],
                "grantSecretsAccess": {"vaults": [vault_id]},
            },
            certificates=[{"vaultUrl": vault_url, "name": "granted"}],
        )
    )
    stack.wait_ready("granted", ns)
    assert "VaultAccessGranted" in stack.event_reasons(ns)
    granted = [
        r
        for r in stack.control.requests()
        if r["path"].endswith(f"/vaults/{vault}/accessPolicies/add")
    ]
    assert len(granted) == 1, granted  # once: later checks find the grant in place


def test_a_misspelt_vault_is_stalled_naming_its_host(stack: OperatorStack) -> None:
    """The vault's name does not resolve (as DNS answers for a vault that does not exist): one
    meaning on every path, the classifier's, so a person is asked to act (Stalled)."""
    ns, demo = stack.namespace("typo"), stack.demo
    host = demo["vaultUrl"].replace("https://", "").rstrip("/").replace("demokv.", "demokvx.")
    stack.apply(
        stack.manifest("typo", ns, certificates=[{"vaultUrl": f"https://{host}/", "name": "c"}])
    )

    def stalled() -> bool:
        return stack.condition("typo", ns, "Stalled").get("status") == "True"

    stack.wait_until("Stalled", stalled, name="typo", namespace=ns, timeout=60)
    certificate = stack.condition("typo", ns, "CertificateReady")
    assert certificate["reason"] == "VaultNotResolvable"
    assert host in certificate["message"]
    assert stack.condition("typo", ns, "Stalled")["reason"] == "VaultNotResolvable"
    # No pool (no billed node) for a vault no node could fetch from.
    assert stack.condition("typo", ns, "PoolReady")["reason"] == "VaultNotResolvable"
    assert stack.control.requests(operation="Pool_Create", pathRegex="/pools/typo") == []
    _no_tracebacks(stack)
