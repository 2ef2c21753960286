"""The simulator's clock: simulated time that tests can advance and scale.

Role: the single source of "now" for every simulated service (token expiry, certificate
lifetimes and auto-renewal, node arrival, extension polling, ETag timestamps). Nothing in
``batchsim`` reads the wall clock directly; everything takes a ``SimClock``.

Invariants:
* simulated time = anchor + real (monotonic) time elapsed since the anchor × scale;
  ``advance`` moves the anchor forward, ``set_scale`` re-anchors at the current simulated
  instant, so simulated time never jumps at a scale change and never goes backwards.
* ``now()`` is always timezone-aware UTC.
* A scale of 0 freezes time (only ``advance`` moves it), which deterministic tests want.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SimClock:
    """Simulated UTC time: ``start + real elapsed × scale + advances``."""

    def __init__(
        self,
        start: datetime | None = None,
        *,
        scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if scale < 0:
            raise ValueError("clock scale must be >= 0")
        # The real wall clock is read exactly once, to pick a plausible starting instant.
        start = start if start is not None else datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor_sim = start.astimezone(UTC)
        self._anchor_real = monotonic()
        self._scale = float(scale)

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    def timestamp(self) -> float:
        """Simulated POSIX seconds (float)."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Jump simulated time forward; returns the new now."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            self._anchor_sim += timedelta(seconds=seconds)
            return self._now_locked()

    def set_scale(self, scale: float) -> None:
        """Change how fast simulated time runs relative to real time (0 freezes it)."""
        if scale < 0:
            raise ValueError("clock scale must be >= 0")
        with self._lock:
            self._anchor_sim = self._now_locked()
            self._anchor_real = self._monotonic()
            self._scale = float(scale)

    def set_time(self, instant: datetime) -> None:
        """Move to an absolute instant (forward only), used when restoring a state dir."""
        with self._lock:
            current = self._now_locked()
            if instant.astimezone(UTC) > current:
                self._anchor_sim += instant.astimezone(UTC) - current

    def _now_locked(self) -> datetime:
        elapsed = (self._monotonic() - self._anchor_real) * self._scale
        return self._anchor_sim + timedelta(seconds=elapsed)
