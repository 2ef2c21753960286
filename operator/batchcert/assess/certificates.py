"""Assess Key Vault certificates: rotation tracking and the ``CertificateReady`` condition.

Invariants: a rotation is counted exactly when the current version differs from the version the
status last recorded for the same certificate (the first sighting is not a rotation); status items
carry metadata only (version, thumbprint, validity), never secret content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from batchcert.conditions import CERTIFICATE_READY, ConditionUpdate
from batchcert.models.azure import CertificateFacts, CertificateReading
from batchcert.models.spec import CertificateRef
from batchcert.models.timestamps import format_rfc3339
from batchcert.reasons import CertificateReason, ComponentReason, is_user_action


def is_cloud_vault(vault_url: str, dns_suffix: str) -> bool:
    """Whether ``vault_url`` names a Key Vault of the configured cloud (``*.vault.azure.net``)."""
    host = (urlsplit(vault_url).hostname or "").lower().rstrip(".")
    suffix = "." + dns_suffix.lower().strip(".")
    return host.endswith(suffix) and len(host) > len(suffix)


def auto_renew_action(facts: CertificateFacts) -> Any:
    for action in facts.lifetime_actions:
        if action.action.lower() == "autorenew":
            return action
    return None


def expected_renewal_time(facts: CertificateFacts) -> datetime | None:
    """When Key Vault's AutoRenew lifetime action should create the next version."""
    action = auto_renew_action(facts)
    if action is None or facts.not_after is None:
        return None
    if action.days_before_expiry is not None:
        return facts.not_after - timedelta(days=action.days_before_expiry)
    if action.lifetime_percentage is not None and facts.not_before is not None:
        lifetime = facts.not_after - facts.not_before
        return facts.not_before + lifetime * (action.lifetime_percentage / 100)
    return None


@dataclass(frozen=True)
class CertificatePolicy:
    """Thresholds for warnings (documented operator settings)."""

    expiring_soon: timedelta = timedelta(days=30)
    renewal_grace: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class CertificateVerdict:
    ok: bool
    reason: CertificateReason | ComponentReason  # registered reasons only (mypy checks)
    message: str


def _classified(name: str | None) -> CertificateReason | ComponentReason:
    """The classifier's reason, carried with the reading as text, as its constant."""
    for namespace in (CertificateReason, ComponentReason):
        if name is not None and name in namespace.__members__.values():
            return namespace(name)
    return CertificateReason.CERTIFICATE_READ_FAILED


def assess_reading(
    cert: CertificateRef,
    reading: CertificateReading | None,
    now: datetime,
    policy: CertificatePolicy,
) -> CertificateVerdict:
    label = f"certificate {cert.cert_name} in {cert.vault}"
    if reading is None:
        return CertificateVerdict(
            False, CertificateReason.CERTIFICATE_PENDING, f"{label} has not been read yet"
        )
    if reading.facts is None:
        if reading.is_missing:
            return CertificateVerdict(
                False, CertificateReason.CERTIFICATE_NOT_FOUND, f"{label} does not exist"
            )
        # The classifier's verdict is the failure's one meaning (carried with the reading).
        reason = _classified(reading.failure_reason)
        message = reading.failure_message or reading.error_message
        if reason == "AuthorizationFailed":
            message += " (grant the operator certificates get/list on the vault)"
        return CertificateVerdict(False, reason, f"reading {label} failed: {message}")
    facts = reading.facts
    if not facts.enabled:
        return CertificateVerdict(
            False, CertificateReason.CERTIFICATE_DISABLED, f"{label} is disabled"
        )
    if facts.not_after is not None and facts.not_after <= now:
        return CertificateVerdict(
            False,
            CertificateReason.CERTIFICATE_EXPIRED,
            f"{label} expired at {format_rfc3339(facts.not_after)}",
        )
    renewal = expected_renewal_time(facts)
    if renewal is None:
        if facts.not_after is not None and facts.not_after - now <= policy.expiring_soon:
            return CertificateVerdict(
                False,
                CertificateReason.CERTIFICATE_EXPIRING_SOON,
                f"{label} expires at {format_rfc3339(facts.not_after)} and has no AutoRenew "
                "lifetime action: renew it or add one",
            )
        return CertificateVerdict(
            False,
            CertificateReason.AUTO_RENEW_DISABLED,
            f"{label} has no AutoRenew lifetime action in its policy: nodes will keep it "
            "until it expires",
        )
    if now - renewal > policy.renewal_grace:
        return CertificateVerdict(
            False,
            CertificateReason.AUTO_RENEW_STUCK,
            f"{label} should have renewed at {format_rfc3339(renewal)} but version "
            f"{facts.version} is still current (check the issuer and the vault's activity log)",
        )
    return CertificateVerdict(
        True, CertificateReason.CERTIFICATES_READY, f"{label} is current and renews itself"
    )


