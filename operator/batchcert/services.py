"""The composition root: the operator's long-lived services, built once at startup.

Invariants: one Azure client set, one certificate watcher and one scheduler per process; the
watcher's new readings wake exactly the objects that observe them; the loops started here are
stopped (and awaited) at cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchcert.adapters.arm import ArmAdapter
from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.config import Config
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.engine import Reconciler
from batchcert.reconcile.scheduler import Scheduler

# Status writes in flight at once. kopf's API client opens a new TLS connection for every
# concurrent request (its connector has no limit), and each costs a 256 KiB read buffer
# (asyncio's SSL protocol) besides the SSL state: 100 pools converging held 54 connections to
# the API server. 16 writers are as fast as the API server here (a bare client at concurrency 16
# made 100-114 status writes/s on this 2-core machine; results/issue15/memory/results.md).
CONCURRENT_STATUS_WRITES = 16


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
        tasks=BatchTasksAdapter(clients, asyncio.Semaphore(config.node_concurrency)),
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
