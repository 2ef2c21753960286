"""The one single-flight cache (identities, account endpoints, certificate readings).

Covers: concurrent askers share one read; a value is remembered for the TTL and read again after;
None (not found) and failures are never remembered; invalidate forgets at once.
"""

from __future__ import annotations

import asyncio

import pytest

from batchcert.reconcile.lookups import SingleFlightCache


async def test_single_flight_ttl_and_invalidate() -> None:
    clock = [0.0]
    reads: list[int] = []

    async def load() -> str:
        reads.append(1)
        await asyncio.sleep(0.01)
        return f"v{len(reads)}"

    lookups: SingleFlightCache[str, str] = SingleFlightCache(300, monotonic=lambda: clock[0])
    values = await asyncio.gather(*(lookups.get("k", load) for _ in range(50)))
    assert set(values) == {"v1"} and len(reads) == 1
    clock[0] = 299
    assert await lookups.get("k", load) == "v1"
    clock[0] = 301
    assert await lookups.get("k", load) == "v2"
    lookups.invalidate("k")
    assert await lookups.get("k", load) == "v3"


async def test_not_found_and_failures_are_not_remembered() -> None:
    answers: list[object] = [None, RuntimeError("boom"), "found"]

    async def load() -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    lookups: SingleFlightCache[str, str] = SingleFlightCache(300)
    assert await lookups.get("k", load) is None
    with pytest.raises(RuntimeError):
        await lookups.get("k", load)
    assert await lookups.get("k", load) == "found"
