"""Why can't the nodes fetch? A diagnosis from what the control plane shows (pure).

The Key Vault extension reports only a generic "Failed to download one or more certificates,
retrying..." while Transitioning, and writes the cause to the VM's local log
(``../shared/docs/azure-behaviour.md``, "What the Key Vault extension does not tell you"). The
operator cannot read that log, but it can verify, on the control plane, each link of the chain
the extension depends on:

1. the pool carries the user-assigned identity, and the extension's ``msiClientId`` is that
   identity's **clientId** (not its principalId or resource id);
2. the identity's principal may ``get`` secrets on every vault: an access policy, or, for an RBAC
   vault, a role assignment (when the operator may read them);
3. every observed certificate exists, is enabled and has not expired.

The first broken link found is named, with what to do. When every link holds (or cannot be
read), the condition says plainly that the cause is on the node and where its log is.

Invariants: pure (facts in, condition out); a check that could not be made is never reported as
passed (it is listed as unverified); nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from batchcert.conditions import NODES_READY, ConditionUpdate
from batchcert.models.azure import CertificateReading, IdentityInfo
from batchcert.reasons import NodesReason

# Where the extension writes its log (Microsoft's Key Vault VM extension docs, "Troubleshoot").
EXTENSION_LOGS = {
    "Linux": "/var/log/azure/Microsoft.Azure.KeyVault.KeyVaultForLinux/*.log",
    "Windows": r"C:\WindowsAzure\Logs\Plugins\Microsoft.Azure.KeyVault.KeyVaultForWindows\<version>\akvvm_service_*.log",
}


@dataclass(frozen=True)
class VaultAccessFact:
    """Whether the identity's principal may get secrets in one vault (None: could not tell)."""

    vault: str  # the vault's name
    grants_get: bool | None
    via: str = "access policy"  # "access policy" | "role assignment"
    unverified_because: str = ""


@dataclass(frozen=True)
class DiagnosisFacts:
    identity_resource_id: str
    identity: IdentityInfo | None  # None: ARM says it does not exist
    identity_unverified_because: str = ""  # the identity could not be read at all
    pool_identity_ids: tuple[str, ...] = ()  # user-assigned identity ids on the pool (lower case)
    extension_client_id: str | None = None  # authenticationSettings.msiClientId the pool sends
    vaults: tuple[VaultAccessFact, ...] = ()
    certificates: tuple[tuple[str, CertificateReading | None], ...] = ()  # (label, reading)
    os_type: str = "Linux"


# Every proven cause is said as this prefix and the cause itself.
_CANNOT_FETCH = "nodes cannot fetch certificates"


@dataclass(frozen=True)
class Diagnosis:
    """A verdict on the nodes' fetch chain: the reason, and the cause as its own field (so a
    condition that quotes it never parses a sentence back apart)."""

    reason: NodesReason  # registered reasons only (mypy checks)
    cause: str  # the link found broken, or what the control plane could and could not verify
    proven: bool = True  # False: no link is broken; the cause is on the node

    @property
    def message(self) -> str:
        return f"{_CANNOT_FETCH}: {self.cause}" if self.proven else self.cause

    def condition(self) -> ConditionUpdate:
        return ConditionUpdate(NODES_READY, False, self.reason, self.message)


def _proven(reason: NodesReason, cause: str) -> Diagnosis:
    return Diagnosis(reason, cause)


def _identity_cause(facts: DiagnosisFacts) -> Diagnosis | None:
    name = facts.identity_resource_id.rstrip("/").rsplit("/", 1)[-1]
    if facts.identity is None and not facts.identity_unverified_because:
        return _proven(
            NodesReason.IDENTITY_NOT_FOUND,
            f"identity {name} does not exist, so the extension "
            "cannot obtain a token; create it or fix spec.identity.resourceId",
        )
    if facts.identity_resource_id.lower() not in facts.pool_identity_ids:
        return _proven(
            NodesReason.IDENTITY_NOT_ON_POOL,
            f"the pool does not carry identity {name}; the "
            "extension's msiClientId names an identity the nodes do not have",
        )
    identity = facts.identity
    wanted = facts.extension_client_id
    if identity is not None and wanted is not None and wanted.lower() != identity.client_id.lower():
        return _proven(
            NodesReason.IDENTITY_NOT_FOUND,
            f"the extension's msiClientId {wanted} is not "
            f"identity {name}'s clientId {identity.client_id}; fix spec.identity.clientId (or "
            "omit it to look it up)",
        )
    return None


