"""State of the simulated Key Vault data plane: vaults, certificates, versions, renewals.

Role: the in-memory model behind ``keyvault.py`` (HTTP) and the simulator's control API. It
issues versions with real X.509 material (``x509.py``), applies ``AutoRenew`` lifetime actions
on the simulated clock, completes pending create operations, soft-deletes, resolves secret URLs
for the node logic, and renders the JSON bodies the REST API returns.

Invariants:
* A certificate's *current* version is its most recently created one, enabled or not (as in
  Key Vault: disabling the latest version does not fall back to an older one).
* Auto-renewal is level-driven and idempotent: ``settle`` creates exactly the versions the
  lifetime actions call for up to "now" and nothing else; a version created by a renewal that
  was due at instant T is stamped as issued at T (so a clock jump past several trigger points
  leaves the history the real service would have made, like Lowkey Vault's time shift).
* Every mutation goes through the lock and resets ``next_due`` so ``tick`` re-scans; ``tick`` is
  O(1) while nothing is due.
* Names are case-insensitive (stored lower-cased), reported as first created.
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
from dataclasses import asdict, dataclass, field
from dataclasses import replace as _replace
from datetime import UTC, datetime
from typing import Any

from batchsim.clock import SimClock
from batchsim.keyvault.policy import KeyVaultError, normalize_policy, renewal_due_at
from batchsim.keyvault.x509 import (
    DEFAULT_KEY_POOL,
    NOT_BEFORE_SKEW,
    KeyPool,
    SubjectAlternativeNames,
    add_months,
    build_csr,
    issue_self_signed,
    key_from_pem,
    key_to_pem,
    parse_subject,
    x5t,
)

# A new vault's default soft-delete retention, without purge protection. Unconfirmed: a vault's
# own retention setting (7-90 days) and purge protection are not modelled.
RECOVERABLE_DAYS = 90
RECOVERY_LEVEL = "Recoverable+Purgeable"
_MAX_CATCH_UP = 1000  # bound on renewals created by one settle (validity >= 1 month anyway)


def not_found(name: str, what: str = "certificate") -> KeyVaultError:
    code = "CertificateNotFound" if what == "certificate" else "SecretNotFound"
    return KeyVaultError(
        404,
        code,
        f"A {what} with (name/id) {name} was not found in this key vault. If you recently deleted "
        f"this {what} you may be able to recover it using the correct recovery command. For help "
        "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


@dataclass
class CertVersion:
    version: str
    created: int
    updated: int
    nbf: int
    exp: int
    enabled: bool
    cer: str  # base64 DER
    key_pem: str
    x5t: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class PendingOperation:
    request_id: str
    version: str
    csr: str  # base64 DER
    key_pem: str
    created: float
    complete_at: float
    enabled: bool
    tags: dict[str, str]
    status: str = "inProgress"  # -> "completed"


@dataclass
class Certificate:
    name: str
    policy: dict[str, Any]
    policy_created: int
    policy_updated: int
    versions: list[CertVersion] = field(default_factory=list)
    pending: PendingOperation | None = None
    deleted_date: int | None = None
    scheduled_purge_date: int | None = None

    @property
    def current(self) -> CertVersion | None:
        return self.versions[-1] if self.versions else None

    def find(self, version: str) -> CertVersion | None:
        wanted = version.lower()
        return next((v for v in self.versions if v.version == wanted), None)


@dataclass
class Vault:
    name: str
    tenant_id: str | None
    location: str
    certificates: dict[str, Certificate] = field(default_factory=dict)
    deleted: dict[str, Certificate] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretResolution:
    """What a node's Key Vault extension would get for one observed secret URL."""

    ok: bool
    version: str | None = None
    code: str | None = None
    message: str = ""
    vault: str | None = None
    name: str | None = None
    pinned: bool = False  # the URL named a version: it never follows renewals
    x5t: str | None = None
    not_before: int | None = None
    expires: int | None = None


