"""Client-side pacing and request counting (the adapters' pipeline policies), without a network.

Covers: a token bucket lets a burst through at once, then paces at its rate; a Retry-After closes
the gate; the counting policy records every attempt and every 429 by service and kind.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from batchcert.adapters.pacing import ArmPacer, CountingPolicy, TokenBucket


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
