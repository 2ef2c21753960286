"""One scheduler for every BatchCertPool this process owns: a due-time queue.

An object is woken only when its work is due (the reconcile hands back ``next_check_in``), when
its spec changed (the handlers call ``wake``), or when something it depends on changed: a new
certificate reading wakes exactly the objects that observe that certificate. Nothing ticks per
object, so CPU follows the work that is due, not the number of objects.

Each owned object waits on its own ``asyncio.Event`` (a sleeping coroutine costs memory, no CPU);
one ``run`` task keeps a heap of due times and sets the events of those that came due. Which
objects are owned is the handlers' business (kopf's per-object daemon: it is stopped on deletion,
on shutdown, and when peering pauses this replica, and ``release`` follows).

At most ``concurrent_turns`` turns run at once (``running``), taken in the order they asked, as a
work queue's workers (controller-runtime's MaxConcurrentReconciles): a burst that makes every
object due together (a restart, a certificate all of them share) is worked through, not held in
memory all at once; 1000 pools peaked at 200 MB after a restart unbounded, 169 MB at 64
(benchmarks/results/issue15). A node pass runs outside its turn's place (``outside_place``):
its reads have their own bound, one adaptive limit per Batch account, and a pass over 1000 nodes
takes 12 s or more; 64 such pools in one account would otherwise hold every place for minutes and
stall every other object. Other waits on a client-side limit (ARM's buckets, its gate after a
429) keep the place, as a worker blocked in client-go's rate limiter does.

Invariants: a key is in the queue only while admitted; a turn holds at most one place, and gives
back exactly what it holds (a turn cancelled while taking its place back holds none); at most
one due time counts per key (the latest ``schedule`` or ``wake``; stale heap entries are
skipped, never acted on); ``wake`` and ``schedule`` never run a reconcile themselves, they only
set the object's event; the observers index holds exactly the certificates each admitted object
reported at its last reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import AsyncIterator, Callable, Collection, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

D = TypeVar("D", bound=Hashable)  # what objects depend on (a certificate's key)


@dataclass
class _Place:
    scheduler: Scheduler[Any]
    held: bool = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.scheduler.running -= 1
            self.scheduler._places.release()

    async def take_back(self) -> None:
        await self.scheduler._places.acquire()  # cancelled here: nothing held, nothing to give
        self.held = True
        self.scheduler.running += 1


# The place of the turn this task runs in (set by ``Scheduler.place``; the reconcile's tasks
# inherit it), so the reconcile can step out of it without knowing the scheduler.
_PLACE: ContextVar[_Place | None] = ContextVar("batchcert_turn_place", default=None)


@contextlib.asynccontextmanager
async def outside_place() -> AsyncIterator[None]:
    """Run the block without this turn's place (given back, then taken back in turn order).

    For waits that have a bound of their own (a node pass, under its Batch account's limit):
    held places would stall every other object. Outside a turn, it does nothing.
    """
    place = _PLACE.get()
    if place is None or not place.held:
        yield
        return
    place.give_back()
    try:
        yield
    finally:
        await place.take_back()


class Scheduler(Generic[D]):
    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, concurrent_turns: int = 64
    ) -> None:
        self._monotonic = monotonic
        self._places = asyncio.Semaphore(max(1, concurrent_turns))
        self.running = 0  # turns holding a place now
        self._events: dict[str, asyncio.Event] = {}
        self._due: dict[str, float] = {}  # key → the one due time that counts
        self._heap: list[tuple[float, str]] = []
        self._observes: dict[str, frozenset[D]] = {}
        self._observers: dict[D, set[str]] = {}
        self._earlier = asyncio.Event()  # a due time earlier than the one ``run`` sleeps for
        self.wakes = 0  # objects woken, by any cause (a figure for benchmarks and metrics)

    @property
    def owned(self) -> int:
        return len(self._events)

    @property
    def scheduled(self) -> int:
        return len(self._due)

    def admit(self, key: str) -> asyncio.Event:
        """Own ``key`` from now on; its first turn is due at once."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        self.wake(key)
        return event

    def release(self, key: str) -> None:
        """Stop owning ``key`` (deleted, shut down, or another replica's turn)."""
        self._events.pop(key, None)
        self._due.pop(key, None)
        self.observe(key, ())

    def wake(self, key: str) -> None:
        """Make ``key`` due now (a spec change, a dependency changed)."""
        event = self._events.get(key)
        if event is None:
            return
        self._due.pop(key, None)
        if not event.is_set():
            self.wakes += 1
            event.set()

    def schedule(self, key: str, delay: float) -> None:
        """Make ``key`` due ``delay`` seconds from now (replacing any earlier due time)."""
        if key not in self._events:
            return
        at = self._monotonic() + max(0.0, delay)
        self._due[key] = at
        if self._heap and at >= self._heap[0][0]:
            heapq.heappush(self._heap, (at, key))
            return
        heapq.heappush(self._heap, (at, key))
        self._earlier.set()

    def observe(self, key: str, dependencies: Collection[D]) -> None:
        """Record what ``key`` depends on (its certificates), replacing what it reported before."""
        new = frozenset(dependencies) if key in self._events else frozenset()
        old = self._observes.pop(key, frozenset())
        for dependency in old - new:
            watchers = self._observers.get(dependency)
            if watchers is not None:
                watchers.discard(key)
                if not watchers:
                    del self._observers[dependency]
        for dependency in new - old:
            self._observers.setdefault(dependency, set()).add(key)
        if new:
            self._observes[key] = new

    def observed(self) -> set[D]:
        """Every dependency some owned object observes (what is worth keeping fresh)."""
        return set(self._observers)

    def changed(self, dependency: D) -> int:
        """A dependency changed: wake exactly its observers; returns how many."""
        keys = list(self._observers.get(dependency, ()))
        for key in keys:
            self.wake(key)
        return len(keys)

    async def turn(self, key: str) -> bool:
        """Wait until ``key`` is due, and claim the turn (the next one needs a new due time)."""
        event = self._events[key]
        await event.wait()
        event.clear()
        return True

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """One of the ``concurrent_turns`` places, for a turn's reconcile and its writes."""
        await self._places.acquire()
        self.running += 1
        place = _Place(self)
        token = _PLACE.set(place)
        try:
            yield
        finally:
            _PLACE.reset(token)
            place.give_back()

    def release_due(self) -> float | None:
        """Wake every key whose due time has come; seconds until the next one (None: none)."""
        now = self._monotonic()
        while self._heap:
            at, key = self._heap[0]
            if self._due.get(key) != at:
                heapq.heappop(self._heap)  # superseded or released: skip, never act on it
                continue
            if at > now:
                return at - now
            heapq.heappop(self._heap)
            self.wake(key)
        return None

    async def run(self) -> None:
        """The one loop: wake what is due, then sleep until the next due time or an earlier one."""
        while True:
            wait = self.release_due()
            self._earlier.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._earlier.wait(), timeout=wait)
