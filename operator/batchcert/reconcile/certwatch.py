"""The shared certificate cache: one Key Vault read per certificate per interval, however many
BatchCertPools reference it.

Objects ask for a certificate's reading on every tick; a reading younger than the interval is
served from memory, an older one triggers exactly one read that every concurrent asker awaits
(single flight). Rotation therefore reaches every sharing pool within one interval plus one tick.

Invariants: at most one read per certificate is in flight (the one ``SingleFlightCache``); a
failed read is cached too, but for the shorter retry interval, so a broken certificate recovers
quickly without a read storm.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from batchcert.models.azure import CertificateReading
from batchcert.models.spec import CertificateRef
from batchcert.reconcile.lookups import SingleFlightCache

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
        self._now = now
        self._cache: SingleFlightCache[tuple[str, str], CertificateReading] = SingleFlightCache(
            lambda reading: interval if reading.facts is not None else retry_interval, monotonic
        )

    @property
    def reads(self) -> int:
        return self._cache.reads

    def cached(self, cert: CertificateRef) -> CertificateReading | None:
        return self._cache.cached(cert.key)

    async def reading(self, cert: CertificateRef) -> CertificateReading:
        async def load() -> CertificateReading:
            return await self._read(cert.key, cert.vault, cert.cert_name, self._now())

        reading = await self._cache.get(cert.key, load)
        assert reading is not None  # the reader answers every failure with a reading
        return reading

    def invalidate(self, cert: CertificateRef) -> None:
        self._cache.invalidate(cert.key)

    def forget_unused(self, in_use: set[tuple[str, str]]) -> None:
        self._cache.forget_unused(in_use)
