"""The one error classifier: what an Azure failure means for the reconcile, as data.

Adapters turn every SDK exception into :class:`AzureCallError` (service, operation, HTTP status,
ARM/Key Vault/Batch error code, message, Retry-After). :func:`classify` decides, without I/O,
whether to retry with backoff, wait because Azure throttles us, or stop and ask the user, and which
condition reason names it. The handler layer is the only place that turns a verdict into kopf
semantics.

The verdict drives the retry schedule through :class:`Backoff`, the one retry type: a transient
failure backs off exponentially from the busy interval, a throttled one never sooner than
Retry-After, and one only a user can fix starts at the slow end (it will not fix itself).

Invariants: every verdict carries a CamelCase reason; a throttled verdict always carries a delay
at least as long as Azure's Retry-After; nothing here raises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum

from batchcert.reasons import CertificateReason, ComponentReason


class AzureCallError(Exception):
    """A failed Azure call, stripped of SDK types (adapters raise it, never SDK exceptions)."""

    def __init__(
        self,
        *,
        service: str,
        operation: str,
        status: int | None,
        code: str | None,
        message: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{service} {operation}: {status or 'no response'} {code or ''} {message}")
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_precondition_failed(self) -> bool:
        return self.status == 412


class Verdict(StrEnum):
    RETRY = "Retry"  # transient: back off and try again
    THROTTLED = "Throttled"  # Azure asked us to wait: honour Retry-After
    USER_ACTION = "UserAction"  # nothing changes until someone fixes something


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: ComponentReason | CertificateReason  # registered reasons only (mypy checks)
    message: str
    retry_after: float | None = None

    @property
    def needs_user_action(self) -> bool:
        return self.verdict is Verdict.USER_ACTION


_QUOTA_CODES = frozenset(
    {"quotaexceeded", "accountquotaexceeded", "poolquotareached", "operationnotallowed"}
)
_AUTHZ_CODES = frozenset({"authorizationfailed", "linkedauthorizationfailed", "forbidden"})

# Transport failures whose text says the *name* did not resolve. For a Key Vault this is how an
# unknown vault answers: ``<name>.vault.azure.net`` has no DNS record, so there is no HTTP status
# at all (evidence: ../shared/azure-recordings/README.md, "Not found"; Azure SDK issue threads
# show ``ServiceRequestError: ... Name or service not known`` / ``getaddrinfo failed``).
_NAME_RESOLUTION_TEXT = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "no address associated with hostname",
    "temporary failure in name resolution",
    "name resolution",
)
_NAME_RESOLUTION_CODES = frozenset({"gaierror", "hostnotfound", "nameresolutionerror"})

# A change refused because the pool is busy resizing (scale change while Resizing). No
# recording shows the code; we match the plain 409 and these names.
_BUSY_CODES = frozenset(
    {"poolresizing", "poolnotsteady", "operationinvalidforcurrentstate", "conflict"}
)

# Key Vault's throttling answer carries no Retry-After (keyvault-certificates.json [13], an
# issue report of a real 429 ``Throttled`` ... ``Reason: VaultRequestTypeLimitReached``). Key
# Vault's throttling guidance asks for exponential backoff starting around 1 s; we start higher
# because one vault serves every pool.
THROTTLED_DEFAULT_DELAY = 10.0


def is_name_resolution_failure(error: AzureCallError) -> bool:
    if error.status is not None:
        return False
    text = f"{error.code or ''} {error.message}".lower()
    return (error.code or "").lower() in _NAME_RESOLUTION_CODES or any(
        needle in text for needle in _NAME_RESOLUTION_TEXT
    )


def classify(error: AzureCallError) -> Classification:
    """Map a failed call to a verdict and a condition reason."""
    status, code = error.status, (error.code or "").lower()
    text = f"{error.service} {error.operation} failed: {error.message}".strip()
    if is_name_resolution_failure(error):
        if error.service == "keyvault":
            return Classification(
                Verdict.USER_ACTION,
                ComponentReason.VAULT_NOT_RESOLVABLE,
                f"{text} (the vault's name does not resolve: the vault does not exist, was "
                "deleted, or its name is misspelt in the spec)",
            )
        return Classification(Verdict.RETRY, ComponentReason.AZURE_UNAVAILABLE, text)
    # Batch throttles with 503 as well as 429, with Retry-After ("Throttling-related errors.
    # These errors include 429 or 503 status code HTTP responses with the Retry-after header":
    # learn.microsoft.com/azure/batch/error-handling; code ServerBusy in BatchErrorCode), so a
    # Batch 503 that says so is throttling: it lowers the node reads' concurrency (pacing.py).
    batch_busy = (
        status == 503
        and error.service == "batch"
        and (code == "serverbusy" or error.retry_after is not None)
    )
    if (status is None or status == 408 or status >= 500) and not batch_busy:
        if (error.service, error.operation) == ("keyvault", "certificates.get"):
            # Key Vault did not explain why a certificate could not be read (CertificateReady).
            return Classification(Verdict.RETRY, CertificateReason.CERTIFICATE_READ_FAILED, text)
        return Classification(Verdict.RETRY, ComponentReason.AZURE_UNAVAILABLE, text)
    if status == 429 or batch_busy:
        # Honour Retry-After when sent; Key Vault sends none, so never retry at once either.
        return Classification(
            Verdict.THROTTLED,
            ComponentReason.AZURE_THROTTLED,
            text,
            error.retry_after if error.retry_after is not None else THROTTLED_DEFAULT_DELAY,
        )
    if status == 401:
        return Classification(Verdict.USER_ACTION, ComponentReason.AUTHENTICATION_FAILED, text)
    if status == 403 or code in _AUTHZ_CODES:
        return Classification(Verdict.USER_ACTION, ComponentReason.AUTHORIZATION_FAILED, text)
    if code == "propertycannotbeupdated":
        return Classification(Verdict.USER_ACTION, ComponentReason.UPDATE_REQUIRES_DISRUPTION, text)
    if code in _QUOTA_CODES or "quota" in code:
        return Classification(Verdict.USER_ACTION, ComponentReason.QUOTA_EXCEEDED, text)
    if status == 404:
        return Classification(Verdict.USER_ACTION, ComponentReason.AZURE_RESOURCE_NOT_FOUND, text)
    if status == 409 and (code in _BUSY_CODES or "resiz" in error.message.lower()):
        return Classification(
            Verdict.RETRY, ComponentReason.POOL_BUSY, f"{text} (Azure is still resizing the pool)"
        )
    if status in (409, 412):
        return Classification(Verdict.RETRY, ComponentReason.AZURE_CONFLICT, text)
    if status == 400:
        return Classification(Verdict.USER_ACTION, ComponentReason.AZURE_REJECTED_SPEC, text)
    return Classification(Verdict.RETRY, ComponentReason.AZURE_UNAVAILABLE, text)


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 5.0,
    cap: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter, never shorter than Azure's Retry-After.

    ``attempt`` counts consecutive failures from 1. Jitter spreads retries of many objects that
    failed together (a throttling storm) so they do not come back in lockstep.
    """
    rng = rng or random.Random()
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after + rng.uniform(0, min(5.0, retry_after / 2 + 0.5)))
    return delay


