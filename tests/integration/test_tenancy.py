"""Tenancy through the real operator process, the real API server (a discoverable
service-account issuer) and the Azure simulator (Entra verifying federated assertions by the
issuer's keys, ARM, Batch and Key Vault authorizing each principal).

Covers: the API server publishes its service-account issuer (discovery and JWKS, anonymously);
two teams, each with its own namespace, ServiceAccount, operator-side managed identity (trusting
only that ServiceAccount) and resources, go Ready each as its own identity (the simulator's log
names the principal of every ARM, Batch and Key Vault call); team B naming team A's node identity
or Batch account is refused by Azure (403 → AuthorizationFailed, Stalled) and A's vault by the
allow-list (NotAllowedForNamespace, Stalled, no Azure call), A's pool untouched; a team's pool is
deleted as the team; a namespace without a ServiceAccount acts as the operator where the policy
allows it and is refused clearly where it does not; an RBAC vault named in grantSecretsAccess
gets one Key Vault Secrets User assignment, the pool waits out its propagation
(RoleAssignmentPropagating, never Stalled) and goes Ready, and a re-apply makes no second
assignment; token exchanges are cached (at most one per scope per team) and no token appears in
the operator's log or in status.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import yaml

if TYPE_CHECKING:
    from support.cluster import KubeCluster
    from support.stack import OperatorStack

CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
PROPAGATION_S = 6  # the operator's wait; the simulator's delay is set below it
AUDIENCE = "api://AzureADTokenExchange"


@dataclass
class Team:
    namespace: str
    resource_group: str
    account: str
    vault: str
    vault_url: str
    nodes: dict[str, Any]  # the pool's identity (id, clientId, principalId)
    operator: dict[str, Any]  # the identity the operator acts as for this namespace


@dataclass
class Tenancy:
    stack: OperatorStack
    a: Team
    b: Team
    legacy: str  # no ServiceAccount, may use the operator's identity
    closed: str  # no ServiceAccount, may not


def _arm(info: dict[str, Any], method: str, path: str, api_version: str, body: Any) -> Any:
    from batchsim.client import operator_credential

    token = operator_credential(info).get_token("https://management.azure.com/.default").token
    answer = requests.request(
        method,
        f"{info['resourceManager'].rstrip('/')}{path}?api-version={api_version}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=info["caBundle"],
        timeout=30,
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _assign(info: dict[str, Any], scope: str, role: str, identity: dict[str, Any]) -> None:
    sub = scope.split("/")[2]
    _arm(
        info,
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        "2022-04-01",
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{role}",
                "principalId": identity["principalId"],
                "principalType": "ServicePrincipal",
            }
        },
    )


def _team(stack_sim: Any, cluster: KubeCluster, namespace: str, label: str, issuer: str) -> Team:
    control, info = stack_sim.control, stack_sim.info
    sub = info["demo"]["subscriptionId"]
    rg, account, vault = f"{label}-rg", f"{label}acct", f"{label}kv"
    control.add_batch_account(sub, rg, account)
    vault_url = control.add_vault(sub, rg, vault)["vaultUri"].rstrip("/")
    control.add_certificate(vault, "web", subject=f"CN={label}.example")
    nodes = control.add_identity(sub, rg, f"{label}-nodes")
    operator = control.add_identity(sub, rg, f"{label}-operator")
    _arm(
        info,
        "PUT",
        f"{operator['id']}/federatedIdentityCredentials/cluster",
        "2023-01-31",
        {
            "properties": {
                "issuer": issuer,
                "subject": f"system:serviceaccount:{namespace}:batchcert",
                "audiences": [AUDIENCE],
            }
        },
    )
    _assign(info, f"/subscriptions/{sub}/resourceGroups/{rg}", CONTRIBUTOR, operator)
    control.grant(vault, operator["principalId"], {"certificates": ["get", "list"]})
    control.grant(vault, nodes["principalId"], {"secrets": ["get", "list"]})
    cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "batchcert",
                    "namespace": namespace,
                    "annotations": {"azure.workload.identity/client-id": operator["clientId"]},
                },
            }
        )
    )
    return Team(namespace, rg, account, vault, vault_url, nodes, operator)


@pytest.fixture(scope="module")
def tenancy(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenancy]:
    from support.operator import running_operator
    from support.stack import OperatorStack, fast_simulator, forget_objects

    workdir = tmp_path_factory.mktemp("tenancy")
    suffix = uuid.uuid4().hex[:5]
    names = {k: f"{k}-{suffix}" for k in ("team-a", "team-b", "legacy", "closed")}
    for name in names.values():
        kube_cluster.kubectl("create", "namespace", name, check=True)
    with fast_simulator(workdir / "sim") as sim:
        issuer = kube_cluster.cluster.service_account_issuer
        sim.control.set_settings(
            trustIssuerCa=kube_cluster.cluster.ca_pem.decode(), roleAssignmentDelaySeconds=0
        )
        a = _team(sim, kube_cluster, names["team-a"], f"a{suffix}", issuer)
        b = _team(sim, kube_cluster, names["team-b"], f"b{suffix}", issuer)
        policy = workdir / "tenancy.json"
        policy.write_text(
            json.dumps(
                {
                    "operatorIdentityNamespaces": [names["legacy"]],
                    "namespaces": {names["team-b"]: {"vaults": [b.vault]}},
                }
            )
        )
        with running_operator(
            kube_cluster.kubeconfig,
            Path(sim.sim_json),
            workdir / "operator.log",
            extra_env={
                "BATCHCERT_TENANCY_FILE": str(policy),
                "BATCHCERT_ROLE_PROPAGATION_SECONDS": str(PROPAGATION_S),
            },
        ) as op:
            stack = OperatorStack(kube_cluster, sim, op)
            yield Tenancy(stack, a, b, names["legacy"], names["closed"])
            assert op.is_running(), "the operator process died:\n" + op.log()[-4000:]
            assert "Traceback" not in op.log(), op.log()[-4000:]
            # No token (ServiceAccount or Azure; both JWTs) is ever logged.
            assert "eyJ" not in op.log()
    forget_objects(kube_cluster, tuple(names.values()))


def _team_pool(stack: OperatorStack, name: str, team: Team, **overrides: Any) -> dict[str, Any]:
    sub = stack.demo["subscriptionId"]
    spec: dict[str, Any] = {
        "account": {
            "subscriptionId": sub,
            "resourceGroup": team.resource_group,
            "name": team.account,
        },
        "identity": {"resourceId": team.nodes["id"]},
        "certificates": [{"vaultUrl": team.vault_url, "name": "web"}],
    }
    spec.update(overrides)
    return stack.manifest(name, team.namespace, **spec)


def test_the_api_server_publishes_its_service_account_issuer(kube_cluster: KubeCluster) -> None:
    issuer = kube_cluster.cluster.service_account_issuer
    context = ssl.create_default_context(cadata=kube_cluster.cluster.ca_pem.decode())
    with urllib.request.urlopen(  # anonymous, as Entra asks
        f"{issuer}/.well-known/openid-configuration", context=context, timeout=10
    ) as answer:
        discovery = json.loads(answer.read())
    assert discovery["issuer"] == issuer
    with urllib.request.urlopen(discovery["jwks_uri"], context=context, timeout=10) as answer:
        assert json.loads(answer.read())["keys"][0]["kty"] == "RSA"


def _principals(stack: OperatorStack, service: str, path_regex: str) -> set[str]:
    return {
        r["principal"]
        for r in stack.control.requests(service=service, pathRegex=path_regex)
        if r["status"] < 400
    }


def test_each_team_goes_ready_as_its_own_identity(tenancy: Tenancy) -> None:
    stack, a, b = tenancy.stack, tenancy.a, tenancy.b
    stack.apply(_team_pool(stack, "pool-a", a))
    stack.apply(_team_pool(stack, "pool-b", b))
    stack.wait_ready("pool-a", a.namespace, timeout=120)
    stack.wait_ready("pool-b", b.namespace, timeout=120)
    for team in (a, b):
        me = team.operator["principalId"]
        assert _principals(stack, "arm", f"{team.account}/pools") == {me}
        assert _principals(stack, "keyvault", "/certificates/web") <= {
            a.operator["principalId"],
            b.operator["principalId"],
        }
        assert stack.control.requests(service="keyvault", principal=me, status=200)
        assert stack.control.requests(service="batch", principal=me, status=200)
        # Token exchanges are cached: at most one per scope (ARM, Batch, Key Vault).
        assert len(stack.control.requests(operation="Token", principal=me, status=200)) <= 3
        status = json.dumps(stack.get("pool-a" if team is a else "pool-b", team.namespace))
        assert "eyJ" not in status
    assert not stack.control.requests(service="arm", status=403)


def test_team_b_naming_team_as_identity_is_refused_by_azure(tenancy: Tenancy) -> None:
    stack, a, b = tenancy.stack, tenancy.a, tenancy.b
    stack.wait_ready("pool-a", a.namespace, timeout=120)
    before = stack.control.pool(stack.demo["subscriptionId"], a.resource_group, a.account, "pool-a")
    stack.apply(_team_pool(stack, "steal-identity", b, identity={"resourceId": a.nodes["id"]}))
    stack.wait_until(
        "Stalled",
        lambda: stack.condition("steal-identity", b.namespace, "Stalled").get("status") == "True",
        name="steal-identity",
        namespace=b.namespace,
    )
    ready = stack.condition("steal-identity", b.namespace, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AuthorizationFailed"
    # Azure refuses B's identity the first read of A's identity (or, had B read it, the pool's
    # linked-scope check): either way the message names A's identity.
    assert a.nodes["id"].rsplit("/", 1)[-1] in ready["message"]
    refused = stack.control.requests(service="arm", principal=b.operator["principalId"], status=403)
    assert any(r["path"].lower() == a.nodes["id"].lower() for r in refused)
    assert not stack.control.requests(pathRegex="/pools/steal-identity", status=200)
    after = stack.control.pool(stack.demo["subscriptionId"], a.resource_group, a.account, "pool-a")
    assert after.get("etag") == before.get("etag")


def test_team_b_naming_team_as_batch_account_is_refused_by_azure(tenancy: Tenancy) -> None:
    stack, a, b = tenancy.stack, tenancy.a, tenancy.b
    account = {
        "subscriptionId": stack.demo["subscriptionId"],
        "resourceGroup": a.resource_group,
        "name": a.account,
    }
    stack.apply(_team_pool(stack, "steal-account", b, account=account))
    stack.wait_until(
        "Stalled",
        lambda: stack.condition("steal-account", b.namespace, "Stalled").get("status") == "True",
        name="steal-account",
        namespace=b.namespace,
    )
    ready = stack.condition("steal-account", b.namespace, "Ready")
    assert ready["reason"] == "AuthorizationFailed", ready
    assert a.account in ready["message"]
    assert not stack.control.requests(pathRegex="/pools/steal-account", status=200)


def test_team_b_naming_team_as_vault_is_refused_by_the_allow_list(tenancy: Tenancy) -> None:
    stack, a, b = tenancy.stack, tenancy.a, tenancy.b
    seen = len(stack.control.requests(principal=b.operator["principalId"]))
    stack.apply(
        _team_pool(stack, "steal-vault", b, certificates=[{"vaultUrl": a.vault_url, "name": "web"}])
    )
    stack.wait_until(
        "Stalled",
        lambda: stack.condition("steal-vault", b.namespace, "Stalled").get("status") == "True",
        name="steal-vault",
        namespace=b.namespace,
    )
    ready = stack.condition("steal-vault", b.namespace, "Ready")
    assert ready["reason"] == "NotAllowedForNamespace"
    assert f"namespaces.{b.namespace}.vaults" in ready["message"]
    assert not any(
        a.vault in r["path"] or a.vault in r.get("host", "")
        for r in stack.control.requests(principal=b.operator["principalId"])[seen:]
    )
    assert "NotAllowedForNamespace" in stack.event_reasons(b.namespace)


def test_a_namespace_without_its_service_account(tenancy: Tenancy) -> None:
    stack = tenancy.stack
    stack.apply(stack.manifest("legacy-pool", tenancy.legacy))
    stack.apply(stack.manifest("closed-pool", tenancy.closed))
    stack.wait_ready("legacy-pool", tenancy.legacy, timeout=120)
    operator = stack.sim.info["principals"]["operator"]["objectId"]
    assert _principals(stack, "arm", "/pools/legacy-pool") == {operator}
    stack.wait_until(
        "refused",
        lambda: (
            stack.condition("closed-pool", tenancy.closed, "Ready").get("reason")
            == "NotAllowedForNamespace"
        ),
        name="closed-pool",
        namespace=tenancy.closed,
    )
    message = stack.condition("closed-pool", tenancy.closed, "Ready")["message"]
    assert "operatorIdentityNamespaces" in message and "ServiceAccount batchcert" in message
    assert stack.condition("closed-pool", tenancy.closed, "Stalled")["status"] == "True"
    assert not stack.control.requests(pathRegex="/pools/closed-pool")


def test_an_rbac_vault_grant_waits_out_propagation_then_goes_ready(tenancy: Tenancy) -> None:
    stack, a = tenancy.stack, tenancy.a
    control, info = stack.control, stack.sim.info
    sub = stack.demo["subscriptionId"]
    name = f"{a.vault}r"
    vault = control.add_vault(sub, a.resource_group, name, rbac=True)
    control.add_certificate(name, "api", subject="CN=api.example")
    vault_id = vault["id"]
    # The team's operator identity may read the vault's certificates and grant roles there.
    _assign(info, vault_id, KEY_VAULT_READER, a.operator)
    _assign(info, vault_id, RBAC_ADMINISTRATOR, a.operator)
    control.set_settings(roleAssignmentDelaySeconds=PROPAGATION_S - 2)
    manifest = _team_pool(
        stack,
        "rbac-pool",
        a,
        identity={"resourceId": a.nodes["id"], "grantSecretsAccess": {"vaults": [vault_id]}},
        certificates=[{"vaultUrl": vault["vaultUri"].rstrip("/"), "name": "api"}],
    )
    stack.apply(manifest)
    seen: list[tuple[str, str]] = []

    def ready() -> bool:
        status = stack.get("rbac-pool", a.namespace).get("status", {})
        by_type = {c["type"]: c for c in status.get("conditions", [])}
        pool = by_type.get("PoolReady", {})
        seen.append((pool.get("reason", ""), by_type.get("Stalled", {}).get("status", "")))
        return bool(by_type.get("Ready", {}).get("status") == "True")

    stack.wait_until("Ready", ready, name="rbac-pool", namespace=a.namespace, timeout=120)
    assert ("RoleAssignmentPropagating", "False") in seen, seen
    assert all(stalled != "True" for _, stalled in seen), seen

    def assignments() -> list[dict[str, Any]]:
        from batchsim.client import operator_credential

        token = operator_credential(info).get_token("https://management.azure.com/.default").token
        answer = requests.get(
            f"{info['resourceManager'].rstrip('/')}{vault_id}/providers/Microsoft.Authorization/"
            f"roleAssignments?api-version=2022-04-01&$filter=assignedTo('{a.nodes['principalId']}')",
            headers={"Authorization": f"Bearer {token}"},
            verify=info["caBundle"],
            timeout=30,
        )
        return list(answer.json()["value"])

    made = assignments()
    assert [m["properties"]["roleDefinitionId"].rsplit("/", 1)[-1] for m in made] == [SECRETS_USER]
    assert made[0]["properties"]["createdBy"] == a.operator["principalId"]
    # Re-applying (a new generation re-checks access) makes no second assignment.
    manifest["spec"]["scale"] = {"fixed": {"targetDedicatedNodes": 2}}
    stack.apply(manifest)
    stack.wait_until(
        "observed",
        lambda: stack.get("rbac-pool", a.namespace)["status"].get("observedGeneration") == 2,
        name="rbac-pool",
        namespace=a.namespace,
    )
    stack.wait_ready("rbac-pool", a.namespace, timeout=120)
    assert len(assignments()) == 1
    puts = control.requests(operation="RoleAssignments_Create", principal=a.operator["principalId"])
    assert len([p for p in puts if p["status"] == 201]) == 1


def test_a_teams_pool_is_deleted_as_the_team(tenancy: Tenancy) -> None:
    stack, b = tenancy.stack, tenancy.b
    stack.wait_ready("pool-b", b.namespace, timeout=120)
    result = stack.cluster.kubectl("delete", "bcp", "pool-b", "-n", b.namespace, "--timeout=90s")
    assert result.returncode == 0, stack.explain("pool-b", b.namespace, result.stderr)
    deletes = stack.control.requests(service="arm", method="DELETE", pathRegex="/pools/pool-b")
    assert deletes and {r["principal"] for r in deletes} == {b.operator["principalId"]}
