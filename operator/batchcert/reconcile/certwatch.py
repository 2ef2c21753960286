"""The shared certificate cache: one Key Vault read per certificate per interval, however many
BatchCertPools reference it.

Objects ask for a certificate's reading at every turn; a reading younger than the interval is
served from memory, an older one triggers exactly one read that every concurrent asker awaits
(single flight). Rotation therefore reaches every sharing pool within one interval (the watcher wakes them).

With the scheduler (``reconcile/scheduler.py``) no object asks on a clock: ``refresh`` re-reads
the certificates some object observes when their readings expire, and every read whose answer
differs from the one before (a new version, a fix, a failure) is reported to the subscriber, which
wakes exactly the objects that observe that certificate.

Invariants: at most one read per certificate is in flight (the one ``SingleFlightCache``); a
failed read is cached too, but for the shorter retry interval, so a broken certificate recovers
quickly without a read storm; a change is reported once per read that saw it, whoever asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime

from batchcert.models.azure import CertificateReading
from batchcert.models.spec import CertificateRef
from batchcert.reconcile.lookups import SingleFlightCache

Reader = Callable[[tuple[str, str], str, str, datetime], Awaitable[CertificateReading]]
CertificateKey = tuple[str, str]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _same(a: CertificateReading | None, b: CertificateReading) -> bool:
    """Whether two readings say the same thing (when they were read does not count)."""
    return a is not None and replace(a, read_at=_EPOCH) == replace(b, read_at=_EPOCH)


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
        self._monotonic = monotonic
        self._retry_interval = retry_interval
        self._refs: dict[CertificateKey, CertificateRef] = {}
        self._subscriber: Callable[[CertificateKey], object] = lambda key: None
        self._cache: SingleFlightCache[tuple[str, str], CertificateReading] = SingleFlightCache(
            lambda reading: interval if reading.facts is not None else retry_interval, monotonic
        )

    @property
    def reads(self) -> int:
        return self._cache.reads

    def cached(self, cert: CertificateRef) -> CertificateReading | None:
        return self._cache.cached(cert.key)

    def subscribe(self, changed: Callable[[CertificateKey], object]) -> None:
        """Call ``changed(key)`` whenever a read answers differently from the reading before."""
        self._subscriber = changed

    async def reading(self, cert: CertificateRef) -> CertificateReading:
        self._refs[cert.key] = cert

        async def load() -> CertificateReading:
            before = self._cache.cached(cert.key)
            reading = await self._read(cert.key, cert.vault, cert.cert_name, self._now())
            if before is not None and not _same(before, reading):
                self._subscriber(cert.key)
            return reading

        reading = await self._cache.get(cert.key, load)
        assert reading is not None  # the reader answers every failure with a reading
        return reading

    def invalidate(self, cert: CertificateRef) -> None:
        self._cache.invalidate(cert.key)

    def forget_unused(self, in_use: set[tuple[str, str]]) -> None:
        self._cache.forget_unused(in_use)
        for key in [k for k in self._refs if k not in in_use]:
            del self._refs[key]

    async def keep_fresh(
        self, observed: Callable[[], Collection[CertificateKey]], *, cap: float
    ) -> None:
        """Forever: refresh what is observed when it expires (looking at least every ``cap``
        seconds, for certificates observed since)."""
        while True:
            wait = await self.refresh(observed())
            await asyncio.sleep(min(max(wait, 0.05), cap))

    async def refresh(self, observed: Collection[CertificateKey]) -> float:
        """Re-read the observed certificates whose readings expired (changes reach the
        subscriber); returns seconds until the next one expires."""
        due = [
            self._refs[key]
            for key in observed
            if key in self._refs and self._cache.expires_in(key) <= 0
        ]
        await asyncio.gather(*(self.reading(ref) for ref in due))
        waits = [self._cache.expires_in(key) for key in observed if key in self._refs]
        return max(0.0, min(waits, default=self._retry_interval))