class KeyVaultStore:
    """Vaults and their certificates on the simulated clock (thread-safe)."""

    def __init__(
        self, clock: SimClock, *, key_pool: KeyPool | None = None, issue_delay_s: float = 0.0
    ) -> None:
        self.clock = clock
        self.key_pool = key_pool if key_pool is not None else DEFAULT_KEY_POOL
        # Sim seconds a Self-issued create stays "inProgress"; 0 completes it before the first poll.
        # The real service takes a few seconds (10 s between the SDK recording's polls).
        self.issue_delay_s = issue_delay_s
        self.vaults: dict[str, Vault] = {}
        self.lock = threading.RLock()
        self._next_due = -math.inf

    # ----------------------------------------------------------------- vaults
    def ensure_vault(
        self, name: str, *, tenant_id: str | None = None, location: str = "westus"
    ) -> Vault:
        with self.lock:
            vault = self.vaults.get(name.lower())
            if vault is None:
                vault = self.vaults[name.lower()] = Vault(name.lower(), tenant_id, location)
            else:
                vault.tenant_id = tenant_id if tenant_id is not None else vault.tenant_id
                vault.location = location
            return vault

    def get_vault(self, name: str) -> Vault | None:
        return self.vaults.get(name.lower())

    def remove_vault(self, name: str) -> None:
        with self.lock:
            self.vaults.pop(name.lower(), None)

    def vault(self, name: str) -> Vault:
        vault = self.get_vault(name)
        if vault is None:
            raise KeyVaultError(404, "VaultNotFound", f"The vault '{name}' does not exist.")
        return vault

    def certificate(self, vault: str, name: str) -> Certificate:
        cert = self.vault(vault).certificates.get(name.lower())
        if cert is None:
            raise not_found(name)
        return cert

    # ------------------------------------------------------------ certificates
    def create(
        self,
        vault_name: str,
        name: str,
        policy_body: Any,
        *,
        enabled: bool = True,
        tags: dict[str, str] | None = None,
        delay_s: float | None = None,
    ) -> Certificate:
        """Start a create (new certificate or new version); completes after ``delay_s``."""
        with self.lock:
            vault = self.vault(vault_name)
            if name.lower() in vault.deleted:
                raise KeyVaultError(
                    409,
                    "Conflict",
                    f"Certificate {name} is currently in a deleted but recoverable state, and its "
                    "name cannot be reused; in this state, the certificate can only be recovered "
                    "or purged.",
                    inner="ObjectIsDeletedButRecoverable",
                )
            now = self.clock.timestamp()
            cert = vault.certificates.get(name.lower())
            if cert is not None and cert.pending and cert.pending.status == "inProgress":
                # Unconfirmed wording; the real service refuses a second concurrent create.
                raise KeyVaultError(
                    409,
                    "Conflict",
                    f"Certificate {name} has a pending "
                    "operation in progress; wait for it or cancel it.",
                )
            if cert is None:
                if policy_body is None:
                    raise KeyVaultError(
                        400, "BadParameter", "Property policy is required for a new certificate."
                    )
                policy = normalize_policy(policy_body)
                cert = Certificate(name, policy, int(now), int(now))
                vault.certificates[name.lower()] = cert
            elif policy_body is not None:
                cert.policy = normalize_policy(policy_body, cert.policy)
                cert.policy_updated = int(now)
            key = self._next_key(cert)
            delay = self.issue_delay_s if delay_s is None else delay_s
            subject = parse_subject(cert.policy["x509_props"]["subject"] or "CN=" + name)
            cert.pending = PendingOperation(
                request_id=secrets.token_hex(16),
                version=secrets.token_hex(16),
                csr=base64.b64encode(build_csr(key, subject)).decode("ascii"),
                key_pem=key_to_pem(key),
                created=now,
                complete_at=now + delay,
                enabled=enabled,
                tags=dict(tags or {}),
            )
            self._settle(cert, now)
            self._next_due = -math.inf
            return cert

    def renew(self, vault_name: str, name: str) -> CertVersion:
        """Issue a new version now (what a manual renewal or a due AutoRenew does)."""
        with self.lock:
            cert = self.certificate(vault_name, name)
            version = self._issue(cert, self.clock.timestamp(), enabled=True, tags={})
            self._next_due = -math.inf
            return version

    def update_version(
        self,
        vault_name: str,
        name: str,
        version: str | None,
        *,
        enabled: bool | None = None,
        tags: dict[str, str] | None = None,
    ) -> CertVersion:
        with self.lock:
            cert = self.certificate(vault_name, name)
            target = cert.current if not version else cert.find(version)
            if target is None:
                raise not_found(f"{name}/{version}" if version else name)
            if enabled is not None:
                target.enabled = enabled
            if tags is not None:
                target.tags = dict(tags)
            target.updated = int(self.clock.timestamp())
            self._next_due = -math.inf
            return target

    def update_policy(self, vault_name: str, name: str, body: Any) -> Certificate:
        with self.lock:
            cert = self.certificate(vault_name, name)
            cert.policy = normalize_policy(body, cert.policy)
            cert.policy_updated = int(self.clock.timestamp())
            self._next_due = -math.inf
            return cert

    def delete(self, vault_name: str, name: str, *, purge: bool = False) -> Certificate:
        """Soft-delete (recoverable for ``RECOVERABLE_DAYS``); ``purge`` removes it at once."""
        with self.lock:
            vault = self.vault(vault_name)
            cert = vault.certificates.pop(name.lower(), None)
            if cert is None:
                raise not_found(name)
            now = int(self.clock.timestamp())
            cert.deleted_date = now
            cert.scheduled_purge_date = now + RECOVERABLE_DAYS * 86_400
            if not purge:
                vault.deleted[name.lower()] = cert
            self._next_due = -math.inf
            return cert

    def deleted(self, vault_name: str, name: str) -> Certificate:
        cert = self.vault(vault_name).deleted.get(name.lower())
        if cert is None:
            # Real wording (older service versions): "Deleted Certificate not found: {name}".
            raise KeyVaultError(
                404, "CertificateNotFound", f"Deleted Certificate not found: {name}"
            )
        return cert

    def purge(self, vault_name: str, name: str) -> None:
        with self.lock:
            self.deleted(vault_name, name)
            self.vault(vault_name).deleted.pop(name.lower())

    def recover(self, vault_name: str, name: str) -> Certificate:
        with self.lock:
            vault = self.vault(vault_name)
            cert = self.deleted(vault_name, name)
            del vault.deleted[name.lower()]
            cert.deleted_date = cert.scheduled_purge_date = None
            vault.certificates[name.lower()] = cert
            self._next_due = -math.inf
            return cert

    # ------------------------------------------------------------- the clock
    def tick(self) -> int:
        """Apply everything due by now (creates, renewals, purges); returns versions created."""
        now = self.clock.timestamp()
        if now < self._next_due:
            return 0
        created = 0
        with self.lock:
            next_due = math.inf
            for vault in self.vaults.values():
                for key, cert in list(vault.deleted.items()):
                    if cert.scheduled_purge_date is not None and cert.scheduled_purge_date <= now:
                        del vault.deleted[key]
                for cert in vault.certificates.values():
                    created += self._settle(cert, now)
                    next_due = min(next_due, self._due(cert))
                for cert in vault.deleted.values():
                    next_due = min(next_due, cert.scheduled_purge_date or math.inf)
            self._next_due = next_due
        return created

    def _due(self, cert: Certificate) -> float:
        """When ``cert`` next needs work: its pending create completing, or its AutoRenew.

        Unconfirmed: whether Key Vault auto-renews a certificate whose current version is
        disabled; the simulator does (the lifetime action belongs to the policy, not the
        version). A renewal always issues an enabled version from the current policy.
        """
        if cert.pending is not None and cert.pending.status == "inProgress":
            return cert.pending.complete_at
        current = cert.current
        if current is None:
            return math.inf
        due = renewal_due_at(cert.policy["lifetime_actions"], current.nbf, current.exp)
        return math.inf if due is None else due

    def _settle(self, cert: Certificate, now: float) -> int:
        created = 0
        pending = cert.pending
        if pending is not None and pending.status == "inProgress":
            if pending.complete_at > now:
                return 0
            self._issue(
                cert,
                pending.complete_at,
                enabled=pending.enabled,
                tags=pending.tags,
                version=pending.version,
                key_pem=pending.key_pem,
            )
            pending.status = "completed"
            created += 1
        for _ in range(_MAX_CATCH_UP):
            due = self._due(cert)
            if due > now:
                break
            self._issue(cert, due, enabled=True, tags={})
            created += 1
        return created

    def _next_key(self, cert: Certificate) -> Any:
        props = cert.policy["key_props"]
        if props.get("reuse_key") and cert.current is not None:
            return key_from_pem(cert.current.key_pem)
        return self.key_pool.take(
            props["kty"], props.get("key_size", 2048), props.get("crv", "P-256")
        )

    def _issue(
        self,
        cert: Certificate,
        at: float,
        *,
        enabled: bool,
        tags: dict[str, str],
        version: str | None = None,
        key_pem: str | None = None,
    ) -> CertVersion:
        """Create a completed version issued at instant ``at`` with the current policy."""
        x509_props = cert.policy["x509_props"]
        issued = datetime.fromtimestamp(int(at), UTC)
        not_before = issued - NOT_BEFORE_SKEW
        not_after = add_months(issued, x509_props["validity_months"])
        key = key_from_pem(key_pem) if key_pem is not None else self._next_key(cert)
        sans = SubjectAlternativeNames(**x509_props["sans"])
        der = issue_self_signed(
            key,
            subject=parse_subject(x509_props["subject"] or "CN=" + cert.name),
            not_before=not_before,
            not_after=not_after,
            sans=sans,
            ekus=x509_props["ekus"],
            key_usage=x509_props["key_usage"],
        )
        created = int(at)
        entry = CertVersion(
            version=version or secrets.token_hex(16),
            created=created,
            updated=created,
            nbf=int(not_before.timestamp()),
            exp=int(not_after.timestamp()),
            enabled=enabled,
            cer=base64.b64encode(der).decode("ascii"),
            key_pem=key_pem or key_to_pem(key),
            x5t=x5t(der),
            tags=dict(tags),
        )
        cert.versions.append(entry)
        return entry

    # ------------------------------------------------------------- node logic
    def resolve_secret(
        self, vault_name: str | None, name: str | None, version: str | None, *, pinned: bool
    ) -> SecretResolution:
        base = SecretResolution(ok=False, vault=vault_name, name=name, pinned=pinned)
        vault = self.get_vault(vault_name) if vault_name else None
        if vault is None:
            return _replace(
                base, code="VaultNotFound", message=f"The vault '{vault_name}' does not exist."
            )
        cert = vault.certificates.get((name or "").lower())
        # A certificate whose first version is still being issued has no secret yet
        # (Unconfirmed: the service may instead report the pending, disabled version).
        target = None if cert is None else (cert.find(version) if version else cert.current)
        if cert is None or target is None:
            shown = f"{name}/{version}" if version else name
            return _replace(
                base, code="SecretNotFound", message=not_found(str(shown), "secret").message
            )
        if not target.enabled:
            return _replace(
                base,
                code="CertificateDisabled",
                version=target.version,
                message="Operation get is not allowed on a disabled secret.",
            )
        return _replace(
            base,
            ok=True,
            version=target.version,
            x5t=target.x5t,
            not_before=target.nbf,
            expires=target.exp,
        )

    # ------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": 1,
                "vaults": [
                    {
                        "name": v.name,
                        "tenant_id": v.tenant_id,
                        "location": v.location,
                        "certificates": [asdict(c) for c in v.certificates.values()],
                        "deleted": [asdict(c) for c in v.deleted.values()],
                    }
                    for v in self.vaults.values()
                ],
            }

    def restore(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.vaults = {}
            for raw in data.get("vaults", []):
                vault = Vault(raw["name"], raw.get("tenant_id"), raw.get("location", "westus"))
                for bucket in ("certificates", "deleted"):
                    for c in raw.get(bucket, []):
                        cert = _certificate_from_json(c)
                        getattr(vault, bucket)[cert.name.lower()] = cert
                self.vaults[vault.name] = vault
            self._next_due = -math.inf


def _certificate_from_json(raw: dict[str, Any]) -> Certificate:
    fields = dict(raw)
    fields["versions"] = [CertVersion(**v) for v in raw.get("versions", [])]
    fields["pending"] = PendingOperation(**raw["pending"]) if raw.get("pending") else None
    return Certificate(**fields)
