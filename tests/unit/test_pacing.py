"""Client-side pacing and request counting (the adapters' pipeline policies), without a network.

Covers: a token bucket lets a burst through at once, then paces at its rate; a Retry-After closes
the gate; the counting policy records every attempt and every 429 by service and kind; the
adaptive (AIMD) limit never lets more than its limit run, halves once per overload (not once per
throttled answer of the same round), never below 1, waits out Retry-After, regains one place per
run of successes as long as the limit up to the maximum, and ignores answers that say nothing
about load.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from batchcert.adapters.pacing import (
    AdaptiveLimit,
    ArmPacer,
    CountingPolicy,
    Slot,
    TokenBucket,
)


async def test_bucket_bursts_then_paces() -> None:
    clock = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(3, 2.0, clock=lambda: clock[0])
    original = asyncio.sleep
    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        waits = [await bucket.acquire() for _ in range(5)]
        bucket.block_for(10)
        blocked = await bucket.acquire()
    finally:
        asyncio.sleep = original
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5) and waits[4] == pytest.approx(0.5)
    assert blocked >= 10


class _Next:
    def __init__(self, status: int) -> None:
        self.status = status

    async def send(self, request: Any) -> Any:
        return SimpleNamespace(http_response=SimpleNamespace(status_code=self.status, headers={}))


async def test_counting_policy_counts_attempts_and_throttling() -> None:
    pacer = ArmPacer()
    for status in (200, 200, 429):
        policy = CountingPolicy(pacer, "keyvault")
        policy.next = _Next(status)  # type: ignore[assignment]
        await policy.send(SimpleNamespace(http_request=SimpleNamespace(method="GET", url="x")))  # type: ignore[arg-type]
    assert pacer.others_sent == {("keyvault", "reads", 200): 2, ("keyvault", "reads", 429): 1}
    assert pacer.others_throttled == {"keyvault": 1}


async def test_adaptive_limit_bounds_what_runs_at_once() -> None:
    limit = AdaptiveLimit(3)
    running, peak = 0, 0

    async def request() -> None:
        nonlocal running, peak
        async with limit.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.gather(*(request() for _ in range(20)))
    assert peak == 3 and limit.in_flight == 0 and limit.limit == 3


async def test_adaptive_limit_halves_once_per_overload_and_recovers() -> None:
    clock = [0.0]
    limit = AdaptiveLimit(8, clock=lambda: clock[0])
    slots = [await limit.acquire() for _ in range(8)]
    # The whole round comes back throttled: one overload, one halving.
    for epoch in slots:
        slot = Slot(epoch)
        slot.throttled(None)
        limit.release(slot)
    assert limit.limit == 4 and limit.decreases == 1
    # A request sent after the decrease and throttled again halves again, never below 1.
    for expected in (2, 1, 1):
        async with limit.slot() as slot:
            slot.throttled(None)
        assert limit.limit == expected
    # Successes: one more place after a run as long as the limit, back to the maximum.
    for _ in range(200):
        async with limit.slot():
            pass
    assert limit.limit == 8 and limit.increases == 7


async def test_adaptive_limit_waits_out_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limit = AdaptiveLimit(4, clock=lambda: clock[0])
    async with limit.slot() as slot:
        slot.throttled(7.0)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    async with limit.slot():
        pass
    assert slept == [7.0] and limit.limit == 2


async def test_adaptive_limit_ignores_failures_that_say_nothing_about_load() -> None:
    limit = AdaptiveLimit(4)
    async with limit.slot() as slot:
        slot.throttled(None)
    assert limit.limit == 2
    with pytest.raises(RuntimeError):
        async with limit.slot():
            raise RuntimeError("a 500, a 404, a bug")
    assert limit.limit == 2 and limit.in_flight == 0
    for _ in range(2):
        async with limit.slot():
            pass
    assert limit.limit == 3


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    limit = AdaptiveLimit(1)
    first = await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    other = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    limit.release(Slot(first))
    assert await asyncio.wait_for(other, 1) == 0
    assert limit.in_flight == 1


async def test_a_woken_waiter_cancelled_during_retry_after_passes_its_chance_on() -> None:
    # The reviewer's case: limit 1, A throttled with Retry-After, W1 woken then cancelled while
    # it waits out the gate; W2 must still get the place (it used to wait for ever).
    limit = AdaptiveLimit(1)
    holder = limit.slot()
    slot = await holder.__aenter__()
    w1 = asyncio.ensure_future(limit.acquire())
    w2 = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    slot.throttled(0.3)
    await holder.__aexit__(None, None, None)
    await asyncio.sleep(0.05)  # W1 woken, now sleeping out the gate
    w1.cancel()
    await asyncio.wait_for(w2, 2.0)
    assert limit.in_flight == 1 and not limit._waiters
