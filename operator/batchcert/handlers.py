"""kopf registration: every handler of the operator, and nothing else.

Handlers are thin: parse kopf's kwargs into an ``ObjectView``, call one reconcile function, and
turn its outcome into a status patch, Events, or a kopf retry. All decisions live below.

* One scheduler (``reconcile/scheduler.py``) for every object, not a timer per object ticking
  to ask "is anything due?": the level-driven reconcile runs when its work is due (the reconcile
  says when), when the spec or metadata changed (``on_change`` wakes it), or when a certificate
  it observes changed (the shared watcher wakes exactly its observers). Creation, spec changes,
  drift, rotations and node health all flow through the same reconcile; no edge chains.
* Ownership is kopf's per-object daemon ``on_pool``: it admits the object to the scheduler and
  takes its turns; kopf stops it on deletion, on shutdown, and when peering pauses this replica,
  so a paused replica owns nothing and acts on nothing. A sleeping daemon costs no CPU, and
  little memory: it awaits its scheduler event itself, with one stop watch for its lifetime.
* The delete handler applies ``deletionPolicy``; kopf adds our finalizer because it exists, and
  the reconcile refuses to write to Azure until that finalizer is on the object.
* Status is written only by ``write_status`` (a merge patch of what changed, through kopf's own
  patch call, as kopf's handlers' ``patch`` would be); the handlers return nothing, so kopf never
  writes handler results into ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from sys import intern
from typing import Any, TypeVar, cast

import kopf

from batchcert import metrics
from batchcert.adapters.arm import ArmAdapter
from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.config import Config
from batchcert.models.names import FINALIZER, GROUP, PAUSED_ANNOTATION, PLURAL, VERSION
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.engine import Reconciler
from batchcert.reconcile.memory import ObjectMemory, ObjectView
from batchcert.reconcile.outcome import Event
from batchcert.reconcile.scheduler import Scheduler
from batchcert.reconcile.sharding import ShardAssignment, shard_of
from batchcert.translate.merge_patch import apply_merge_patch

_EVENT_MESSAGE_LIMIT = 1000
# How long a shard waits on another shard's deletion before saying it still waits (an Event).
_ELSEWHERE_WAIT_SECONDS = 300.0
# Status writes in flight at once. kopf's API client opens a new TLS connection for every
# concurrent request (its connector has no limit), and each costs a 256 KiB read buffer
# (asyncio's SSL protocol) besides the SSL state: 100 pools converging held 54 connections to
# the API server. 16 writers are as fast as the API server here (a bare client at concurrency 16
# made 100-114 status writes/s on this 2-core machine; results/issue15/memory/results.md).
CONCURRENT_STATUS_WRITES = 16
T = TypeVar("T")


@dataclass
class Services:
    clients: AzureClients
    reconciler: Reconciler
    watcher: CertificateWatcher
    scheduler: Scheduler[tuple[str, str]]
    config: Config
    loops: list[asyncio.Task[None]] = field(default_factory=list)
    writes: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONCURRENT_STATUS_WRITES)
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_services(config: Config, now: Callable[[], datetime] = utcnow) -> Services:
    clients = AzureClients(config)
    keyvault = KeyVaultAdapter(clients)
    watcher = CertificateWatcher(
        keyvault.read_certificate,
        interval=config.cert_interval_seconds,
        retry_interval=config.busy_interval_seconds,
        now=now,
    )
    reconciler = Reconciler(
        arm=ArmAdapter(clients),
        nodes=BatchNodesAdapter(clients, config.node_concurrency),
        tasks=BatchTasksAdapter(clients, per_account=config.node_concurrency),
        keyvault=keyvault,
        watcher=watcher,
        config=config,
        now=now,
    )
    scheduler: Scheduler[tuple[str, str]] = Scheduler(concurrent_turns=config.concurrent_turns)
    watcher.subscribe(scheduler.changed)  # a certificate's new reading wakes its observers
    return Services(clients, reconciler, watcher, scheduler, config)


def start_loops(services: Services) -> None:
    """The scheduler's one loop, and the one that keeps observed certificates fresh."""
    services.loops = [
        asyncio.ensure_future(services.scheduler.run()),
        asyncio.ensure_future(
            services.watcher.keep_fresh(
                services.scheduler.observed, cap=services.config.tick_seconds
            )
        ),
    ]


async def stop_loops(services: Services) -> None:
    for task in services.loops:
        task.cancel()
    for task in services.loops:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def object_key(body: kopf.Body) -> str:
    meta = body.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass
