"""kopf registration: every handler of the operator, and nothing else.

Handlers are thin, named module-level functions: each parses kopf's kwargs and calls one thing
below (the daemon's loop, the composition root, the reconcile's delete). They return nothing, so
kopf never writes handler results into ``status``; status is written by
``statuswriter.write_status`` alone.

* One scheduler (``reconcile/scheduler.py``) for every object: the level-driven reconcile runs
  when its work is due (the reconcile says when), when the spec or metadata changed
  (``on_change`` wakes it), or when a certificate it observes changed (the shared watcher wakes
  exactly its observers). Creation, spec changes, drift, rotations and node health all flow
  through the same reconcile; no edge chains.
* Ownership is kopf's per-object daemon ``on_pool`` (``daemon.own``).
* The delete handler applies ``deletionPolicy``; kopf adds our finalizer because it exists, and
  the reconcile refuses to write to Azure until that finalizer is on the object. While Azure
  deletes the pool it writes ``PoolDeleting`` (``daemon.report_deletion``) and kopf retries.
* The operator's options (config, peering, shard) reach the handlers through kopf's memo: set by
  ``on_startup`` before any object is watched, copied into every object's memo by kopf.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

import kopf

from batchcert import metrics
from batchcert.config import Config
from batchcert.daemon import object_key, object_memory, own, report_deletion
from batchcert.kopfprivate import keep_watched_bodies_lean
from batchcert.kopfsettings import GenerationDiffBase, configure_settings
from batchcert.kubetokens import KopfServiceAccounts
from batchcert.models.names import GROUP, PLURAL, VERSION
from batchcert.reconcile.lookups import cancel_inflight_reads
from batchcert.reconcile.sharding import ShardAssignment, shard_of
from batchcert.services import (
    Services,
    build_services,
    delete_as_namespace,
    start_loops,
    stop_loops,
)
from batchcert.statuswriter import post_events, to_view

# How long a shard waits on another shard's deletion before saying it still waits (an Event).
_ELSEWHERE_WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class OperatorOptions:
    config: Config
    peering: str | None = None
    priority: int = 0
    shard: ShardAssignment = field(default_factory=ShardAssignment)


def on_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (no API client library needed).
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def on_startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, options: OperatorOptions, **_: Any
) -> None:
    configure_settings(
        settings, peering=options.peering, priority=options.priority, shard=options.shard
    )
    memo["options"] = options
    memo["settings"] = settings
    memo["services"] = services = build_services(options.config, KopfServiceAccounts(settings))
    start_loops(services)


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    services: Services | None = memo.get("services")
    if services is not None:
        await stop_loops(services)
        await cancel_inflight_reads()  # before the clients they read through are closed
        for context in services.contexts.contexts[1:]:
            await context.clients.close()
        await services.clients.close()


def is_owned(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    """One of N shards acts only on its share (by a hash of the uid; reconcile/sharding.py)."""
    options: OperatorOptions = memo["options"]
    return options.shard.owns(str(body.get("metadata", {}).get("uid", "")))


def is_not_owned(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    return not is_owned(body, memo)


async def on_pool(
    body: kopf.Body,
    memo: kopf.Memo,
    resource: kopf.Resource,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Own the object while kopf lets this replica act on it; reconcile at each turn."""
    await own(body, memo, resource, logger, stopped)


async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # The spec, labels or annotations changed (kopf's diff leaves status out): reconcile now.
    services: Services = memo["services"]
    services.scheduler.wake(object_key(body))


async def on_delete(
    body: kopf.Body, memo: kopf.Memo, resource: kopf.Resource, logger: kopf.Logger, **_: Any
) -> None:
    services: Services = memo["services"]
    outcome = await delete_as_namespace(services, to_view(body), object_memory(memo))
    post_events(body, outcome.events)
    if not outcome.done and outcome.condition is not None:
        # Azure's delete is long-running: status says so (PoolDeleting) while kopf retries.
        await report_deletion(body, memo, resource, logger, outcome.condition)
    if outcome.done:
        metrics.forget(to_view(body))
        diffbase = memo["settings"].persistence.diffbase_storage
        if isinstance(diffbase, GenerationDiffBase):
            diffbase.forget(body)
    else:
        raise kopf.TemporaryError("the pool is being deleted in Azure", delay=outcome.retry_in)


async def on_delete_elsewhere(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keep the shared finalizer on another shard's object until its owner has deleted it.

    kopf keeps its finalizer on an object only while some handler *matching that object* needs
    it, so a shard whose handlers all filter an object out would remove the shared finalizer and
    its owner would add it back, many times a second (and a deletion in the gap would skip
    deletionPolicy). Every shard therefore requires the finalizer on every object; on another
    shard's object this handler only waits, and never succeeds: a success would let this shard's
    kopf drop the finalizer before the owner acted.
    """
    shard = memo["options"].shard
    uid = str(body.get("metadata", {}).get("uid", ""))
    await asyncio.sleep(_ELSEWHERE_WAIT_SECONDS)  # the owner normally finishes first
    raise kopf.TemporaryError(
        f"shard {shard_of(uid, shard.count)} of {shard.count} deletes this object and then "
        f"removes the finalizer; shard {shard.index} only keeps it in place (is the owning shard "
        "running?)",
        delay=_ELSEWHERE_WAIT_SECONDS,
    )


def register_handlers(
    registry: kopf.OperatorRegistry,
    config: Config,
    *,
    peering: str | None = None,
    priority: int = 0,
    shard: ShardAssignment | None = None,
) -> None:
    options = OperatorOptions(config, peering, priority, shard or ShardAssignment())
    keep_watched_bodies_lean()
    # A whole operator filters nothing.
    owned = None if options.shard.is_whole else is_owned
    kopf.on.login(registry=registry)(on_login)
    startup = functools.partial(on_startup, options=options)
    kopf.on.startup(registry=registry, id="on_startup")(startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=30.0, when=owned)(
        on_pool
    )
    kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, when=owned)(on_change)
    kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, when=owned)(on_delete)
    if not options.shard.is_whole:
        kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, when=is_not_owned)(
            on_delete_elsewhere
        )