def build_certificate_status(
    cert: CertificateRef,
    reading: CertificateReading | None,
    previous: dict[str, Any] | None,
    now: datetime,
) -> tuple[dict[str, Any], CertificateFacts | None]:
    """The status item for one certificate; also returns the facts when a rotation happened."""
    item: dict[str, Any] = {
        "name": cert.cert_name,
        "vaultUrl": cert.vault,
        "secretId": cert.versionless_secret_uri,
        "rotations": int((previous or {}).get("rotations") or 0),
    }
    for key in (
        "version",
        "shortVersion",
        "thumbprint",
        "notBefore",
        "notAfter",
        "lastRotationTime",
    ):
        if previous and previous.get(key):
            item[key] = previous[key]
    if previous and previous.get("expectedRenewalTime"):
        item["expectedRenewalTime"] = previous["expectedRenewalTime"]
    facts = reading.facts if reading is not None else None
    if facts is None:
        return item, None
    rotated = bool(item.get("version")) and item["version"] != facts.version
    item["version"] = facts.version
    item["shortVersion"] = facts.version[:8]  # for kubectl's printer column
    item["thumbprint"] = facts.thumbprint
    item.pop("notBefore", None)
    item.pop("notAfter", None)
    item.pop("expectedRenewalTime", None)
    if facts.not_before is not None:
        item["notBefore"] = format_rfc3339(facts.not_before)
    if facts.not_after is not None:
        item["notAfter"] = format_rfc3339(facts.not_after)
    renewal = expected_renewal_time(facts)
    if renewal is not None:
        item["expectedRenewalTime"] = format_rfc3339(renewal)
    if rotated:
        item["lastRotationTime"] = format_rfc3339(now)
        item["rotations"] += 1
        return item, facts
    return item, None


def find_previous(
    previous_items: Sequence[dict[str, Any]], cert: CertificateRef
) -> dict[str, Any] | None:
    for item in previous_items:
        vault = (item.get("vaultUrl") or "").lower()
        secret = (item.get("secretId") or "").lower()
        if secret == cert.versionless_secret_uri.lower() or (
            vault == cert.vault.lower() and item.get("name", "").lower() == cert.cert_name.lower()
        ):
            return item
    return None


def summarize_certificates(verdicts: Sequence[CertificateVerdict]) -> ConditionUpdate:
    failing = [v for v in verdicts if not v.ok]
    if not failing:
        return ConditionUpdate(
            CERTIFICATE_READY,
            True,
            CertificateReason.CERTIFICATES_READY,
            "every certificate is current",
        )
    # several failing: the one a person must fix is the one to report, a missing one first (the
    # pool is not created while one is missing: assess/creation.py reads this verdict)
    first = next(
        (v for v in failing if v.reason == CertificateReason.CERTIFICATE_NOT_FOUND),
        next((v for v in failing if is_user_action(v.reason)), failing[0]),
    )
    more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
    return ConditionUpdate(CERTIFICATE_READY, False, first.reason, first.message + more)