class WrittenStatus:
    """The status our writes lead to, until the watch delivers the object that carries them: a
    turn taken before then must not reconcile against the status from before our own writes.

    Computed here (the status the turn saw plus the patch, RFC 7386: only ``write_status``
    writes status), not the server's answer (the whole object); and the status, not only the
    last patch: a second write before the watch catches up is a patch against the first one's
    result, so a turn must see both (else a rotation written once would be counted again). It
    is dropped as soon as the watch delivers a newer object, so it is held only briefly.
    """

    status: dict[str, Any]
    resource_version_before: str

    def is_pending(self, body: kopf.Body) -> bool:
        """The watch has not yet delivered a version of the object newer than our write's."""
        return self.resource_version_before == str(
            body.get("metadata", {}).get("resourceVersion", "")
        )


async def write_status(
    settings: kopf.OperatorSettings,
    resource: kopf.Resource,
    body: kopf.Body,
    status_patch: dict[str, Any],
    logger: kopf.Logger,
    *,
    seen_status: dict[str, Any] | None = None,
) -> WrittenStatus | None:
    """The one status writer: a merge patch of ``status`` (what changed, nothing else), computed
    against ``seen_status`` (the status the turn saw, our pending writes included).

    kopf applies a handler's ``patch`` only when the handler returns; the per-object daemon
    never returns while it owns the object, so it patches through kopf's own API client (a
    private module of kopf, pinned in constraints.txt; unit-tested in test_handlers_wakes):
    one merge patch of the status subresource, authenticated and retried as kopf's are. Not
    kopf's ``patch_obj``: that deep-copies the whole answered object on every call to diff it
    for JSON-patch functions we never use, and formats the patch into a debug line even with
    debug logging off.
    """
    from kopf._cogs.clients import api
    from kopf._cogs.clients.errors import APINotFoundError

    meta = body.get("metadata", {})
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("Merge-patching the status with: %r", status_patch)
    try:
        await api.patch(
            url=resource.get_url(
                namespace=meta.get("namespace"), name=meta.get("name", ""), subresource="status"
            ),
            headers={"Content-Type": "application/merge-patch+json"},
            payload={"status": status_patch},
            settings=settings,
            logger=logger,
        )
    except APINotFoundError:  # gone meanwhile
        return None
    after = apply_merge_patch(seen_status or {}, status_patch)
    return WrittenStatus(after, str(meta.get("resourceVersion", "")))


def current_view(body: kopf.Body, written: WrittenStatus | None) -> ObjectView:
    """The object as the turn must see it: with our last write applied while the watch has not
    delivered it yet."""
    view = to_view(body)
    if written is not None and written.is_pending(body):
        return replace(view, status=dict(written.status))
    return view


def to_view(body: kopf.Body) -> ObjectView:
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return ObjectView(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        deleting=bool(meta.get("deletionTimestamp")),
        has_finalizer=FINALIZER in (meta.get("finalizers") or []),
        paused=str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true",
    )


def post_events(body: kopf.Body, events: list[Event]) -> None:
    for event in events:
        kopf.event(
            body,
            type=event.type,
            reason=event.reason,
            message=event.message[:_EVENT_MESSAGE_LIMIT],
        )


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


def _object_memory(memo: kopf.Memo) -> ObjectMemory:
    memory = memo.get("object")
    if memory is None:
        memory = memo["object"] = ObjectMemory()
    return memory


class GenerationDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base as ``metadata.generation`` plus labels and annotations, not the spec.

    kopf builds the essence on every watch event (a deep copy of the whole body: spec, status,
    managedFields) and keeps the last one as an annotation on the object (a JSON copy of the
    spec). ``on_change`` only needs to know *that* the spec, labels or annotations changed, and
    the API server bumps ``metadata.generation`` on every spec change (status and metadata
    changes leave it): the annotation shrinks to a few bytes and each event copies only metadata.
    An object still carrying the whole-spec annotation of an older operator differs once, wakes
    once, and gets the small annotation. Our own ``batchcert.dev/paused`` shares the prefix kopf
    marks as its own and would be filtered out with kopf's: it is kept explicitly, so pausing and
    resuming wake the object at once.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        meta = body.get("metadata", {})
        # kopf's own filtering (its marked prefixes, kubectl's last-applied, the diff-base itself)
        # on a body of labels and annotations only; no extra fields (no field handlers).
        small = {k: meta[k] for k in ("labels", "annotations") if meta.get(k) is not None}
        essence = super().build(body=kopf.Body(cast(kopf.RawBody, {"metadata": small})))
        essence["generation"] = meta.get("generation")  # type: ignore[typeddict-unknown-key]
        # Our own annotations share kopf's prefix, so kopf's filter drops them: keep the pause.
        paused = (meta.get("annotations") or {}).get(PAUSED_ANNOTATION)
        if paused is not None:
            essence["paused"] = paused  # type: ignore[typeddict-unknown-key]
        return essence


