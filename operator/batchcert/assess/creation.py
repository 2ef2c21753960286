"""May the pool be created now? Not while a certificate it needs is known missing (pure).

A pool whose Key Vault extension observes a certificate that does not exist costs billed nodes
that can never be ready (with ``requireInitialSync`` they do not even start tasks), so no pool is
created while a certificate without ``createIfMissing`` is known to be missing; the pool step
says which one instead (``PoolReady=False CertificateNotFound``) and creates the pool once it
exists. A vault whose name does not resolve (``VaultNotResolvable``: it does not exist, was
deleted, or is misspelt) holds creation the same way, ``createIfMissing`` or not: nothing can
be created in it and no node could fetch from it.

Known from the best evidence the pool step has: this turn's certificate readings when the turn
carries them, else the previous turn's durable verdict (``CertificateReady=CertificateNotFound``,
which outranks the other certificate failures there, and whose message names the certificate).

Invariants: only creation is gated (an existing pool is never touched for this); a certificate
with ``createIfMissing`` blocks only when its vault does not resolve; a certificate that could
not be read for any other reason (rather than found missing) never blocks; nothing here raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchcert.conditions import CERTIFICATE_READY, POOL_READY, ConditionUpdate, get_condition
from batchcert.models.azure import CertificateReading
from batchcert.models.spec import BatchCertPoolSpec, CertificateRef
from batchcert.reasons import CertificateReason, ComponentReason, PoolReason

_UNRESOLVABLE = ComponentReason.VAULT_NOT_RESOLVABLE


def creation_gate(
    spec: BatchCertPoolSpec,
    status: dict[str, Any],
    readings: Sequence[tuple[CertificateRef, CertificateReading]] = (),
) -> ConditionUpdate | None:
    """PoolReady while the pool must not be created, or None when it may be: from ``readings``
    (this turn's) when given, naming each missing certificate; else from the durable status,
    quoting ``CertificateReady`` (a missing certificate with ``createIfMissing`` reads as being
    created there, never as not found, so its ``CertificateNotFound`` is one without)."""
    if readings:
        unresolvable = sorted({c.vault for c, r in readings if r.failure_reason == _UNRESOLVABLE})
        if unresolvable:
            return _vault_not_resolvable(f"vault {', '.join(unresolvable)} does not resolve")
        missing = [c for c, r in readings if r.is_missing and c.create_if_missing is None]
        if not missing:
            return None
        names = ", ".join(f"{c.cert_name} in {c.vault}" for c in missing)
        return _not_created(f"certificate {names} does not exist")
    verdict = get_condition(list(status.get("conditions") or []), CERTIFICATE_READY) or {}
    said = str(verdict.get("message") or "")
    if verdict.get("reason") == _UNRESOLVABLE:
        return _vault_not_resolvable(said or "a certificate's vault does not resolve")
    if verdict.get("reason") != CertificateReason.CERTIFICATE_NOT_FOUND:
        return None
    return _not_created(said or "a certificate does not exist")


def _not_created(missing: str) -> ConditionUpdate:
    return ConditionUpdate(
        POOL_READY,
        False,
        PoolReason.CERTIFICATE_NOT_FOUND,
        f"{missing} and createIfMissing is off: the pool is not created until it exists (its "
        "nodes' Key Vault extension could not fetch it); create it in Key Vault or set "
        "createIfMissing on it",
    )


def _vault_not_resolvable(what: str) -> ConditionUpdate:
    return ConditionUpdate(
        POOL_READY,
        False,
        _UNRESOLVABLE,
        f"not created: {what} (the vault does not exist, was deleted, or is misspelt; its "
        "nodes' Key Vault extension could not fetch from it); correct the vault URL",
    )
