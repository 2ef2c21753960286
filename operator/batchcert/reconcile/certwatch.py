"""The shared certificate cache: one Key Vault read per certificate per interval, however many
BatchCertPools reference it.

Objects ask for a certificate's reading on every tick; a reading younger than the interval is
served from memory, an older one triggers exactly one read that every concurrent asker awaits
(single flight). Rotation therefore reaches every sharing pool within one interval plus one tick.

Invariants: at most one read per certificate is in flight; a failed read is cached too, but for
the shorter retry interval, so a broken certificate recovers quickly without a read storm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from batchcert.models.azure import CertificateReading
from batchcert.models.spec import CertificateRef

Reader = Callable[[tuple[str, str], str, str, datetime], Awaitable[CertificateReading]]


class CertificateWatcher:
    def __init__(
        self,
        read: Reader,
        *,
        interval: float,
        retry_interval: float,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._interval = interval
        self._retry_interval = retry_interval
        self._now = now
        self._monotonic = monotonic
        self._readings: dict[tuple[str, str], tuple[float, CertificateReading]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[CertificateReading]] = {}
        self.reads = 0

    def cached(self, cert: CertificateRef) -> CertificateReading | None:
        entry = self._readings.get(cert.key)
        return entry[1] if entry else None

    def _is_fresh(self, key: tuple[str, str]) -> bool:
        entry = self._readings.get(key)
        if entry is None:
            return False
        at, reading = entry
        ttl = self._interval if reading.facts is not None else self._retry_interval
        return self._monotonic() - at < ttl

    async def reading(self, cert: CertificateRef) -> CertificateReading:
        key = cert.key
        if self._is_fresh(key):
            return self._readings[key][1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(cert))
            self._inflight[key] = task
        # shield: one caller being cancelled (its object deleted) must not cancel the others' read.
        return await asyncio.shield(task)

    async def _refresh(self, cert: CertificateRef) -> CertificateReading:
        try:
            self.reads += 1
            reading = await self._read(cert.key, cert.vault, cert.cert_name, self._now())
            self._readings[cert.key] = (self._monotonic(), reading)
            return reading
        finally:
            self._inflight.pop(cert.key, None)

    def invalidate(self, cert: CertificateRef) -> None:
        self._readings.pop(cert.key, None)

    def forget_unused(self, in_use: set[tuple[str, str]]) -> None:
        for key in list(self._readings):
            if key not in in_use:
                del self._readings[key]
