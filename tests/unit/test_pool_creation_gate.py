"""No pool is created while a certificate it needs is known missing (assess/creation.py, the pool
step and PoolReconciler).

Covers: which certificates are known missing — from this turn's readings (a 404 without
``createIfMissing``, or a vault whose name does not resolve, with or without it; never a read
that failed otherwise), named with createIfMissing off, or,
without them, from the previous turn's durable verdict (``CertificateReady=CertificateNotFound``,
quoted); a missing certificate outranks the other certificate failures in ``CertificateReady``; through the engine with
fakes: a pool deleted while its certificate is missing is not created again, no Azure call is
made while waiting, and it is created as soon as the certificate exists; an existing pool is
reconciled as ever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_engine import World, converge

from batchcert.assess.certificates import CertificateVerdict, summarize_certificates
from batchcert.assess.creation import creation_gate
from batchcert.models.azure import CertificateReading
from batchcert.models.spec import parse_spec
from batchcert.reasons import CertificateReason
from support.builders import base_spec

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
VAULT = "https://mykv.vault.azure.net"


def _spec(**cert: Any) -> Any:
    return parse_spec(base_spec(certificates=[{"vaultUrl": VAULT, "name": "mycert", **cert}]))


def _missing(key: tuple[str, str]) -> CertificateReading:
    return CertificateReading(key, T0, error_status=404, error_message="missing")


def test_this_turns_readings_name_each_missing_certificate() -> None:
    spec = _spec()
    (cert,) = spec.certificates
    gate = creation_gate(spec, {}, [(cert, _missing(cert.key))])
    assert gate is not None
    assert (gate.type, gate.status, gate.reason) == ("PoolReady", False, "CertificateNotFound")
    assert f"certificate mycert in {VAULT} does not exist and createIfMissing is off" in (
        gate.message
    )
    forbidden = CertificateReading(cert.key, T0, error_status=403, error_message="no")
    assert creation_gate(spec, {}, [(cert, forbidden)]) is None  # unreadable is not missing
    creating = _spec(createIfMissing={"subject": "CN=x"})
    (auto,) = creating.certificates
    assert creation_gate(creating, {}, [(auto, _missing(auto.key))]) is None


def test_a_vault_that_does_not_resolve_holds_creation_even_with_create_if_missing() -> None:
    """Nothing can be created in a vault that does not exist and no node could fetch from it."""
    for spec in (_spec(), _spec(createIfMissing={"subject": "CN=x"})):
        (cert,) = spec.certificates
        unresolved = CertificateReading(
            cert.key,
            T0,
            error_code="NameResolutionError",
            error_message="Cannot connect to host",
            failure_reason="VaultNotResolvable",
        )
        gate = creation_gate(spec, {}, [(cert, unresolved)])
        assert gate is not None
        assert (gate.type, gate.status, gate.reason) == ("PoolReady", False, "VaultNotResolvable")
        assert f"not created: vault {VAULT} does not resolve" in gate.message
    transient = CertificateReading(
        cert.key, T0, error_code="ServerTimeoutError", failure_reason="AzureUnavailable"
    )
    assert creation_gate(_spec(), {}, [(cert, transient)]) is None  # unreadable is not missing


def _status(reason: str, message: str = "") -> dict[str, Any]:
    condition = {"type": "CertificateReady", "status": "False", "reason": reason}
    return {"conditions": [dict(condition, message=message)]}


def test_without_readings_the_previous_verdict_says_it() -> None:
    spec = _spec()
    said = f"certificate mycert in {VAULT} does not exist"
    gate = creation_gate(spec, _status("CertificateNotFound", said))
    assert gate is not None and gate.reason == "CertificateNotFound"
    assert gate.message.startswith(said + " and createIfMissing is off")
    assert creation_gate(spec, _status("AuthorizationFailed")) is None
    unresolvable = creation_gate(spec, _status("VaultNotResolvable", "the vault's name ..."))
    assert unresolvable is not None and unresolvable.reason == "VaultNotResolvable"
    assert creation_gate(spec, _status("CertificateCreating")) is None
    assert creation_gate(spec, {}) is None  # nothing read yet: nothing known


def test_a_missing_certificate_outranks_other_certificate_failures() -> None:
    verdicts = [
        CertificateVerdict(False, CertificateReason.AUTO_RENEW_DISABLED, "a has no AutoRenew"),
        CertificateVerdict(False, CertificateReason.CERTIFICATE_NOT_FOUND, "b does not exist"),
    ]
    condition = summarize_certificates(verdicts)
    assert condition.reason == "CertificateNotFound"
    assert condition.message.startswith("b does not exist")


async def test_a_pool_gone_while_its_certificate_is_missing_waits_for_it() -> None:
    world = World()
    await converge(world)
    assert world.condition("Ready")["status"] == "True"
    world.exists = False  # the certificate is deleted ...
    world.watcher.invalidate(parse_spec(world.spec).certificates[0])
    await world.tick()
    assert world.condition("CertificateReady")["reason"] == "CertificateNotFound"
    world.arm.pool = None  # ... and the pool with it, out of band
    world.advance(301)  # the drift interval: the pool step looks again
    for _ in range(3):
        await world.tick()
        world.advance(11)
    assert world.arm.calls.count("pools.create") == 1, world.arm.calls  # the first one only
    pool = world.condition("PoolReady")
    assert (pool["status"], pool["reason"]) == ("False", "CertificateNotFound")
    assert "createIfMissing is off" in pool["message"]
    calls = len(world.arm.calls)
    world.advance(11)
    await world.tick()
    assert len(world.arm.calls) == calls  # waiting costs no Azure call
    world.exists = True
    world.watcher.invalidate(parse_spec(world.spec).certificates[0])
    await converge(world)
    assert world.arm.calls.count("pools.create") == 2
    assert world.condition("Ready")["status"] == "True", world.status


async def test_an_existing_pool_is_reconciled_whatever_the_certificates_say() -> None:
    world = World()
    await converge(world)
    world.exists = False
    world.watcher.invalidate(parse_spec(world.spec).certificates[0])
    world.spec["vmSize"] = "STANDARD_D4S_V3"  # a spec change: the pool step runs now
    world.generation = 2
    await converge(world)
    assert world.condition("PoolReady")["reason"] == "UpdateRequiresDisruption"
    assert world.arm.calls.count("pools.create") == 1
