"""Values a reconcile hands back to the handler layer (which alone knows kopf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchcert.conditions import ConditionUpdate
from batchcert.errors import Classification
from batchcert.models.azure import PoolState


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class PoolSighting:
    """What a pool reconcile saw of the pool in Azure (filled in as the reconcile reads)."""

    known: bool = False  # a GET has told us whether the pool exists
    pool: PoolState | None = None

    def saw(self, pool: PoolState | None) -> PoolState | None:
        self.known, self.pool = True, pool
        return pool


@dataclass
class PoolResult:
    condition: ConditionUpdate
    events: list[Event] = field(default_factory=list)
    busy: bool = False  # Azure is changing the pool for us: look again soon
    failure: Classification | None = None  # the classified Azure failure, when one stopped it
    seen: PoolSighting = field(default_factory=PoolSighting)


@dataclass
class Outcome:
    status_patch: dict[str, Any]  # empty when nothing changed: no write
    events: list[Event]
    next_check_in: float  # seconds until this object has work due again
    # The certificates (vault, name) this object observes: a change to one wakes it.
    certificates: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DeleteOutcome:
    done: bool
    events: list[Event]
    retry_in: float = 0.0
    # PoolReady while the deletion waits (Azure deleting the pool, or a failure), for status.
    condition: ConditionUpdate | None = None
