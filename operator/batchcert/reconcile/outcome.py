"""Values a reconcile hands back to the handler layer (which alone knows kopf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchcert.conditions import ConditionUpdate


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class PoolResult:
    condition: ConditionUpdate
    events: list[Event] = field(default_factory=list)
    busy: bool = False  # Azure is changing the pool for us: look again soon
    retry_after: float | None = None  # a classified failure asked for this delay


@dataclass
class Outcome:
    status_patch: dict[str, Any]  # empty when nothing changed: no write
    events: list[Event]
    next_check_in: float  # seconds until this object has work due again


@dataclass(frozen=True)
class DeleteOutcome:
    done: bool
    events: list[Event]
    retry_in: float = 0.0
