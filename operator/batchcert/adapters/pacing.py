"""Client-side pacing: ARM requests mirror ARM's own token buckets; Batch data-plane requests
run under an adaptive concurrency limit (:class:`AdaptiveLimit`).

ARM throttles per subscription and principal (writes: 200 burst, 10/s; reads: 250, 25/s; deletes:
200, 10/s). Pacing our own requests to the same buckets means a thousand objects converging at once
queue here instead of collecting 429s; a 429 that still arrives (another client sharing the
principal, or a smaller bucket than documented) closes the subscription's gate for Retry-After, so
no other object hammers a subscription that is already throttled.

The Batch data plane publishes no request budget; it answers 429 (or 503 "server busy") with
Retry-After when it is overloaded. :class:`AdaptiveLimit` is additive-increase/multiplicative-
decrease, as TCP's congestion window: a throttled answer halves the number of requests allowed in
flight (never below 1) and closes the gate for Retry-After; a run of successes as long as the
limit raises it by one, back up to the configured maximum.

Invariants: ``acquire`` never sleeps longer than needed for one token or an open gate; buckets
are per (subscription, kind); the policy counts every request and every 429 it sees; an
``AdaptiveLimit`` never lets more than ``limit`` requests run at once, halves at most once per
round of requests (every request sent before a decrease may come back throttled together: one
overload, one halving), and its limit stays within [1, maximum].
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy

from batchcert.adapters.errors import retry_after_seconds

_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?]+)", re.IGNORECASE)


class TokenBucket:
    def __init__(
        self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return now

    def block_for(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (Azure said Retry-After)."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        self._tokens = 0.0

    async def acquire(self) -> float:
        """Take one token, waiting as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._refill()
                if now < self._blocked_until:
                    delay = self._blocked_until - now
                elif self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                else:
                    delay = (1 - self._tokens) / self.rate
                await asyncio.sleep(delay)
                waited += delay


def request_kind(method: str) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "reads"
    if method == "DELETE":
        return "deletes"
    return "writes"


@dataclass
class ArmPacer:
    """Buckets per subscription and kind, plus counters of what was sent."""

    write_rate: float = 10.0
    write_burst: int = 200
    read_rate: float = 25.0
    read_burst: int = 250
    buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    sent: Counter[tuple[str, int]] = field(default_factory=Counter)
    throttled: int = 0
    # Key Vault and Batch data-plane attempts (not paced: their limits are far above our load).
    others_sent: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    others_throttled: Counter[str] = field(default_factory=Counter)

    def bucket(self, subscription: str, kind: str) -> TokenBucket:
        key = (subscription.lower(), kind)
        if key not in self.buckets:
            if kind == "reads":
                self.buckets[key] = TokenBucket(self.read_burst, self.read_rate)
            else:
                self.buckets[key] = TokenBucket(self.write_burst, self.write_rate)
        return self.buckets[key]


class ArmPacingPolicy(AsyncHTTPPolicy):
    """A per-retry pipeline policy: every actual HTTP attempt takes a token first."""

    def __init__(self, pacer: ArmPacer) -> None:
        super().__init__()
        self._pacer = pacer

    async def send(self, request: PipelineRequest) -> PipelineResponse:
        http = request.http_request
        match = _SUBSCRIPTION.search(http.url)
        kind = request_kind(http.method)
        bucket = self._pacer.bucket(match.group(1), kind) if match else None
        if bucket is not None:
            await bucket.acquire()
        response = await self.next.send(request)
        status = response.http_response.status_code
        self._pacer.sent[(kind, status)] += 1
        if status == 429:
            self._pacer.throttled += 1
            delay = retry_after_seconds(response.http_response.headers)
            if bucket is not None and delay:
                bucket.block_for(delay)
        return response


class CountingPolicy(AsyncHTTPPolicy):
    """A per-retry policy for the Key Vault and Batch clients: count every attempt and 429."""

    def __init__(self, pacer: ArmPacer, service: str) -> None:
        super().__init__()
        self._pacer = pacer
        self._service = service

    async def send(self, request: PipelineRequest) -> PipelineResponse:
        response = await self.next.send(request)
        status = response.http_response.status_code
        kind = request_kind(request.http_request.method)
        self._pacer.others_sent[(self._service, kind, status)] += 1
        if status == 429:
            self._pacer.others_throttled[self._service] += 1
        return response


@dataclass
class Slot:
    """One request's place under an :class:`AdaptiveLimit`; the caller says how it ended."""

    epoch: int
    throttled_for: float | None = None
    counted: bool = True  # False: the answer says nothing about load (a 404, a 500)

    def throttled(self, retry_after: float | None) -> None:
        self.throttled_for = retry_after or 0.0

    def neutral(self) -> None:
        self.counted = False


MAX_THROTTLE_WAIT_SECONDS = 60.0


class AdaptiveLimit:
    """AIMD concurrency for a service that throttles by answer, not by a published budget."""

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = max(1, int(maximum))
        self.limit = self.maximum
        self.in_flight = 0
        self.decreases = 0
        self.increases = 0
        self._clock = clock
        self._successes = 0
        self._epoch = 0  # bumped by each decrease
        self._blocked_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a free place and an open gate; returns the epoch the request starts in."""
        try:
            while True:
                delay = self._blocked_until - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                if self.in_flight < self.limit:
                    self.in_flight += 1
                    return self._epoch
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
        except BaseException:
            # Cancelled while queued, or after being woken (waiting out Retry-After, say): the
            # next waiter gets the chance this one had, or it could wait for ever.
            self._wake()
            raise

    def release(self, slot: Slot) -> None:
        self.in_flight -= 1
        if slot.throttled_for is not None:
            self._on_throttled(slot.epoch, slot.throttled_for)
        elif slot.counted:
            self._on_success()
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        slot = Slot(await self.acquire())
        try:
            yield slot
        except BaseException:
            if slot.throttled_for is None:
                slot.neutral()
            raise
        finally:
            self.release(slot)

    def _on_throttled(self, epoch: int, retry_after: float) -> None:
        if retry_after > 0:
            # Capped: a far HTTP-date in Retry-After must not stop every node pass for hours.
            wait = min(retry_after, MAX_THROTTLE_WAIT_SECONDS)
            self._blocked_until = max(self._blocked_until, self._clock() + wait)
        self._successes = 0
        if epoch != self._epoch:
            return  # sent before the last decrease: the same overload, already answered
        self._epoch += 1
        if self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.decreases += 1

    def _on_success(self) -> None:
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self.increases += 1

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
