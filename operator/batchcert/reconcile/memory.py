"""Per-object facts the reconcile keeps between ticks (in memory; status is the durable record).

Everything here may be lost on restart without harm: it only schedules work and caches reads.
Anything a restart must not forget (rotation counts and times, versions seen) lives in status.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchcert.assess.nodeselect import NodeMemo
from batchcert.conditions import ConditionUpdate
from batchcert.errors import Backoff
from batchcert.models.azure import NodesReading, PoolState


@dataclass(frozen=True)
class ObjectView:
    """The BatchCertPool as the handler saw it, stripped of kopf types."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]
    deleting: bool = False
    has_finalizer: bool = True
    paused: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class CreateFailure:
    """A refused certificate create: when to try again, and what to tell the user meanwhile."""

    schedule: Backoff
    reason: str
    message: str


@dataclass(slots=True)  # one per owned object: no per-instance __dict__
class ObjectMemory:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    generation_seen: int | None = None
    pool_schedule: Backoff = field(default_factory=Backoff)
    nodes_schedule: Backoff = field(default_factory=Backoff)
    pool: PoolState | None = None
    pool_known: bool = False  # a GET has told us whether the pool exists
    create_tried: bool = False  # a create without a GET first failed: read first from now on
    nodes: NodesReading | None = None  # every listed node's latest report (some carried over)
    node_memos: dict[str, NodeMemo] = field(default_factory=dict)  # when each node was read
    nodes_pass_at: datetime | None = None  # the last node pass that listed the nodes
    diagnosis_schedule: Backoff = field(default_factory=Backoff)
    diagnosis: ConditionUpdate | None = None  # the last control-plane diagnosis of the nodes
    pool_condition: ConditionUpdate | None = None
    certificates_creating: set[tuple[str, str]] = field(default_factory=set)
    access_generation: int | None = None  # the spec generation whose vault access was ensured
    access_recheck: bool = False
    access_schedule: Backoff = field(default_factory=Backoff)
    # A new role assignment is propagating: PoolReady says so and the pool waits (access.py).
    access_waiting: ConditionUpdate | None = None
    certificate_create_failures: dict[tuple[str, str], CreateFailure] = field(default_factory=dict)
