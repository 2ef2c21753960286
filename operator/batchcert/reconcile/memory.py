"""Per-object facts the reconcile keeps between turns (in memory; status is the durable record).

One slice per step (``reconcile/steps``): a step reads and writes its own slice only; what a later
step needs of an earlier one's findings travels in the ``Turn``.

Everything here may be lost on restart without harm: it only schedules work and caches reads.
Anything a restart must not forget (rotation counts and times, versions seen) lives in status.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchcert.assess.diagnosis import Diagnosis
from batchcert.assess.nodeselect import NodeMemo
from batchcert.conditions import ConditionUpdate
from batchcert.errors import Backoff
from batchcert.models.azure import NodesReading, PoolState
from batchcert.reasons import CertificateReason, ComponentReason
from batchcert.reconcile.settle import SettleMemory


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
    reason: ComponentReason | CertificateReason  # the classifier's
    message: str


@dataclass(slots=True)
class AccessMemory:
    generation: int | None = None  # the spec generation whose vault access was ensured
    recheck: bool = False
    schedule: Backoff = field(default_factory=Backoff)
    # A new role assignment is propagating: PoolReady says so and the pool waits (access.py).
    waiting: ConditionUpdate | None = None


@dataclass(slots=True)
class PoolMemory:
    generation_seen: int | None = None
    schedule: Backoff = field(default_factory=Backoff)
    seen: PoolState | None = None  # the last sighting (kept small: ``PoolState.kept``)
    known: bool = False  # a GET has told us whether the pool exists
    create_tried: bool = False  # a create without a GET first failed: read first from now on
    condition: ConditionUpdate | None = None


@dataclass(slots=True)
class CertificatesMemory:
    creating: set[tuple[str, str]] = field(default_factory=set)
    create_failures: dict[tuple[str, str], CreateFailure] = field(default_factory=dict)


@dataclass(slots=True)
class NodesMemory:
    schedule: Backoff = field(default_factory=Backoff)
    reading: NodesReading | None = None  # every listed node's latest report (some carried over)
    memos: dict[str, NodeMemo] = field(default_factory=dict)  # when each node was read
    pass_at: datetime | None = None  # the last node pass that listed the nodes
    diagnosis_schedule: Backoff = field(default_factory=Backoff)
    diagnosis: Diagnosis | None = None  # the last control-plane diagnosis of the nodes
    # A proven cause went away (a grant, a fix): until then the nodes get to fetch again.
    fix_propagating_until: datetime | None = None


@dataclass(slots=True)  # one per owned object: no per-instance __dict__
class ObjectMemory:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    access: AccessMemory = field(default_factory=AccessMemory)
    pool: PoolMemory = field(default_factory=PoolMemory)
    certificates: CertificatesMemory = field(default_factory=CertificatesMemory)
    nodes: NodesMemory = field(default_factory=NodesMemory)
    settle: SettleMemory = field(default_factory=SettleMemory)  # when status goes out
