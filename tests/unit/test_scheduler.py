"""The one scheduler (due-time queue) and the certificate watcher's change notifications.

Covers: an admitted object's first turn is due at once; a scheduled object is woken when its
due time comes and not before; a later schedule replaces an earlier one (stale entries are
skipped); a released object is never woken; a changed certificate wakes exactly its observers;
the watcher reports a changed reading once, not an unchanged one, and refreshes only what is
observed and expired; ``run`` wakes objects on time without ticking per object.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from batchcert.models.azure import CertificateFacts, CertificateReading
from batchcert.models.spec import CertificateRef
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.scheduler import Scheduler, outside_place

NOW = datetime(2026, 11, 29, tzinfo=UTC)
VAULT = "https://kv.vault.azure.net"


def is_due(scheduler: Scheduler[str], key: str) -> bool:
    return scheduler._events[key].is_set()


def test_admit_is_due_at_once_and_schedule_waits() -> None:
    clock = [0.0]
    scheduler: Scheduler[str] = Scheduler(monotonic=lambda: clock[0])
    scheduler.admit("ns/a")
    assert is_due(scheduler, "ns/a")
    scheduler._events["ns/a"].clear()  # the turn was taken
    scheduler.schedule("ns/a", 30)
    assert scheduler.release_due() == 30 and not is_due(scheduler, "ns/a")
    clock[0] = 29.9
    scheduler.release_due()
    assert not is_due(scheduler, "ns/a")
    clock[0] = 30
    assert scheduler.release_due() is None and is_due(scheduler, "ns/a")


def test_a_new_schedule_replaces_the_old_and_release_forgets() -> None:
    clock = [0.0]
    scheduler: Scheduler[str] = Scheduler(monotonic=lambda: clock[0])
    for key in ("ns/a", "ns/b"):
        scheduler.admit(key)
        scheduler._events[key].clear()
    scheduler.schedule("ns/a", 10)
    scheduler.schedule("ns/a", 50)  # the 10 s entry is now stale
    scheduler.schedule("ns/b", 20)
    clock[0] = 25
    scheduler.release_due()
    assert not is_due(scheduler, "ns/a") and is_due(scheduler, "ns/b")
    scheduler.release("ns/a")
    clock[0] = 60
    assert scheduler.release_due() is None
    assert "ns/a" not in scheduler._events and scheduler.owned == 1


def test_a_changed_certificate_wakes_exactly_its_observers() -> None:
    scheduler: Scheduler[str] = Scheduler(monotonic=lambda: 0.0)
    for key in ("ns/a", "ns/b", "ns/c"):
        scheduler.admit(key)
        scheduler._events[key].clear()
        scheduler.schedule(key, 300)
    scheduler.observe("ns/a", {"shared", "group-0"})
    scheduler.observe("ns/b", {"shared"})
    scheduler.observe("ns/c", {"group-1"})
    assert scheduler.observed() == {"shared", "group-0", "group-1"}
    assert scheduler.changed("shared") == 2
    assert [is_due(scheduler, k) for k in ("ns/a", "ns/b", "ns/c")] == [True, True, False]
    scheduler.observe("ns/a", {"group-0"})  # the spec dropped a certificate
    scheduler.release("ns/c")
    assert scheduler.observed() == {"shared", "group-0"}
    assert scheduler.changed("group-1") == 0


async def test_run_wakes_each_object_when_due() -> None:
    scheduler: Scheduler[str] = Scheduler()
    loop = asyncio.ensure_future(scheduler.run())
    try:
        scheduler.admit("ns/a")
        await asyncio.wait_for(scheduler.turn("ns/a"), 1)
        scheduler.schedule("ns/a", 0.2)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(scheduler.turn("ns/a"), 2)
        assert asyncio.get_running_loop().time() - started >= 0.19
        assert scheduler.wakes == 2
    finally:
        loop.cancel()


def facts(version: str) -> CertificateFacts:
    return CertificateFacts(VAULT, "shared", version, "AB" * 20, None, None, True)


async def test_watcher_reports_changes_once_and_refreshes_only_what_expired() -> None:
    clock = [0.0]
    versions = ["v1", "v1", "v2"]
    reads: list[str] = []

    async def read(
        key: tuple[str, str], vault: str, name: str, now: datetime
    ) -> CertificateReading:
        reads.append(name)
        return CertificateReading(key, now, facts(versions[len(reads) - 1]))

    changed: list[tuple[str, str]] = []
    watcher = CertificateWatcher(
        read, interval=300, retry_interval=15, now=lambda: NOW, monotonic=lambda: clock[0]
    )
    watcher.subscribe(changed.append)
    ref = CertificateRef(vault_url=VAULT, name="shared")
    await watcher.reading(ref)  # the first reading is no change
    assert await watcher.refresh({ref.key}) == 300 and reads == ["shared"]
    clock[0] = 301
    await watcher.refresh({ref.key})  # v1 again: no change
    assert changed == [] and len(reads) == 2
    clock[0] = 602
    assert await watcher.refresh(set()) == 15  # nothing observed: nothing read
    await watcher.refresh({ref.key})
    assert changed == [ref.key] and len(reads) == 3


async def test_at_most_concurrent_turns_run_and_in_the_order_they_asked() -> None:
    scheduler: Scheduler[str] = Scheduler(concurrent_turns=2)
    release = asyncio.Event()
    started: list[str] = []
    most = 0

    async def turn(key: str) -> None:
        nonlocal most
        scheduler.admit(key)
        await scheduler.turn(key)
        async with scheduler.place():
            started.append(key)
            most = max(most, scheduler.running)
            await release.wait()

    keys = [f"ns/{i}" for i in range(5)]
    tasks = [asyncio.ensure_future(turn(key)) for key in keys]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == keys[:2] and scheduler.running == 2  # the other three wait their turn
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert started == keys and most == 2 and scheduler.running == 0


async def test_a_failed_turn_gives_its_place_back() -> None:
    scheduler: Scheduler[str] = Scheduler(concurrent_turns=1)
    with pytest.raises(RuntimeError):
        async with scheduler.place():
            raise RuntimeError("the reconcile's bug")
    async with asyncio.timeout(1):
        async with scheduler.place():
            assert scheduler.running == 1
    assert scheduler.running == 0


async def test_a_turn_outside_its_place_lets_another_run_then_waits_its_turn_back() -> None:
    scheduler: Scheduler[str] = Scheduler(concurrent_turns=1)
    log: list[str] = []
    reading, other_done = asyncio.Event(), asyncio.Event()

    async def long_pass() -> None:
        async with scheduler.place():
            log.append("a starts")
            async with outside_place():  # a node pass: bounded by its own account's limit
                reading.set()
                await other_done.wait()
                log.append("a read its nodes")
            log.append(f"a back in, running {scheduler.running}")

    async def other() -> None:
        await reading.wait()
        async with scheduler.place():
            log.append(f"b runs, running {scheduler.running}")
        other_done.set()

    await asyncio.wait_for(asyncio.gather(long_pass(), other()), 1)
    assert log == ["a starts", "b runs, running 1", "a read its nodes", "a back in, running 1"]
    assert scheduler.running == 0


async def test_a_turn_cancelled_while_taking_its_place_back_gives_back_nothing() -> None:
    scheduler: Scheduler[str] = Scheduler(concurrent_turns=1)
    outside, holder_in, hold = asyncio.Event(), asyncio.Event(), asyncio.Event()
    reached: list[str] = []

    async def stopped_turn() -> None:
        async with scheduler.place():
            async with outside_place():
                outside.set()
                await holder_in.wait()
            reached.append("back in")  # never: cancelled while taking the place back

    async def holder() -> None:
        await outside.wait()
        async with scheduler.place():
            holder_in.set()
            await hold.wait()

    turn, holding = asyncio.ensure_future(stopped_turn()), asyncio.ensure_future(holder())
    await asyncio.wait_for(holder_in.wait(), 1)
    await asyncio.sleep(0.01)  # the turn now waits to take its place back
    turn.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await turn
    hold.set()
    await asyncio.wait_for(holding, 1)
    assert reached == [] and scheduler.running == 0
    async with scheduler.place():  # still exactly one place: a second must wait
        second = asyncio.ensure_future(scheduler.place().__aenter__())
        await asyncio.sleep(0.01)
        assert not second.done()
        second.cancel()


async def test_outside_any_turn_outside_place_does_nothing() -> None:
    async with outside_place():
        pass