def configure_settings(
    settings: kopf.OperatorSettings,
    *,
    peering: str | None = None,
    priority: int = 0,
    shard: ShardAssignment | None = None,
) -> None:
    settings.persistence.finalizer = FINALIZER
    # Our handlers keep no progress worth persisting (the reconcile is level-driven), so kopf's
    # bookkeeping goes to annotations under our own prefix, never into the status contract.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # kopf stores the diff-base even where no handler matches, so shards sharing one key would
    # race: a shard that does not own an object could store a change first, and the owner would
    # see none (no wake until its next turn). One key per shard index.
    key = "last-handled-configuration"
    if shard is not None and not shard.is_whole:
        key += f".shard-{shard.index}"
    settings.persistence.diffbase_storage = GenerationDiffBase(prefix=GROUP, key=key)
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "batchcert-operator"  # "From" in kubectl describe
    settings.watching.server_timeout = 300
    if peering is None:
        settings.peering.standalone = True  # one replica: nothing to coordinate with
    else:
        # Several replicas: kopf's peering object (crds/kopf-peering.yaml) lets only the live
        # operator with the highest priority act; equal priorities all pause (kopf's rule).
        settings.peering.standalone = False
        settings.peering.name = peering
        settings.peering.mandatory = True
        settings.peering.priority = priority


