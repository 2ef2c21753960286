"""Reads many objects share, done once: the one single-flight cache type, and the shared facts
(identities, Batch account endpoints) every pool needs.

A thousand pools created at once with the same identity cost one identity read, not a thousand:
the first asker reads, concurrent askers await the same read, later askers get the remembered
value until its time-to-live passes. Without this, the identity reads alone would bound the
convergence of 1,000 pools by ARM's read bucket (measured in ``benchmarks/``). The certificate
watcher (``certwatch``) is the same cache with a per-value time-to-live.

Invariants: at most one read per key is in flight; ``None`` (not found) and failures are never
remembered, so a fix is seen on the next ask; ``invalidate`` forgets a key at once; one asker
being cancelled never cancels the read the others await; an asker's ``max_age`` only ever makes
a read happen sooner than the TTL would, never later. A read outlives its askers, so shutdown
cancels every read in flight (``cancel_inflight_reads``) before it closes the clients they
use: else a read left running meets a closed session, and kopf's shutdown re-raises that as a
traceback out of the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, Generic, TypeVar

from batchcert.adapters.arm import ArmAdapter
from batchcert.models.azure import IdentityInfo
from batchcert.models.spec import AccountRef, BatchCertPoolSpec

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Every cache's reads in flight, for shutdown (a read is shielded from its askers' cancellation).
_INFLIGHT: set[asyncio.Task[Any]] = set()


async def cancel_inflight_reads() -> None:
    """Cancel every single-flight read still running and wait for them to end."""
    tasks = list(_INFLIGHT)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class SingleFlightCache(Generic[K, V]):
    def __init__(
        self,
        ttl: float | Callable[[V], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._monotonic = monotonic
        self._values: dict[K, tuple[float, float, V]] = {}  # key → (read at, expires at, value)
        self._inflight: dict[K, asyncio.Task[V | None]] = {}
        self.reads = 0

    def cached(self, key: K) -> V | None:
        entry = self._values.get(key)
        return entry[2] if entry else None

    def expires_in(self, key: K) -> float:
        """Seconds until ``key``'s value expires (0 when absent or expired)."""
        entry = self._values.get(key)
        return 0.0 if entry is None else max(0.0, entry[1] - self._monotonic())

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V | None]],
        *,
        max_age: float | None = None,
    ) -> V | None:
        """The value of ``key``: remembered while younger than its TTL and than ``max_age`` (an
        asker that needs fresher evidence than the TTL promises, e.g. a failing pool's diagnosis)."""
        entry = self._values.get(key)
        now = self._monotonic()
        if entry is not None and now < entry[1] and (max_age is None or now - entry[0] < max_age):
            return entry[2]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            self._inflight[key] = task
            _INFLIGHT.add(task)
            task.add_done_callback(_INFLIGHT.discard)
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        try:
            self.reads += 1
            value = await load()
            if value is not None:
                ttl = self._ttl(value) if callable(self._ttl) else self._ttl
                now = self._monotonic()
                self._values[key] = (now, now + ttl, value)
            return value
        finally:
            self._inflight.pop(key, None)

    def invalidate(self, key: K) -> None:
        self._values.pop(key, None)

    def forget_unused(self, in_use: Collection[K]) -> None:
        for key in [k for k in self._values if k not in in_use]:
            del self._values[key]


class SharedFacts:
    """Identities, account endpoints and vaults, read once for every object that names them.

    Identities and endpoints do not change under a given resource id, so they are kept until
    evidence says otherwise: a pool that is not Ready, or nodes reporting IdentityNotFound (an
    identity recreated under the same name has a new clientId), makes the reconcile forget the
    identity. Steady state costs no read here.

    Vaults (their access policies) and role-assignment answers do change behind our back (a
    revoked grant), so every asker says how old an answer it accepts (``max_age``): the diagnosis
    of a thousand healthy pools sharing one vault costs one vault read per drift interval, not a
    thousand. "No such vault" is an answer too, remembered the same way.
    """

    def __init__(self, arm: ArmAdapter, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._arm = arm
        self._identities: SingleFlightCache[str, IdentityInfo] = SingleFlightCache(
            float("inf"), monotonic
        )
        self._endpoints: SingleFlightCache[str, str] = SingleFlightCache(float("inf"), monotonic)
        # A vault's answer in a 1-tuple, so "no such vault" is remembered too (for the asker's
        # max_age): a diagnosis that guesses the vault's resource group wrongly must not cost
        # every pool a read (it cost 0.14 ARM reads per pool per drift interval at 1000 pools).
        self._vaults: SingleFlightCache[str, tuple[dict[str, Any] | None]] = SingleFlightCache(
            float("inf"), monotonic
        )
        self._roles: SingleFlightCache[tuple[str, str], bool] = SingleFlightCache(
            float("inf"), monotonic
        )

    @property
    def reads(self) -> int:
        return sum(c.reads for c in (self._identities, self._endpoints, self._vaults, self._roles))

    async def vault(self, resource_id: str, *, max_age: float) -> dict[str, Any] | None:
        """The vault's ARM resource (access policies, RBAC mode) no older than ``max_age``."""

        async def load() -> tuple[dict[str, Any] | None]:
            return (await self._arm.get_vault(resource_id),)

        answer = await self._vaults.get(resource_id.lower(), load, max_age=max_age)
        return answer[0] if answer else None

    def forget_vault(self, resource_id: str) -> None:
        """We changed the vault (an access policy added): the next asker reads it again."""
        self._vaults.invalidate(resource_id.lower())

    async def has_secrets_role(
        self, vault_resource_id: str, principal_id: str, *, max_age: float
    ) -> bool:
        """Whether ``principal_id`` holds a secrets-reading role on the vault (RBAC vaults)."""

        async def load() -> bool:
            return await self._arm.has_secrets_role(vault_resource_id, principal_id)

        key = (vault_resource_id.lower(), principal_id.lower())
        return bool(await self._roles.get(key, load, max_age=max_age))

    async def identity(self, resource_id: str) -> IdentityInfo | None:
        async def load() -> IdentityInfo | None:
            return await self._arm.get_identity(resource_id)

        return await self._identities.get(resource_id.lower(), load)

    async def client_id(self, spec: BatchCertPoolSpec) -> str | None:
        """The pool identity's clientId: from the spec, else the shared identity read."""
        if spec.identity.client_id:
            return spec.identity.client_id
        identity = await self.identity(spec.identity.resource_id)
        return identity.client_id if identity else None

    def forget_identity(self, resource_id: str) -> None:
        self._identities.invalidate(resource_id.lower())

    async def account_endpoint(self, account: AccountRef) -> str:
        async def load() -> str:
            return await self._arm.get_account_endpoint(account)

        endpoint = await self._endpoints.get(account.resource_id.lower(), load)
        assert endpoint is not None  # get_account_endpoint raises rather than return None
        return endpoint
