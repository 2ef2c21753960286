"""The values a turn's steps share: the turn itself (read-only) and what each step returns.

Invariants: a ``Turn`` is never changed: the engine builds it with the certificates gathered, once,
before the first step, and extends it (a new value) with the pool's sighting after the pool step;
the rotation window is computed once from the certificates' status items (the durable record),
never again by a step; a step's ``wake_at`` is in the engine's monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from batchcert.conditions import ConditionUpdate
from batchcert.models.azure import CertificateFacts, CertificateReading, PoolState
from batchcert.models.spec import BatchCertPoolSpec, CertificateRef
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Event


@dataclass(frozen=True)
class RotationWindow:
    """After a rotation, nodes have one polling interval to fetch the new version."""

    settles_at: datetime | None = None  # the last rotation plus the polling interval

    @classmethod
    def of(cls, items: list[dict[str, Any]], polling_seconds: int) -> RotationWindow:
        polling = timedelta(seconds=polling_seconds)
        rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in items]
        return cls(max((r + polling for r in rotations if r is not None), default=None))

    def is_open(self, now: datetime) -> bool:
        return self.settles_at is not None and now < self.settles_at

    def closed_by(self, now: datetime) -> datetime | None:
        """When the window closed, if it has by ``now``."""
        return self.settles_at if self.settles_at is not None and self.settles_at <= now else None


@dataclass(frozen=True)
class CertificateSighting:
    """One certificate as this turn saw it: the shared reading, its status item, a rotation."""

    cert: CertificateRef
    reading: CertificateReading
    item: dict[str, Any]
    rotated_to: CertificateFacts | None


@dataclass(frozen=True)
class Turn:
    obj: ObjectView
    spec: BatchCertPoolSpec
    old: dict[str, Any]  # the contract part of status as the turn saw it
    now: datetime
    mono: float
    # Set once the pool step ran:
    pool: PoolState | None = None  # the pool step's sighting
    pool_known: bool = False  # a GET has told us whether the pool exists
    certificates: tuple[CertificateSighting, ...] = ()  # gathered once, before any step
    window: RotationWindow = RotationWindow()

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return list(self.old.get("conditions") or [])

    @property
    def certificate_items(self) -> list[dict[str, Any]]:
        return [s.item for s in self.certificates]


@dataclass
class StepResult:
    condition: ConditionUpdate | None = None
    status: dict[str, Any] = field(default_factory=dict)  # this step's keys of status
    events: list[Event] = field(default_factory=list)
    wake_at: float | None = None  # monotonic seconds when it next wants to run (None: no wish)
