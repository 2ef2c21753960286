"""Process-wide, single-flight lookups of facts many objects share: identity clientIds and Batch
account endpoints.

A thousand pools created at once with the same identity cost one identity read, not a thousand:
the first asker reads, concurrent askers await the same read, later askers get the remembered
value until it is ``ttl`` seconds old. Without this, the identity reads alone would bound the
convergence of 1,000 pools by ARM's read bucket (measured in ``benchmarks/``).

Invariants: at most one read per key is in flight; "not found" (None) and failures are never
remembered, so a fix is seen on the next ask; ``invalidate`` forgets a key at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SharedLookups(Generic[V]):
    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._monotonic = monotonic
        self._values: dict[Hashable, tuple[float, V]] = {}
        self._inflight: dict[Hashable, asyncio.Task[V | None]] = {}
        self.reads = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V | None]]) -> V | None:
        entry = self._values.get(key)
        if entry is not None and self._monotonic() - entry[0] < self._ttl:
            return entry[1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            self._inflight[key] = task
        # shield: one asker being cancelled must not cancel the read the others await.
        return await asyncio.shield(task)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[V | None]]) -> V | None:
        try:
            self.reads += 1
            value = await load()
            if value is not None:
                self._values[key] = (self._monotonic(), value)
            return value
        finally:
            self._inflight.pop(key, None)

    def invalidate(self, key: Hashable) -> None:
        self._values.pop(key, None)