# A failure only a user can fix starts its schedule this many doublings in: retrying it like a
# 503 costs Azure calls and Events for nothing, yet the fix (a role granted, a quota raised) is
# still noticed within a fraction of the cap.
_USER_ACTION_HEAD_START = 3


@dataclass(frozen=True)
class Backoff:
    """One retry schedule: consecutive failures and when the next attempt is due.

    Times are the caller's monotonic seconds. Values are immutable: each outcome returns the
    next schedule, so a schedule is never half-updated.
    """

    failures: int = 0
    next_at: float = 0.0

    def is_due(self, now: float) -> bool:
        return now >= self.next_at

    def after_success(self, now: float, interval: float) -> Backoff:
        return Backoff(0, now + interval)

    def after_failure(
        self,
        now: float,
        *,
        base: float,
        cap: float,
        failure: Classification | None = None,
        rng: random.Random | None = None,
    ) -> Backoff:
        """The schedule after one more failure, shaped by its verdict when it has one."""
        failures = self.failures + 1
        attempt = failures
        retry_after = None
        if failure is not None:
            retry_after = failure.retry_after
            if failure.needs_user_action:
                attempt += _USER_ACTION_HEAD_START
        delay = backoff_delay(attempt, retry_after=retry_after, base=base, cap=cap, rng=rng)
        return replace(self, failures=failures, next_at=now + delay)
