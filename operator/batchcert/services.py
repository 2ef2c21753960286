"""The composition root: the operator's long-lived services, built once at startup.

Invariants: one scheduler per process; one Azure context (clients, certificate watcher,
Reconciler) per credential: the operator's own, and one per namespace workload identity the
tenancy policy allows (``reconcile/contexts.py``); every watcher's new readings wake exactly the
objects that observe them; the loops started here are stopped (and awaited) at cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchcert.adapters.arm import ArmAdapter
from batchcert.adapters.azure_clients import AzureClients, build_namespace_credential
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.credentials import ServiceAccountApi, WorkloadIdentity
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.config import Config
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.contexts import AzureContexts
from batchcert.reconcile.engine import Reconciler
from batchcert.reconcile.memory import ObjectMemory, ObjectView
from batchcert.reconcile.outcome import DeleteOutcome, Event, Outcome
from batchcert.reconcile.scheduler import Scheduler
from batchcert.tenancy import Refusal

# Status writes in flight at once. kopf's API client opens a new TLS connection for every
# concurrent request (its connector has no limit), and each costs a 256 KiB read buffer
# (asyncio's SSL protocol) besides the SSL state: 100 pools converging held 54 connections to
# the API server. 16 writers are as fast as the API server here (a bare client at concurrency 16
# made 100-114 status writes/s on this 2-core machine; results/issue15/memory/results.md).
CONCURRENT_STATUS_WRITES = 16


@dataclass
class AzureContext:
    """Everything that talks to Azure with one credential (the operator's, or one namespace's
    workload identity): its clients, its certificate cache and its reconciler (whose shared
    facts are therefore per credential too)."""

    clients: AzureClients
    watcher: CertificateWatcher
    reconciler: Reconciler


@dataclass
class Services:
    clients: AzureClients  # the operator's own identity (and the process's connections)
    reconciler: Reconciler
    watcher: CertificateWatcher
    scheduler: Scheduler[tuple[str, str]]
    config: Config
    contexts: AzureContexts[AzureContext]
    loops: list[asyncio.Task[None]] = field(default_factory=list)
    writes: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONCURRENT_STATUS_WRITES)
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_services(
    config: Config, accounts: ServiceAccountApi, now: Callable[[], datetime] = utcnow
) -> Services:
    operator = build_context(config, AzureClients(config), now)
    scheduler: Scheduler[tuple[str, str]] = Scheduler(concurrent_turns=config.concurrent_turns)
    operator.watcher.subscribe(scheduler.changed)  # a certificate's new reading wakes observers
    services: Services

    def for_namespace(identity: WorkloadIdentity) -> AzureContext:
        clients = operator.clients
        credential = build_namespace_credential(
            config, identity, accounts, transport=clients.transport()
        )
        context = build_context(config, clients.for_credential(credential), now)
        context.watcher.subscribe(scheduler.changed)
        services.loops.append(_keep_fresh(services, context.watcher))
        return context

    contexts = AzureContexts(config.tenancy, accounts, operator, for_namespace)
    services = Services(
        operator.clients, operator.reconciler, operator.watcher, scheduler, config, contexts
    )
    return services


def build_context(
    config: Config, clients: AzureClients, now: Callable[[], datetime] = utcnow
) -> AzureContext:
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
    return AzureContext(clients, watcher, reconciler)


def _keep_fresh(services: Services, watcher: CertificateWatcher) -> asyncio.Task[None]:
    # Each credential's watcher refreshes only the certificates it has read itself.
    return asyncio.ensure_future(
        watcher.keep_fresh(services.scheduler.observed, cap=services.config.tick_seconds)
    )


def start_loops(services: Services) -> None:
    """The scheduler's one loop, and the one that keeps observed certificates fresh."""
    services.loops = [
        asyncio.ensure_future(services.scheduler.run()),
        _keep_fresh(services, services.watcher),
    ]


async def reconcile_turn(services: Services, view: ObjectView, memory: ObjectMemory) -> Outcome:
    """One turn, acting as the object's namespace (``reconcile.contexts``) or refused by the
    tenancy policy before any Azure call."""
    resolved = await services.contexts.resolve(view.namespace, view.spec)
    if isinstance(resolved, Refusal):
        return services.reconciler.refuse(view, resolved.reason, resolved.message)
    return await resolved.context.reconciler.reconcile(view, memory)


async def delete_as_namespace(
    services: Services, view: ObjectView, memory: ObjectMemory
) -> DeleteOutcome:
    """Deletion with the namespace's identity; a refused namespace deletes nothing in Azure."""
    resolved = await services.contexts.resolve(view.namespace, view.spec)
    if isinstance(resolved, Refusal):
        message = f"nothing in Azure was deleted: {resolved.message}"
        return DeleteOutcome(True, [Event("Warning", resolved.reason, message)])
    return await resolved.context.reconciler.delete(view, memory)


async def stop_loops(services: Services) -> None:
    for task in services.loops:
        task.cancel()
    for task in services.loops:
        with contextlib.suppress(asyncio.CancelledError):
            await task
