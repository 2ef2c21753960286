"""The condition helper and the error classifier: pure, with an injected clock.

Covers: lastTransitionTime kept when status does not change and moved when it does;
observedGeneration stamped; Ready derived from the components, naming the one that blocks (a
user action before a step in progress); kstatus' Reconciling and Stalled derived from the reason
registry, for component verdicts, refusals and a pause; canonical order; every HTTP
failure class mapped to a verdict and a CamelCase reason; backoff honours Retry-After and jitters.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from batchcert.conditions import (
    CERTIFICATE_READY,
    NODES_READY,
    POOL_READY,
    ConditionUpdate,
    apply_conditions,
    apply_refusal,
    get_condition,
    set_condition,
)
from batchcert.errors import (
    AzureCallError,
    Backoff,
    Classification,
    Verdict,
    backoff_delay,
    classify,
)
from batchcert.reasons import SUMMARY_TYPES

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_transition_time_is_kept_while_status_holds() -> None:
    first = set_condition(
        [], ConditionUpdate(POOL_READY, False, "PoolCreated", "a"), generation=1, now=T0
    )
    again = set_condition(
        first, ConditionUpdate(POOL_READY, False, "Other", "b"), generation=2, now=T1
    )
    cond = get_condition(again, POOL_READY)
    assert cond is not None
    assert cond["lastTransitionTime"] == "2026-11-28T10:00:00Z"
    assert (cond["reason"], cond["message"], cond["observedGeneration"]) == ("Other", "b", 2)
    flipped = set_condition(
        again, ConditionUpdate(POOL_READY, True, "PoolReady", "c"), generation=2, now=T1
    )
    assert get_condition(flipped, POOL_READY)["lastTransitionTime"] == "2026-11-28T10:05:00Z"  # type: ignore[index]
    assert len(flipped) == 1


def test_ready_summarises_components_in_canonical_order() -> None:
    ok = [
        ConditionUpdate(NODES_READY, True, "ExtensionSucceeded"),
        ConditionUpdate(POOL_READY, True, "PoolReady"),
        ConditionUpdate(CERTIFICATE_READY, True, "CertificatesReady"),
    ]
    conditions = apply_conditions([], ok, generation=3, now=T0)
    assert [c["type"] for c in conditions] == [
        "Ready",
        "Reconciling",
        "Stalled",
        "PoolReady",
        "CertificateReady",
        "NodesReady",
    ]
    assert [c["status"] for c in conditions[:3]] == ["True", "False", "False"]
    failing = [*ok[:2], ConditionUpdate(CERTIFICATE_READY, False, "AutoRenewDisabled", "no renew")]
    conditions = apply_conditions(conditions, failing, generation=4, now=T1)
    ready = get_condition(conditions, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "AutoRenewDisabled",
        "CertificateReady: no renew",
    )
    assert ready["lastTransitionTime"] == "2026-11-28T10:05:00Z"


def _summaries(conditions: list[dict[str, str]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conditions if c["type"] in SUMMARY_TYPES}


def test_a_component_a_person_must_fix_blocks_before_one_in_progress() -> None:
    # the pool is still being created and a certificate is missing: Ready names the certificate
    updates = [
        ConditionUpdate(POOL_READY, False, "PoolCreated", "pool p created; resizing"),
        ConditionUpdate(CERTIFICATE_READY, False, "CertificateNotFound", "mycert does not exist"),
        ConditionUpdate(NODES_READY, False, "PoolNotReady", "the pool does not exist yet"),
    ]
    conditions = apply_conditions([], updates, generation=2, now=T0)
    assert _summaries(conditions) == {
        "Ready": ("False", "CertificateNotFound"),
        "Reconciling": ("False", "Stalled"),
        "Stalled": ("True", "CertificateNotFound"),
    }
    stalled = get_condition(conditions, "Stalled")
    assert stalled is not None
    assert stalled["message"] == "CertificateReady: mycert does not exist"
    assert all(c["observedGeneration"] == 2 for c in conditions)


def test_transient_reasons_are_reconciling_not_stalled() -> None:
    updates = [
        ConditionUpdate(POOL_READY, True, "PoolReady"),
        ConditionUpdate(CERTIFICATE_READY, False, "CertificateCreating", "creating mycert"),
        ConditionUpdate(NODES_READY, None, "Reconciling", "first look"),
    ]
    assert _summaries(apply_conditions([], updates, generation=1, now=T0)) == {
        "Ready": ("False", "CertificateCreating"),
        "Reconciling": ("True", "CertificateCreating"),
        "Stalled": ("False", "Reconciling"),
    }


def test_refusals_stall_and_a_pause_neither_stalls_nor_reconciles() -> None:
    ready = apply_conditions(
        [],
        [
            ConditionUpdate(POOL_READY, True, "PoolReady"),
            ConditionUpdate(CERTIFICATE_READY, True, "CertificatesReady"),
            ConditionUpdate(NODES_READY, True, "ExtensionSucceeded"),
        ],
        generation=1,
        now=T0,
    )
    refused = apply_refusal(ready, "VaultNotAllowed", "evil.example", generation=2, now=T1)
    assert _summaries(refused) == {
        "Ready": ("False", "VaultNotAllowed"),
        "Reconciling": ("False", "Stalled"),
        "Stalled": ("True", "VaultNotAllowed"),
    }
    assert get_condition(refused, "PoolReady") == get_condition(ready, "PoolReady")
    paused = apply_refusal(ready, "ReconcilePaused", "paused", generation=2, now=T1)
    assert _summaries(paused) == {
        "Ready": ("False", "ReconcilePaused"),
        "Reconciling": ("False", "ReconcilePaused"),
        "Stalled": ("False", "ReconcilePaused"),
    }


def _error(
    status: int | None, code: str | None = None, retry_after: float | None = None
) -> AzureCallError:
    return AzureCallError(
        service="arm",
        operation="pools.get",
        status=status,
        code=code,
        message="boom",
        retry_after=retry_after,
    )


@pytest.mark.parametrize(
    ("status", "code", "verdict", "reason"),
    [
        (None, "ServiceRequestError", Verdict.RETRY, "AzureUnavailable"),
        (503, "ServiceUnavailable", Verdict.RETRY, "AzureUnavailable"),
        (500, None, Verdict.RETRY, "AzureUnavailable"),
        (429, "TooManyRequests", Verdict.THROTTLED, "AzureThrottled"),
        (401, "InvalidAuthenticationToken", Verdict.USER_ACTION, "AuthenticationFailed"),
        (403, "AuthorizationFailed", Verdict.USER_ACTION, "AuthorizationFailed"),
        (400, "PropertyCannotBeUpdated", Verdict.USER_ACTION, "UpdateRequiresDisruption"),
        (400, "InvalidPropertyValue", Verdict.USER_ACTION, "AzureRejectedSpec"),
        (409, "AccountQuotaExceeded", Verdict.USER_ACTION, "QuotaExceeded"),
        (409, "PoolBeingResized", Verdict.RETRY, "AzureConflict"),
        (412, "PreconditionFailed", Verdict.RETRY, "AzureConflict"),
        (404, "ResourceNotFound", Verdict.USER_ACTION, "AzureResourceNotFound"),
    ],
)
def test_classifier(status: int | None, code: str | None, verdict: Verdict, reason: str) -> None:
    result = classify(_error(status, code))
    assert (result.verdict, result.reason) == (verdict, reason)
    assert "boom" in result.message


def test_throttling_carries_retry_after() -> None:
    assert classify(_error(429, "TooManyRequests", retry_after=17)).retry_after == 17


def test_backoff_grows_jitters_caps_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=5, cap=300, rng=rng) for n in range(1, 10)]
    assert 2.5 <= delays[0] <= 5
    assert all(d <= 300 for d in delays)
    assert max(delays) > 100
    assert len({round(d, 3) for d in delays}) == len(delays)
    assert backoff_delay(1, retry_after=60, base=5, rng=rng) >= 60


def _failure(
    status: int, code: str | None = None, retry_after: float | None = None
) -> Classification:
    return classify(
        AzureCallError(
            service="arm",
            operation="op",
            status=status,
            code=code,
            message="m",
            retry_after=retry_after,
        )
    )


def test_the_verdict_drives_the_retry_schedule() -> None:
    rng = random.Random(7)
    transient = Backoff().after_failure(100.0, base=10, cap=300, failure=_failure(503), rng=rng)
    user = Backoff().after_failure(100.0, base=10, cap=300, failure=_failure(403), rng=rng)
    throttled = Backoff().after_failure(
        100.0, base=10, cap=300, failure=_failure(429, retry_after=120), rng=rng
    )
    # A 503 retries soon; a failure only a user can fix does not retry like one; a throttled
    # call never comes back before Retry-After.
    assert 105.0 <= transient.next_at <= 110.0
    assert user.next_at - 100.0 >= 40.0
    assert throttled.next_at >= 220.0
    assert (transient.failures, user.failures, throttled.failures) == (1, 1, 1)


def test_backoff_grows_until_success_resets_it() -> None:
    schedule = Backoff()
    assert schedule.is_due(0.0)
    for _ in range(6):
        schedule = schedule.after_failure(0.0, base=10, cap=80, rng=random.Random(1))
    assert schedule.failures == 6 and 40.0 <= schedule.next_at <= 80.0
    assert not schedule.is_due(39.0)
    healthy = schedule.after_success(50.0, 300.0)
    assert healthy == Backoff(0, 350.0)


@pytest.mark.parametrize(
    ("service", "code", "retry_after", "verdict"),
    [
        # Batch throttles with 503 + Retry-After (or code ServerBusy): learn.microsoft.com/azure/
        # batch/error-handling. Elsewhere, and without either sign, a 503 is an outage.
        ("batch", "ServerBusy", None, Verdict.THROTTLED),
        ("batch", "ServiceUnavailable", 7.0, Verdict.THROTTLED),
        ("batch", "ServiceUnavailable", None, Verdict.RETRY),
        ("arm", "ServerBusy", 7.0, Verdict.RETRY),
    ],
)
def test_a_batch_503_that_says_busy_is_throttling(
    service: str, code: str, retry_after: float | None, verdict: Verdict
) -> None:
    error = AzureCallError(
        service=service,
        operation="nodes.get_extension",
        status=503,
        code=code,
        message="m",
        retry_after=retry_after,
    )
    classified = classify(error)
    assert classified.verdict is verdict
    if verdict is Verdict.THROTTLED:
        assert classified.retry_after == (retry_after if retry_after is not None else 10.0)
