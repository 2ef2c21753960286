"""Throttling: an ARM 429 storm with Retry-After on one pool's reads and writes.

Covers: the operator waits as told (every request during the storm is at least Retry-After after
the previous one, so the rate is bounded by 60/Retry-After per minute, which the test computes and
records); ``PoolReady`` (and ``Ready``) show ``AzureThrottled`` with an Event meanwhile; the
object converges once the storm ends, with one pool and one successful PUT; no crash.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from support.faults import FaultStack, Scenario, open_fault

RETRY_AFTER = 3
STORM_SECONDS = 30


def test_429_storm_with_retry_after(fstack: FaultStack, scenario: Scenario) -> None:
    name = "throttled"
    storm = open_fault(
        fstack,
        STORM_SECONDS,
        match={"service": "arm", "pathRegex": fstack.pool_path_regex(name)},
        status=429,
        headers={"Retry-After": str(RETRY_AFTER)},
    )
    scenario.injected = (
        f"ARM 429 SubscriptionRequestsThrottled, Retry-After {RETRY_AFTER}s, on every pool "
        f"read/write for {STORM_SECONDS}s (object applied during the storm)"
    )
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_reason(name, "PoolReady", "AzureThrottled", timeout=STORM_SECONDS)
    ready = fstack.condition(name, fstack.home, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AzureThrottled")

    fstack.wait_ready(name, fstack.home, timeout=STORM_SECONDS + 60)
    converge = storm.seconds_since_cleared()
    hits = storm.injected()
    assert hits, "the storm never met a request"
    # Honouring Retry-After: no request follows the previous one sooner than Azure said.
    times = [datetime.fromisoformat(h["time"].replace("Z", "+00:00")) for h in hits]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps, default=RETRY_AFTER) >= RETRY_AFTER * 0.9, gaps
    rate = storm.rate_per_minute()
    ceiling = 60 / RETRY_AFTER + 1
    assert rate <= ceiling, f"{len(hits)} requests in {STORM_SECONDS}s ({rate}/min > {ceiling})"
    assert "AzureThrottled" in fstack.reasons_for(name)
    pools, creates = fstack.pools_named(name), fstack.successful_creates(name)
    assert (len(pools), len(creates)) == (1, 1)
    fstack.assert_operator_healthy()
    scenario.requests_per_minute = rate
    scenario.converge_seconds = converge
    scenario.extra = {
        "requestsDuringStorm": len(hits),
        "ceilingPerMinute": round(ceiling, 1),
        "minGapSeconds": round(min(gaps, default=0.0), 2),
    }
    scenario.operator_did = (
        "waited Retry-After on every attempt (SDK retries + pacing gate + jittered backoff), "
        "PoolReady/Ready AzureThrottled + Warning Event, then Ready"
    )
