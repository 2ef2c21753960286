"""The condition helper and the error classifier: pure, with an injected clock.

Covers: lastTransitionTime kept when status does not change and moved when it does;
observedGeneration stamped; Ready derived from the components; canonical order; every HTTP
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
        "PoolReady",
        "CertificateReady",
        "NodesReady",
    ]
    assert conditions[0]["status"] == "True"
    failing = [*ok[:2], ConditionUpdate(CERTIFICATE_READY, False, "AutoRenewDisabled", "no renew")]
    conditions = apply_conditions(conditions, failing, generation=4, now=T1)
    ready = get_condition(conditions, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "AutoRenewDisabled",
        "no renew",
    )
    assert ready["lastTransitionTime"] == "2026-11-28T10:05:00Z"


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