# Fields of a watched body that nothing in kopf or here reads, and that are large: every
# writer's managedFields entry (19.6 of 38.8 KB of a measured body) and kubectl's client-side
# copy of the manifest (~1.5 KB; kopf filters it out of its diff-base itself).
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _shared_strings(value: Any) -> Any:
    """``value`` rebuilt with every dict key and string interned (``sys.intern``, mortal).

    A thousand bodies spell the same keys ("lastTransitionTime", ...) and mostly the same values
    ("True", the vault URL, reasons, the image) in separate strings: sharing them halves a kept
    body (17.9 → 8.0 KiB measured on 200 benchmark bodies) for ~40 µs per watch event.
    """
    if isinstance(value, dict):
        return {
            intern(k): intern(v) if v.__class__ is str else _shared_strings(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [intern(v) if v.__class__ is str else _shared_strings(v) for v in value]
    return value


def lean_body(body: dict[str, Any]) -> dict[str, Any]:
    """A watched body as kopf should keep it: without unread fields, its strings shared."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            for key in _UNREAD_ANNOTATIONS:
                annotations.pop(key, None)
    return cast(dict[str, Any], _shared_strings(body))


async def _lean_bodies(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in stream:
        if isinstance(item, dict) and isinstance(item.get("object"), dict):
            item["object"] = lean_body(item["object"])
        yield item


def keep_watched_bodies_lean() -> None:
    """Have kopf keep each watched object lean (:func:`lean_body`).

    kopf holds the latest body of every object it watches, and half of a BatchCertPool's body is
    managedFields, which nothing in kopf or here reads; of the rest, most bytes are the same
    strings repeated in every object. About 30 MB at 1000 pools
    (benchmarks/results/issue15/memory). kopf has no option for it, so its watch stream (a
    private module, like the patch call above; kopf pinned in constraints.txt) is wrapped once.
    """
    from kopf._cogs.clients import watching

    original = watching.continuous_watch
    if getattr(original, "_batchcert_lean", False):
        return

    def lean(**kwargs: Any) -> AsyncIterator[Any]:
        return _lean_bodies(original(**kwargs))

    lean._batchcert_lean = True  # type: ignore[attr-defined]
    watching.continuous_watch = lean


def register_handlers(
    registry: kopf.OperatorRegistry,
    config: Config,
    *,
    peering: str | None = None,
    priority: int = 0,
    shard: ShardAssignment | None = None,
) -> None:
    shard = shard or ShardAssignment()
    keep_watched_bodies_lean()

    def is_owned(body: kopf.Body, **_: Any) -> bool:
        return shard.owns(str(body.get("metadata", {}).get("uid", "")))

    def is_not_owned(body: kopf.Body, **_: Any) -> bool:
        return not is_owned(body)

    # One of N shards acts only on its share (by a hash of the uid; reconcile/sharding.py);
    # a whole operator filters nothing.
    owned = None if shard.is_whole else is_owned

    @kopf.on.login(registry=registry)
    def on_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (no API client library needed).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_settings(settings, peering=peering, priority=priority, shard=shard)
        memo["settings"] = settings
        memo["services"] = services = build_services(config)
        start_loops(services)

    @kopf.on.cleanup(registry=registry)
    async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
        services: Services | None = memo.get("services")
        if services is not None:
            await stop_loops(services)
            await services.clients.close()

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=30.0, when=owned)
    async def on_pool(
        body: kopf.Body,
        memo: kopf.Memo,
        resource: kopf.Resource,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        """Own the object while kopf lets this replica act on it; reconcile at each turn."""
        stopped: kopf.DaemonStopped = kwargs["stopped"]  # kopf passes it to daemons
        services: Services = memo["services"]
        scheduler = services.scheduler
        key = object_key(body)
        memory = _object_memory(memo)
        written: WrittenStatus | None = None
        scheduler.admit(key)
        stop = watch_stop(stopped, lambda: scheduler.wake(key))
        try:
            while not stopped:
                await scheduler.turn(key)
                # One of a bounded number of places (reconcile and writes), in the order the
                # turns came due: a burst is worked through, not held in memory all at once.
                async with scheduler.place():
                    if stopped:
                        return
                    view = current_view(body, written)
                    if written is not None and not written.is_pending(body):
                        written = None  # the watch delivered our writes (or newer): drop them
                    # This replica still acts on the object: its series stay, however long the
                    # reconcile or the deletion takes (the turn's gap is below their staleness).
                    metrics.touch(view)
                    if view.deleting:
                        return  # the delete handler owns the object's last moments
                    started = time.monotonic()
                    try:
                        outcome = await until_stopped(
                            services.reconciler.reconcile(view, memory), stop
                        )
                        metrics.observe(
                            view, outcome, time.monotonic() - started, services.clients.pacer
                        )
                        if outcome is None:
                            return
                        if outcome.status_patch:
                            async with services.writes:  # a bounded number of API connections
                                written = await write_status(
                                    memo["settings"],
                                    resource,
                                    body,
                                    outcome.status_patch,
                                    logger,
                                    seen_status=view.status,
                                )
                        post_events(body, outcome.events)
                    except Exception:  # a bug or the API server: never lose the object's schedule
                        logger.exception("reconcile of %s failed; trying again", key)
                        scheduler.schedule(key, config.busy_interval_seconds)
                        continue
                    scheduler.observe(key, outcome.certificates)
                    scheduler.schedule(key, outcome.next_check_in)
        finally:
            stop.cancel()
            scheduler.release(key)
            if not to_view(body).deleting:
                # Paused by peering (or shutting down): this replica no longer speaks for it.
                metrics.forget(to_view(body))

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, when=owned)
    async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # The spec, labels or annotations changed (kopf's diff leaves status out): reconcile now.
        services: Services = memo["services"]
        services.scheduler.wake(object_key(body))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, when=owned)
    async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        services: Services = memo["services"]
        outcome = await services.reconciler.delete(to_view(body), _object_memory(memo))
        post_events(body, outcome.events)
        if outcome.done:
            metrics.forget(to_view(body))
        else:
            raise kopf.TemporaryError("the pool is being deleted in Azure", delay=outcome.retry_in)

    if not shard.is_whole:
        # kopf keeps its finalizer on an object only while some handler *matching that object*
        # needs it, so a shard whose handlers all filter an object out would remove the shared
        # finalizer and its owner would add it back, many times a second (and a deletion in the
        # gap would skip deletionPolicy). Every shard therefore requires the finalizer on every
        # object; on another shard's object this handler only waits, and never succeeds: a
        # success would let this shard's kopf drop the finalizer before the owner acted.
        @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, when=is_not_owned)
        async def on_delete_elsewhere(body: kopf.Body, **_: Any) -> None:
            uid = str(body.get("metadata", {}).get("uid", ""))
            await asyncio.sleep(_ELSEWHERE_WAIT_SECONDS)  # the owner normally finishes first
            raise kopf.TemporaryError(
                f"shard {shard_of(uid, shard.count)} of {shard.count} deletes this object and "
                f"then removes the finalizer; shard {shard.index} only keeps it in place (is the "
                "owning shard running?)",
                delay=_ELSEWHERE_WAIT_SECONDS,
            )
