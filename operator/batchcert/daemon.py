"""Ownership of one object: the per-object daemon's loop, turn by turn.

The daemon admits the object to the one scheduler (``reconcile/scheduler.py``) and takes its
turns when they come due (the reconcile says when), when its spec or metadata changed, or when a
certificate it observes changed. kopf stops it on deletion, on shutdown and when peering pauses
this replica, so a paused replica owns nothing and acts on nothing. A sleeping daemon costs no
CPU and little memory: it awaits its scheduler event itself, with one stop watch for its lifetime.

Invariants: a turn never loses the object's schedule (a failed turn is retried after the busy
interval); a turn sees our own pending status writes; an ignored pause annotation is told once
per distinct value, not on every turn; status is written only by
``statuswriter.write_status``, and only when the reconcile returned a non-empty patch. On
deletion the daemon stops and the delete handler owns the object: while Azure deletes the pool,
``report_deletion`` writes ``PoolDeleting`` through the same writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import kopf

from batchcert import metrics
from batchcert.conditions import (
    CERTIFICATE_READY,
    NODES_READY,
    ConditionUpdate,
    apply_conditions,
    get_condition,
)
from batchcert.oplog import log_turn
from batchcert.reasons import PAUSE_ANNOTATION_IGNORED
from batchcert.reconcile.admission import ignored_pause_message
from batchcert.reconcile.memory import ObjectMemory, ObjectView
from batchcert.reconcile.outcome import Event
from batchcert.services import Services, reconcile_turn, utcnow
from batchcert.statuswriter import WrittenStatus, current_view, post_events, to_view, write_status
from batchcert.translate.merge_patch import build_merge_patch

T = TypeVar("T")


def object_key(body: kopf.Body) -> str:
    meta = body.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def object_memory(memo: kopf.Memo) -> ObjectMemory:
    memory = memo.get("object")
    if memory is None:
        memory = memo["object"] = ObjectMemory()
    return memory


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Future[Any]) -> T | None:
    """Run ``work`` unless ``stop`` (the daemon's one stop watch) completes first: then cancel it.

    kopf never cancels daemons on its own before their cancellation timeout, so a turn stuck in
    a slow Azure call would outlive a pause or a shutdown, and the clients it uses.
    """
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def watch_stop(stopped: kopf.DaemonStopped, on_stop: Callable[[], None]) -> asyncio.Future[Any]:
    """One task per owned object that completes when kopf stops its daemon, and calls
    ``on_stop`` then (the scheduler's wake, so a sleeping daemon notices at once).

    One watch for the object's whole ownership, not two tasks per turn: the daemon awaits its
    scheduler event directly, and only a reconcile runs in a task of its own.
    """
    watch = asyncio.ensure_future(stopped.wait())
    watch.add_done_callback(lambda _: on_stop())
    return watch


class Ownership:
    """One owned object's turns: what a turn needs from kopf, and our pending status write."""

    def __init__(
        self,
        body: kopf.Body,
        memo: kopf.Memo,
        resource: kopf.Resource,
        logger: kopf.Logger,
        stop: asyncio.Future[Any],
    ) -> None:
        self.body, self.memo, self.resource, self.logger, self.stop = (
            body,
            memo,
            resource,
            logger,
            stop,
        )
        self.services: Services = memo["services"]
        self.key = object_key(body)
        self.memory = object_memory(memo)
        self.written: WrittenStatus | None = None
        self.pause_ignored: str | None = None  # the ignored pause value last warned about

    def warn_of_ignored_pause(self) -> None:
        """A pause annotation that is neither true nor false is no pause: say so once per
        distinct value (the turn reconciles the object as not paused)."""
        message = ignored_pause_message(self.body.get("metadata", {}).get("annotations") or {})
        if message is not None and message != self.pause_ignored:
            post_events(self.body, [Event("Warning", PAUSE_ANNOTATION_IGNORED, message)])
        self.pause_ignored = message

    def view(self) -> ObjectView:
        view = current_view(self.body, self.written)
        if self.written is not None and not self.written.is_pending(self.body):
            self.written = None  # the watch delivered our writes (or newer): drop them
        return view

    async def turn(self, view: ObjectView) -> bool:
        """One reconcile, its status write and Events, and the next due time; False: stopped."""
        services, scheduler = self.services, self.services.scheduler
        started = time.monotonic()
        try:
            self.warn_of_ignored_pause()
            outcome = await until_stopped(reconcile_turn(services, view, self.memory), self.stop)
            metrics.observe(view, outcome, time.monotonic() - started, services.clients.pacer)
            if outcome is None:
                return False
            before = after = list(view.status.get("conditions") or [])
            if outcome.status_patch:
                async with services.writes:  # a bounded number of API connections
                    self.written = await write_status(
                        self.memo["settings"],
                        self.resource,
                        self.body,
                        outcome.status_patch,
                        self.logger,
                        seen_status=view.status,
                    )
                if self.written is not None:
                    after = list(self.written.status.get("conditions") or [])
            post_events(self.body, outcome.events)
            log_turn(self.key, before, after, outcome.events)  # what changed, once
        except Exception:  # a bug or the API server: never lose the object's schedule
            self.logger.exception("reconcile of %s failed; trying again", self.key)
            scheduler.schedule(self.key, services.config.busy_interval_seconds)
            return True
        scheduler.observe(self.key, outcome.certificates)
        scheduler.schedule(self.key, outcome.next_check_in)
        return True


def deletion_status_patch(
    status: dict[str, Any], pool: ConditionUpdate, *, generation: int, now: datetime
) -> dict[str, Any]:
    """The status patch while the object waits for its pool's deletion: PoolReady as the
    deletion says (``PoolDeleting`` while Azure deletes), the summaries derived as every turn
    derives them, the other components kept; empty when nothing changed."""
    conditions = list(status.get("conditions") or [])
    components = [pool]
    for type_ in (CERTIFICATE_READY, NODES_READY):
        kept = get_condition(conditions, type_)
        if kept is not None:
            value = {"True": True, "False": False}.get(str(kept.get("status")))
            components.append(ConditionUpdate(type_, value, kept["reason"], kept["message"]))
    after = apply_conditions(conditions, components, generation=generation, now=now)
    return build_merge_patch({"conditions": conditions}, {"conditions": after})


async def report_deletion(
    body: kopf.Body,
    memo: kopf.Memo,
    resource: kopf.Resource,
    logger: kopf.Logger,
    pool: ConditionUpdate,
) -> None:
    """Status while the delete handler waits (the daemon has stopped): through the one writer."""
    view = to_view(body)
    patch = deletion_status_patch(view.status, pool, generation=view.generation, now=utcnow())
    if patch:
        written = await write_status(
            memo["settings"], resource, body, patch, logger, seen_status=view.status
        )
        if written is not None:
            before = list(view.status.get("conditions") or [])
            log_turn(view.key, before, list(written.status.get("conditions") or []))


async def own(
    body: kopf.Body,
    memo: kopf.Memo,
    resource: kopf.Resource,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
) -> None:
    """Own the object while kopf lets this replica act on it; reconcile at each turn."""
    scheduler = memo["services"].scheduler
    key = object_key(body)
    scheduler.admit(key)
    stop = watch_stop(stopped, lambda: scheduler.wake(key))
    owner = Ownership(body, memo, resource, logger, stop)
    try:
        while not stopped:
            await scheduler.turn(key)
            # One of a bounded number of places (reconcile and writes), in the order the turns
            # came due: a burst is worked through, not held in memory all at once.
            async with scheduler.place():
                if stopped:
                    return
                view = owner.view()
                # This replica still acts on the object: its series stay, however long the
                # reconcile or the deletion takes (the turn's gap is below their staleness).
                metrics.touch(view)
                if view.deleting:
                    return  # the delete handler owns the object's last moments
                if not await owner.turn(view):
                    return
    finally:
        stop.cancel()
        scheduler.release(key)
        if not to_view(body).deleting:
            # Paused by peering (or shutting down): this replica no longer speaks for it.
            metrics.forget(to_view(body))
