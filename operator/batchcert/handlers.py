"""kopf registration: every handler of the operator, and nothing else.

Handlers are thin: parse kopf's kwargs into an ``ObjectView``, call one reconcile function, and
turn its outcome into a status patch, Events, or a kopf retry. All decisions live below.

* One timer per BatchCertPool ticks every ``tick_seconds`` and runs the level-driven reconcile,
  which does Azure work only when it is due (so creation, spec changes, drift, rotations and node
  health all flow through the same code path; no change handlers, no edge chains).
* The delete handler applies ``deletionPolicy``; kopf adds our finalizer because it exists, and
  the reconcile refuses to write to Azure until that finalizer is on the object.
* Status is written only through the timer's ``patch`` (a merge patch of what changed); the
  handlers return nothing, so kopf never writes handler results into ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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

_EVENT_MESSAGE_LIMIT = 1000
T = TypeVar("T")


@dataclass
class Services:
    clients: AzureClients
    reconciler: Reconciler
    watcher: CertificateWatcher


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
        tasks=BatchTasksAdapter(clients, asyncio.Semaphore(config.node_concurrency)),
        keyvault=keyvault,
        watcher=watcher,
        config=config,
        now=now,
    )
    return Services(clients, reconciler, watcher)


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


async def until_stopped(work: Coroutine[Any, Any, T], stopped: kopf.DaemonStopped) -> T | None:
    """Run ``work`` unless kopf stops the timer first (deletion, shutdown): then cancel it.

    kopf never cancels timers itself, so a tick stuck in a slow Azure call would be orphaned on
    shutdown and outlive the clients it uses.
    """
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def _object_memory(memo: kopf.Memo) -> ObjectMemory:
    memory = memo.get("object")
    if memory is None:
        memory = memo["object"] = ObjectMemory()
    return memory


def configure_settings(
    settings: kopf.OperatorSettings, *, peering: str | None = None, priority: int = 0
) -> None:
    settings.persistence.finalizer = FINALIZER
    # Our handlers keep no progress worth persisting (the reconcile is level-driven), so kopf's
    # bookkeeping goes to annotations under our own prefix, never into the status contract.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
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


def register_handlers(
    registry: kopf.OperatorRegistry,
    config: Config,
    *,
    peering: str | None = None,
    priority: int = 0,
) -> None:
    @kopf.on.login(registry=registry)
    def on_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (no API client library needed).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_settings(settings, peering=peering, priority=priority)
        memo["services"] = build_services(config)

    @kopf.on.cleanup(registry=registry)
    async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
        services: Services | None = memo.get("services")
        if services is not None:
            await services.clients.close()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=config.tick_seconds, registry=registry)
    async def on_tick(
        body: kopf.Body,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **kwargs: Any,
    ) -> None:
        stopped: kopf.DaemonStopped = kwargs["stopped"]  # kopf passes it to timers
        view = to_view(body)
        # This replica still acts on the object (a paused one runs no timers): its series stay,
        # however long the reconcile or the deletion takes.
        metrics.touch(view)
        if view.deleting:
            return  # the delete handler owns the object's last moments
        services: Services = memo["services"]
        started = time.monotonic()
        outcome = await until_stopped(
            services.reconciler.reconcile(view, _object_memory(memo)), stopped
        )
        metrics.observe(view, outcome, time.monotonic() - started, services.clients.pacer)
        if outcome is None:
            return
        if outcome.status_patch:
            patch.status.update(outcome.status_patch)
        post_events(body, outcome.events)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        services: Services = memo["services"]
        outcome = await services.reconciler.delete(to_view(body), _object_memory(memo))
        post_events(body, outcome.events)
        if outcome.done:
            metrics.forget(to_view(body))
        else:
            raise kopf.TemporaryError("the pool is being deleted in Azure", delay=outcome.retry_in)
