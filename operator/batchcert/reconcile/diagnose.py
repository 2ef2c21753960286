"""Gather the control-plane facts that explain failing nodes, for ``assess.diagnosis``.

Runs while nodes fail to fetch (NodesReady says CertificateFetchFailing or ExtensionFailed), and
once per drift interval while they look healthy (a failure after a first success is invisible on
the node). The identity's ids come from the pool ARM returns (no read); each vault costs one ARM
read (its access policies, or its role assignments when the vault uses RBAC), shared by every
pool through ``SharedFacts``: an answer is reused while younger than the asker's ``max_age`` (the
drift interval for healthy pools, the failing cadence for failing ones), so a thousand pools on
one vault cost one read per interval, and a revoked grant is still seen within that interval.

Invariants: every Azure failure becomes an "unverified" fact, never an exception; the vault's
ARM id comes from ``identity.grantSecretsAccess.vaults`` when it names the vault, else the
account's resource group is tried (the common layout), else the check is unverified.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from batchcert.adapters.arm import ArmAdapter
from batchcert.assess.diagnosis import Diagnosis, DiagnosisFacts, VaultAccessFact, find_cause
from batchcert.errors import AzureCallError, classify
from batchcert.models.azure import IdentityInfo, PoolState
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.reasons import NodesReason
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.lookups import SharedFacts
from batchcert.translate.access_policy import has_secrets_read
from batchcert.translate.pool_diff import extension_client_id

DIAGNOSED_REASONS = frozenset({NodesReason.CERTIFICATE_FETCH_FAILING, NodesReason.EXTENSION_FAILED})
# Proven causes that healthy-looking nodes cannot show (CertificateReady covers the certificate).
SILENT_FAILURE_REASONS = frozenset(
    {
        NodesReason.IDENTITY_NOT_FOUND,
        NodesReason.IDENTITY_NOT_ON_POOL,
        NodesReason.VAULT_ACCESS_DENIED,
    }
)


def _vault_name(vault_url: str) -> str:
    return (urlsplit(vault_url).hostname or vault_url).split(".", 1)[0].lower()


def _vault_resource_id(spec: BatchCertPoolSpec, name: str) -> str:
    grant = spec.identity.grant_secrets_access
    for vault_id in grant.vaults if grant else []:
        if vault_id.rstrip("/").rsplit("/", 1)[-1].lower() == name:
            return vault_id
    account = spec.account
    return (
        f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}"
        f"/providers/Microsoft.KeyVault/vaults/{name}"
    )


class NodeFailureDiagnoser:
    def __init__(self, arm: ArmAdapter, facts: SharedFacts, watcher: CertificateWatcher) -> None:
        self._arm = arm
        self._facts = facts
        self._watcher = watcher

    async def diagnose(
        self, spec: BatchCertPoolSpec, pool: PoolState, now: datetime, *, max_age: float
    ) -> Diagnosis:
        """``max_age``: how old a shared vault answer may be (what this pool's cadence needs)."""
        ids = ((pool.body.get("identity") or {}).get("userAssignedIdentities")) or {}
        on_pool = next(
            (v for k, v in ids.items() if str(k).lower() == spec.identity.resource_id.lower()),
            None,
        )
        identity: IdentityInfo | None
        if isinstance(on_pool, dict) and on_pool.get("clientId") and on_pool.get("principalId"):
            # ARM renders the identity's ids in the pool itself: no extra read.
            identity, identity_unverified = (
                IdentityInfo(
                    spec.identity.resource_id,
                    str(on_pool["clientId"]),
                    str(on_pool["principalId"]),
                ),
                "",
            )
        else:
            identity, identity_unverified = await self._identity(spec)
        vaults: list[VaultAccessFact] = []
        if identity is not None and identity.principal_id:
            for name in sorted({_vault_name(c.vault) for c in spec.certificates}):
                vaults.append(await self._vault_access(spec, name, identity.principal_id, max_age))
        certificates = []
        for cert in spec.certificates:
            label = f"certificate {cert.cert_name} in {cert.vault}"
            certificates.append((label, self._watcher.cached(cert)))
        facts = DiagnosisFacts(
            identity_resource_id=spec.identity.resource_id,
            identity=identity,
            identity_unverified_because=identity_unverified,
            pool_identity_ids=tuple(str(k).lower() for k in ids),
            extension_client_id=extension_client_id(pool.body, spec.key_vault_extension.name),
            vaults=tuple(vaults),
            certificates=tuple(certificates),
            os_type=spec.resolved_os_type.value,
        )
        return find_cause(facts, now)

    async def _identity(self, spec: BatchCertPoolSpec) -> tuple[IdentityInfo | None, str]:
        try:
            return await self._arm.get_identity(spec.identity.resource_id), ""
        except AzureCallError as exc:
            return None, classify(exc).reason

    async def _vault_access(
        self, spec: BatchCertPoolSpec, name: str, principal_id: str, max_age: float
    ) -> VaultAccessFact:
        vault_id = _vault_resource_id(spec, name)
        try:
            vault = await self._facts.vault(vault_id, max_age=max_age)
        except AzureCallError as exc:
            return VaultAccessFact(name, None, unverified_because=classify(exc).reason)
        if vault is None:
            return VaultAccessFact(
                name,
                None,
                unverified_because=f"no vault at {vault_id} (name it in grantSecretsAccess)",
            )
        if (vault.get("properties") or {}).get("enableRbacAuthorization") is True:
            try:
                granted = await self._facts.has_secrets_role(
                    vault_id, principal_id, max_age=max_age
                )
            except AzureCallError as exc:
                return VaultAccessFact(
                    name,
                    None,
                    "role assignment",
                    f"role assignments not readable: {classify(exc).reason}",
                )
            return VaultAccessFact(name, granted, "role assignment")
        return VaultAccessFact(name, has_secrets_read_get(vault, principal_id))


def has_secrets_read_get(vault: dict[str, object], principal_id: str) -> bool:
    """Secrets *get* is what a fetch of a known URL needs (list is asked for, not required)."""
    if has_secrets_read(vault, principal_id):
        return True
    props = vault.get("properties")
    policies = props.get("accessPolicies") if isinstance(props, dict) else None
    for policy in policies if isinstance(policies, list) else []:
        if not isinstance(policy, dict):
            continue
        if str(policy.get("objectId", "")).lower() != principal_id.lower():
            continue
        secrets = (policy.get("permissions") or {}).get("secrets") or []
        if {str(p).lower() for p in secrets} & {"get", "all"}:
            return True
    return False
