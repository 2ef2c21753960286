"""Drift and decay: Azure or Key Vault changes under a Ready object, and is fixed again.

Covers: the pool's scale changed out of band (corrected by a guarded PATCH, no PUT); vault access
revoked from the pool's identity (``NodesReady`` ``VaultAccessDenied``); the certificate disabled
(``CertificateReady`` ``CertificateDisabled``), deleted (``CertificateNotFound``, fixed by
pointing the spec at another certificate), its AutoRenew
lifetime action removed (``AutoRenewDisabled``); a node taken down (``NodesReady``
``NodeUnusable``). Each reason appears as a condition and a Warning Event, and the object is
Ready again once the cause is fixed. Each scenario uses its own certificate, so none leaks into
another's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from support.faults import FaultStack, Scenario

AUTO_RENEW_80 = {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
# Nodes re-fetch every pollingIntervalInS (60 s, the CRD's minimum) of *simulated* time.
POLL_PAST = 61


@pytest.fixture
def own_cert(fstack: FaultStack) -> str:
    name = f"decay-{uuid.uuid4().hex[:6]}"
    fstack.control.add_certificate(fstack.demo["vault"], name)
    return name


def _ready_object(fstack: FaultStack, name: str, cert: str) -> None:
    demo = fstack.demo
    fstack.apply(
        fstack.manifest(
            name, fstack.home, certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}]
        )
    )
    fstack.wait_ready(name, fstack.home)


def _decay_and_recover(
    fstack: FaultStack,
    scenario: Scenario,
    name: str,
    condition: str,
    reason: str,
    *,
    break_it: Callable[[], None],
    fix_it: Callable[[], None],
    nodes_poll: bool = False,
) -> None:
    break_it()
    fixed = False
    try:
        if nodes_poll:
            fstack.control.advance(POLL_PAST)
        detect = fstack.wait_reason(name, condition, reason, timeout=60)
        ready = fstack.condition(name, fstack.home, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason)
        assert reason in fstack.reasons_for(name)
        fixed_at = time.monotonic()
        fix_it()
        fixed = True
    finally:
        if not fixed:  # never leave the shared vault or identity broken for the next scenario
            fix_it()
    if nodes_poll:
        fstack.control.advance(POLL_PAST)
    fstack.wait_ready(name, fstack.home, timeout=90)
    scenario.converge_seconds = round(time.monotonic() - fixed_at, 1)
    scenario.extra["detectSeconds"] = round(detect, 1)
    scenario.lost_resources = 0 if len(fstack.pools_named(name)) == 1 else 1
    fstack.assert_operator_healthy()
    scenario.operator_did = f"{condition} {reason} + Warning Event; Ready once fixed"


def test_pool_scale_drift_is_corrected(fstack: FaultStack, scenario: Scenario) -> None:
    name = "d-scale"
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    since = fstack.last_seq()
    scenario.injected = "pool scaleSettings changed out of band (1 → 3 dedicated nodes)"
    drifted = time.monotonic()
    fstack.control.drift_pool(
        *fstack.ids(name),
        patch={"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 3}}}},
    )

    def corrected() -> bool:
        pool = fstack.control.pool(*fstack.ids(name))
        return bool(pool["targetDedicatedNodes"] == 1)

    fstack.wait_until("scale corrected", corrected, name=name, namespace=fstack.home, timeout=60)
    fstack.wait_ready(name, fstack.home)
    scenario.converge_seconds = round(time.monotonic() - drifted, 1)
    writes = fstack.control.requests(
        sinceSeq=since, service="arm", pathRegex=fstack.pool_path_regex(name)
    )
    methods = [w["method"] for w in writes if w["method"] != "GET"]
    assert methods and set(methods) == {"PATCH"}, methods  # corrected in place, never re-PUT
    assert "PoolUpdated" in fstack.reasons_for(name)
    assert len(fstack.pools_named(name)) == 1
    fstack.assert_operator_healthy()
    scenario.operator_did = (
        f"read the drift within the drift interval, PATCHed scale back ({len(methods)} write)"
    )


def test_vault_access_revoked(fstack: FaultStack, scenario: Scenario, own_cert: str) -> None:
    name, demo = "d-vault", fstack.demo
    _ready_object(fstack, name, own_cert)
    principal = demo["identity"]["principalId"]
    scenario.injected = (
        "the pool identity's secrets get/list removed from the vault's access policy"
    )
    _decay_and_recover(
        fstack,
        scenario,
        name,
        "NodesReady",
        "VaultAccessDenied",
        break_it=lambda: fstack.control.grant(
            demo["vault"], principal, {"secrets": ["get", "list"]}, operation="remove"
        ),
        fix_it=lambda: fstack.control.grant(
            demo["vault"], principal, {"secrets": ["get", "list"]}, operation="add"
        ),
        nodes_poll=True,
    )


@pytest.mark.faults_full
def test_certificate_disabled(fstack: FaultStack, scenario: Scenario, own_cert: str) -> None:
    name, vault = "d-disabled", fstack.demo["vault"]
    _ready_object(fstack, name, own_cert)
    scenario.injected = "the certificate disabled in Key Vault"
    _decay_and_recover(
        fstack,
        scenario,
        name,
        "CertificateReady",
        "CertificateDisabled",
        break_it=lambda: fstack.control.set_certificate_enabled(vault, own_cert, False),
        fix_it=lambda: fstack.control.set_certificate_enabled(vault, own_cert, True),
    )


@pytest.mark.faults_full
def test_certificate_deleted(fstack: FaultStack, scenario: Scenario, own_cert: str) -> None:
    name, demo = "d-deleted", fstack.demo
    _ready_object(fstack, name, own_cert)
    # Key Vault soft-deletes: the name cannot be reused, so the fix is pointing the spec at a
    # certificate that exists (the simulator has no recover/purge control).
    replacement = f"{own_cert}-new"
    fstack.control.add_certificate(demo["vault"], replacement)
    # Another certificate changes the extension's settings, which Azure changes on no existing
    # pool (the Batch extensions doc): only Recreate applies it.
    manifest = fstack.manifest(
        name,
        fstack.home,
        certificates=[{"vaultUrl": demo["vaultUrl"], "name": replacement}],
        disruptiveUpdatePolicy="Recreate",  # extensions change on no existing pool
    )
    scenario.injected = (
        "the certificate deleted from Key Vault; fixed by pointing the spec at another"
    )
    _decay_and_recover(
        fstack,
        scenario,
        name,
        "CertificateReady",
        "CertificateNotFound",
        break_it=lambda: fstack.control.delete_certificate(demo["vault"], own_cert),
        fix_it=lambda: fstack.apply(manifest),
        nodes_poll=True,  # the old nodes fail their next fetch
    )


@pytest.mark.faults_full
def test_auto_renew_removed(fstack: FaultStack, scenario: Scenario, own_cert: str) -> None:
    name, vault = "d-autorenew", fstack.demo["vault"]
    _ready_object(fstack, name, own_cert)
    scenario.injected = "the certificate policy's AutoRenew lifetime action removed"
    _decay_and_recover(
        fstack,
        scenario,
        name,
        "CertificateReady",
        "AutoRenewDisabled",
        break_it=lambda: fstack.control.request(
            "PATCH", f"/vaults/{vault}/certificates/{own_cert}", {"lifetimeActions": []}
        ),
        fix_it=lambda: fstack.control.request(
            "PATCH",
            f"/vaults/{vault}/certificates/{own_cert}",
            {"lifetimeActions": [AUTO_RENEW_80]},
        ),
    )


def test_node_taken_down(fstack: FaultStack, scenario: Scenario) -> None:
    name = "d-node"
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    (node,) = fstack.control.pool(*fstack.ids(name))["nodes"]
    scenario.injected = "the pool's node forced to state unusable"
    _decay_and_recover(
        fstack,
        scenario,
        name,
        "NodesReady",
        "NodeUnusable",
        break_it=lambda: fstack.control.set_node_state(
            *fstack.ids(name), node_id=node["id"], state="unusable"
        ),
        fix_it=lambda: fstack.control.set_node_state(
            *fstack.ids(name), node_id=node["id"], state=None
        ),
    )
