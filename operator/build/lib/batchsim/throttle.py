"""Request throttling as Azure Resource Manager and Key Vault apply it.

Role: decide whether a request may proceed and what the rate-limit headers say.

* ARM: one token bucket per (subscription, principal) per kind — reads (GET/HEAD) 250 burst
  refilling 25/s, writes (PUT/PATCH/POST) 200 burst 10/s, deletes 200 burst 10/s — the limits
  ARM documents for its regional token-bucket throttling. Every ARM response carries
  ``x-ms-ratelimit-remaining-subscription-{reads|writes|deletes}``; a request finding the
  bucket empty is answered 429 with ``Retry-After`` (whole seconds until one token is back).
* Key Vault: at most 4,000 GETs per vault per 10 s (sliding window), 429 + ``Retry-After``.

Invariants: the time source is real monotonic time by default — benchmarks and the operator's
retry behaviour run in real time — and can be switched to the simulated clock (so a test can
exhaust a bucket and refill it by advancing the clock). Buckets start full.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from batchsim.clock import SimClock

READ, WRITE, DELETE = "reads", "writes", "deletes"


def arm_request_kind(method: str) -> str:
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return READ
    if method == "DELETE":
        return DELETE
    return WRITE


@dataclass
class BucketSpec:
    burst: int
    refill_per_s: float


def default_arm_specs() -> dict[str, BucketSpec]:
    return {
        READ: BucketSpec(burst=250, refill_per_s=25.0),
        WRITE: BucketSpec(burst=200, refill_per_s=10.0),
        DELETE: BucketSpec(burst=200, refill_per_s=10.0),
    }


@dataclass
class ThrottleVerdict:
    allowed: bool
    kind: str
    remaining: int
    retry_after_s: int = 0


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class _TimeSource:
    """Real monotonic seconds, or simulated seconds when ``use_sim_clock`` is set."""

    def __init__(self, clock: SimClock, monotonic: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.monotonic = monotonic
        self.use_sim_clock = False

    def __call__(self) -> float:
        return self.clock.timestamp() if self.use_sim_clock else self.monotonic()


class ArmThrottle:
    """Token buckets per (subscription, principal, kind)."""

    def __init__(self, clock: SimClock, monotonic: Callable[[], float] = time.monotonic):
        self.time = _TimeSource(clock, monotonic)
        self.specs = default_arm_specs()
        self.enabled = True
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def configure(
        self,
        *,
        specs: dict[str, BucketSpec] | None = None,
        enabled: bool | None = None,
        use_sim_clock: bool | None = None,
    ) -> None:
        with self._lock:
            if specs:
                self.specs.update(specs)
            if enabled is not None:
                self.enabled = enabled
            if use_sim_clock is not None:
                self.time.use_sim_clock = use_sim_clock
            # New limits or a new time base: start from full buckets, as after a quiet period.
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self.specs = default_arm_specs()
            self.enabled = True
            self.time.use_sim_clock = False
            self._buckets.clear()

    def take(self, subscription_id: str, principal: str, method: str) -> ThrottleVerdict:
        kind = arm_request_kind(method)
        spec = self.specs[kind]
        now = self.time()
        with self._lock:
            key = (subscription_id.lower(), principal.lower(), kind)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=float(spec.burst), stamp=now)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(spec.burst), bucket.tokens + elapsed * spec.refill_per_s)
            bucket.stamp = now
            if not self.enabled:
                return ThrottleVerdict(True, kind, int(bucket.tokens))
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return ThrottleVerdict(True, kind, int(bucket.tokens))
            missing = 1.0 - bucket.tokens
            wait = math.ceil(missing / spec.refill_per_s) if spec.refill_per_s > 0 else 3600
            return ThrottleVerdict(False, kind, 0, max(1, wait))


@dataclass
class KeyVaultThrottle:
    """Sliding window of GETs per vault: 4,000 per 10 s by default."""

    clock: SimClock
    limit: int = 4000
    window_s: float = 10.0
    enabled: bool = True
    monotonic: Callable[[], float] = time.monotonic
    _time: _TimeSource = field(init=False)
    _hits: dict[str, deque[float]] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._time = _TimeSource(self.clock, self.monotonic)

    @property
    def use_sim_clock(self) -> bool:
        return self._time.use_sim_clock

    @use_sim_clock.setter
    def use_sim_clock(self, value: bool) -> None:
        self._time.use_sim_clock = value

    def reset(self) -> None:
        with self._lock:
            self.limit, self.window_s, self.enabled = 4000, 10.0, True
            self._time.use_sim_clock = False
            self._hits.clear()

    def take(self, vault: str, method: str) -> int | None:
        """None when the request may proceed, else the ``Retry-After`` seconds."""
        if method.upper() != "GET" or not self.enabled:
            return None
        now = self._time()
        with self._lock:
            hits = self._hits.setdefault(vault.lower(), deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window_s - now))
            hits.append(now)
            return None