def _vault_cause(facts: DiagnosisFacts) -> Diagnosis | None:
    if facts.identity is None:
        return None
    name = facts.identity_resource_id.rstrip("/").rsplit("/", 1)[-1]
    for vault in facts.vaults:
        if vault.grants_get is False:
            return _proven(
                NodesReason.VAULT_ACCESS_DENIED,
                f"identity {name}'s principal "
                f"{facts.identity.principal_id} has no secrets get on vault {vault.vault} "
                f"(checked its {vault.via}s); grant secrets get/list or the Key Vault Secrets "
                "User role, or set spec.identity.grantSecretsAccess",
            )
    return None


def _certificate_cause(facts: DiagnosisFacts, now: datetime) -> Diagnosis | None:
    for label, reading in facts.certificates:
        if reading is None:
            continue
        if reading.error_status == 404:
            return _proven(
                NodesReason.CERTIFICATE_NOT_FOUND,
                f"{label} does not exist in its vault",
            )
        facts_ = reading.facts
        if facts_ is None:
            continue
        if not facts_.enabled:
            return _proven(NodesReason.CERTIFICATE_DISABLED, f"{label} is disabled")
        if facts_.not_after is not None and facts_.not_after <= now:
            return _proven(
                NodesReason.CERTIFICATE_EXPIRED,
                f"{label} expired at {facts_.not_after.isoformat()}; renew it in Key Vault",
            )
    return None


def _unverified(facts: DiagnosisFacts) -> list[str]:
    notes = []
    if facts.identity_unverified_because:
        notes.append(f"the identity ({facts.identity_unverified_because})")
    notes += [
        f"access to vault {v.vault} ({v.unverified_because or 'not readable'})"
        for v in facts.vaults
        if v.grants_get is None
    ]
    notes += [
        f"{label} ({(reading.error_message if reading else '') or 'not readable'})"
        for label, reading in facts.certificates
        if reading is None or (reading.facts is None and reading.error_status != 404)
    ]
    return notes


def diagnose_fetch_failure(facts: DiagnosisFacts, now: datetime) -> ConditionUpdate:
    """The proven cause of the nodes' fetch failure, or a plain "the cause is on the node"."""
    return find_cause(facts, now).condition()


def find_cause(facts: DiagnosisFacts, now: datetime) -> Diagnosis:
    """The first broken link of the fetch chain, or a plain "the cause is on the node"."""
    for check in (_identity_cause(facts), _vault_cause(facts)):
        if check is not None:
            return check
    certificate = _certificate_cause(facts, now)
    if certificate is not None:
        return certificate
    unverified = _unverified(facts)
    checked = (
        "the control plane shows no cause (the pool carries the identity, the extension uses "
        "its clientId, its principal may get secrets, the certificates exist, are enabled and "
        "unexpired)"
        if not unverified
        else f"the control plane shows no cause, but could not verify {'; '.join(unverified)}"
    )
    log = EXTENSION_LOGS.get(facts.os_type, EXTENSION_LOGS["Linux"])
    return Diagnosis(
        NodesReason.CERTIFICATE_FETCH_FAILING,
        f"{_CANNOT_FETCH} and do not say why; {checked}. The cause is on the "
        f"node: read the Key Vault extension's log there ({log}), e.g. after "
        "`az batch node remote-login-settings show`; typical causes are network rules or a "
        "firewall in front of the vault, or DNS on the node",
        proven=False,
    )
