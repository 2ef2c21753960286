"""Security and bad input only the operator can see.

Covers, security: over a Ready object and a rotation, the simulator's log proves the operator's
principal never read secret content (no request with ``secretRead``, no ``/secrets/`` path,
counter ``secretReads`` reported) and only read certificate metadata; no client secret, bearer
token (``eyJ``), PEM (``BEGIN``) or base64 DER (``MII``) appears in the operator's log, the
namespace's Events or the object's status.

Bad input that passes admission (the CRD catalogue, tests/integration/test_crd_admission.py,
covers refusal): an identity that does not exist (``PoolReady`` ``IdentityNotFound``, no pool
PUT); a Batch account that does not exist (a condition carrying Azure's message); a vault outside
the cloud's vault suffix (``Ready`` ``VaultNotAllowed``, no credential sent, no pool); a vault of
the cloud that does not exist (its name does not resolve: ``Stalled`` ``VaultNotResolvable``); an
unreachable vault (every connection dropped:
``CertificateReady`` ``CertificateReadFailed``). None crashes the operator, none hot-loops
(request rates recorded).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from support.faults import FaultStack, Scenario, per_minute

OBSERVE_SECONDS = 20
# The suite runs the operator with a 1 s busy/retry interval (support.operator.FAST_INTERVALS),
# so the designed rate for a failing object is at most one call per second; a hot loop would be
# hundreds. (With the default 15 s interval the same design gives 4 a minute.)
MAX_PER_MINUTE = 75


def test_operator_never_reads_or_leaks_secrets(fstack: FaultStack, scenario: Scenario) -> None:
    name, demo = "s-secrets", fstack.demo
    scenario.injected = "a Ready object and a rotation; then the request log, operator log, Events and status scanned"
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    fstack.control.renew_certificate(demo["vault"], demo["certificate"])
    fstack.wait_until(
        "the rotation seen",
        lambda: "CertificateRotated" in fstack.reasons_for(name),
        name=name,
        namespace=fstack.home,
        timeout=60,
    )

    operator = fstack.sim.info["principals"]["operator"]
    mine = fstack.control.requests(principal=operator["objectId"])
    assert any(r["service"] == "keyvault" for r in mine), "the operator never read Key Vault?"
    assert fstack.control.requests(principal=operator["objectId"], secretRead=True) == []
    secret_paths = [
        r["path"] for r in mine if r["service"] == "keyvault" and "/secrets" in r["path"]
    ]
    assert secret_paths == []
    kv_operations = sorted({r["operation"] for r in mine if r["service"] == "keyvault"})
    counters = fstack.control.counters()

    texts = {
        "operator log": fstack.operator.log(),
        "events": json.dumps(fstack.events(fstack.home)),
        "status": json.dumps(fstack.get(name, fstack.home).get("status", {})),
    }
    needles = {
        "client secret": re.escape(operator["clientSecret"]),
        "JWT": r"eyJ[A-Za-z0-9_-]{10,}",
        "PEM": r"-----BEGIN",
        "DER (base64)": r"MII[A-Za-z0-9+/]{20,}",
    }
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, pattern in needles.items()
        if re.search(pattern, text)
    ]
    assert leaks == []
    fstack.assert_operator_healthy()
    scenario.extra = {
        "operatorKeyVaultOperations": kv_operations,
        "operatorSecretReads": 0,
        "simulatorSecretReadsAllPrincipals": counters.get("secretReads"),
        "scanned": sorted(texts),
    }
    scenario.operator_did = (
        f"read only {', '.join(kv_operations)}; 0 secret reads; nothing secret in log/Events/status"
    )


def _observe(fstack: FaultStack, name: str, since: int, path: str) -> float:
    """Requests per minute the operator sent to ``path`` over OBSERVE_SECONDS."""
    start = time.monotonic()
    while time.monotonic() - start < OBSERVE_SECONDS:
        time.sleep(1)
    sent = [r for r in fstack.control.requests(sinceSeq=since) if re.search(path, r["path"])]
    return per_minute(len(sent), time.monotonic() - start)


def test_identity_that_does_not_exist(fstack: FaultStack, scenario: Scenario) -> None:
    # (An identity in another subscription is refused at admission: test_crd_admission.py.)
    name, demo = "b-identity", fstack.demo
    missing = (
        f"/subscriptions/{demo['subscriptionId']}/resourceGroups/{demo['resourceGroup']}/"
        "providers/Microsoft.ManagedIdentity/userAssignedIdentities/no-such-identity"
    )
    scenario.injected = "spec.identity.resourceId names an identity that does not exist"
    since = fstack.last_seq()
    fstack.apply(fstack.manifest(name, fstack.home, identity={"resourceId": missing}))
    fstack.wait_reason(name, "PoolReady", "IdentityNotFound", timeout=30)
    rate = _observe(fstack, name, since, "no-such-identity")
    assert rate <= MAX_PER_MINUTE
    assert fstack.control.requests(sinceSeq=since, operation="Pool_Create", pathRegex=name) == []
    assert fstack.pools_named(name) == []
    assert "IdentityNotFound" in fstack.reasons_for(name)
    fstack.assert_operator_healthy()
    scenario.requests_per_minute = rate
    scenario.operator_did = (
        "PoolReady IdentityNotFound + Event; no pool PUT; identity re-read at the busy interval"
    )


@pytest.mark.faults_full
def test_account_that_does_not_exist(fstack: FaultStack, scenario: Scenario) -> None:
    name, demo = "b-account", fstack.demo
    account = {
        "subscriptionId": demo["subscriptionId"],
        "resourceGroup": demo["resourceGroup"],
        "name": "nosuchaccount",
    }
    scenario.injected = "spec.account names a Batch account that does not exist"
    since = fstack.last_seq()
    fstack.apply(fstack.manifest(name, fstack.home, account=account))

    def named() -> bool:
        condition = fstack.condition(name, fstack.home, "PoolReady")
        return condition.get("status") == "False" and condition.get("reason") not in (
            None,
            "Reconciling",
        )

    fstack.wait_until("a PoolReady reason", named, name=name, namespace=fstack.home, timeout=60)
    rate = _observe(fstack, name, since, "nosuchaccount")
    condition = fstack.condition(name, fstack.home, "PoolReady")
    assert (
        "nosuchaccount" in condition["message"].lower()
        or "not found" in condition["message"].lower()
    ), condition
    assert rate <= MAX_PER_MINUTE
    fstack.assert_operator_healthy()
    scenario.requests_per_minute = rate
    scenario.extra = {"reason": condition["reason"], "message": condition["message"][:200]}
    scenario.operator_did = f"PoolReady {condition['reason']} with Azure's message; backed off"


@pytest.mark.faults_full
def test_vault_outside_the_cloud(fstack: FaultStack, scenario: Scenario) -> None:
    name = "b-vault-foreign"
    scenario.injected = (
        "a certificate in a vault outside the cloud's vault suffix (*.vault.azure.net)"
    )
    since = fstack.last_seq()
    fstack.apply(
        fstack.manifest(
            name,
            fstack.home,
            certificates=[{"secretId": "https://batchcert-nosuch-x1.vault.azure.net/secrets/nope"}],
        )
    )
    fstack.wait_reason(name, "Ready", "VaultNotAllowed", timeout=60)
    rate = _observe(fstack, name, since, name)
    assert fstack.control.requests(sinceSeq=since, operation="Pool_Create", pathRegex=name) == []
    assert "batchcert-nosuch-x1" in fstack.condition(name, fstack.home, "Ready")["message"]
    fstack.assert_operator_healthy()
    scenario.requests_per_minute = rate
    scenario.operator_did = "Ready VaultNotAllowed; no token sent there, no pool created"


@pytest.mark.faults_full
def test_vault_that_does_not_exist(fstack: FaultStack, scenario: Scenario) -> None:
    name, info = "b-vault-missing", fstack.sim.info
    # The simulator resolves a vault's name only while that vault exists, as Azure's DNS answers
    # NXDOMAIN for one that does not (batchsim README, "Names"): nothing reaches a server, so
    # the only trace of each attempt is the operator's own log line for the failed call.
    host = f"batchcert-nosuch{info['keyVaultDnsSuffix']}"
    vault = f"https://{host}:{info['port']}"
    scenario.injected = f"a certificate in a vault of the cloud that does not exist ({vault})"
    since = fstack.last_seq()
    fstack.apply(
        fstack.manifest(name, fstack.home, certificates=[{"vaultUrl": vault, "name": "nope"}])
    )
    fstack.wait_reason(name, "CertificateReady", "VaultNotResolvable", timeout=60)
    assert fstack.condition(name, fstack.home, "Stalled")["reason"] == "VaultNotResolvable"
    assert host in fstack.condition(name, fstack.home, "CertificateReady")["message"]

    def attempts() -> int:
        return sum(
            1
            for line in fstack.operator.log().splitlines()
            if "certificates.get failed" in line and host in line
        )

    first, start = attempts(), time.monotonic()
    time.sleep(OBSERVE_SECONDS)
    rate = per_minute(attempts() - first, time.monotonic() - start)
    assert rate <= MAX_PER_MINUTE
    assert fstack.control.requests(sinceSeq=since, pathRegex="/certificates/nope") == []
    assert fstack.pools_named(name) == []  # no pool while its certificate cannot be read
    fstack.assert_operator_healthy()
    scenario.requests_per_minute = rate
    scenario.extra = {"reason": "VaultNotResolvable"}
    scenario.operator_did = (
        "CertificateReady and Stalled VaultNotResolvable naming the host; no request reached "
        "any server, no pool; re-read at the retry interval (attempts counted in its log)"
    )


@pytest.mark.faults_full
def test_vault_unreachable(fstack: FaultStack, scenario: Scenario) -> None:
    name = "b-vault-down"
    scenario.injected = "every Key Vault connection dropped (an unreachable vault host)"
    fstack.control.add_fault(match={"service": "keyvault"}, drop=True, durationSeconds=30)
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_reason(name, "CertificateReady", "CertificateReadFailed", timeout=30)
    fstack.control.clear_faults()
    cleared = time.monotonic()
    fstack.wait_ready(name, fstack.home)
    assert "CertificateReadFailed" in fstack.reasons_for(name)
    fstack.assert_operator_healthy()
    scenario.converge_seconds = round(time.monotonic() - cleared, 1)
    scenario.operator_did = "CertificateReady CertificateReadFailed + Event; Ready once reachable"
