"""The one condition helper: metav1.Condition lists kept the Kubernetes way.

Besides the three components (PoolReady, CertificateReady, NodesReady) the operator writes three
summaries, all derived here from the components and the reason registry (``batchcert.reasons``):
``Ready`` (True when every component is; otherwise the component that blocks, named in the
message), and kstatus' ``Reconciling`` (True while the operator gets there by itself) and
``Stalled`` (True when only a person can). A component with a user-action reason blocks before
one that is merely in progress, so a missing certificate is reported while the pool is still
being created.

Invariants: conditions are a map by ``type`` (order kept, one entry per type);
``lastTransitionTime`` changes only when ``status`` changes; every write stamps
``observedGeneration``; ``Ready`` is True exactly when every component is True; at most one of
``Reconciling`` and ``Stalled`` is True, and neither is when Ready is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchcert.models.timestamps import format_rfc3339
from batchcert.reasons import (
    CERTIFICATE_READY,
    COMPONENT_TYPES,
    NODES_READY,
    POOL_READY,
    READY,
    RECONCILING,
    STALLED,
    SUMMARY_TYPES,
    Action,
    action_of,
)

__all__ = [
    "ALL_TYPES",
    "CERTIFICATE_READY",
    "COMPONENT_TYPES",
    "NODES_READY",
    "POOL_READY",
    "READY",
    "RECONCILING",
    "STALLED",
    "ConditionUpdate",
    "apply_conditions",
    "apply_refusal",
    "get_condition",
    "set_condition",
    "summarize",
]

ALL_TYPES = (*SUMMARY_TYPES, *COMPONENT_TYPES)


@dataclass(frozen=True)
class ConditionUpdate:
    """What a reconcile concluded about one condition type."""

    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""


def _status_text(value: bool | None) -> str:
    return "Unknown" if value is None else ("True" if value else "False")


def set_condition(
    conditions: Sequence[dict[str, Any]],
    update: ConditionUpdate,
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return a new list with ``update`` applied (the input is not modified)."""
    status = _status_text(update.status)
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions:
        if existing.get("type") != update.type:
            result.append(dict(existing))
            continue
        found = True
        changed = existing.get("status") != status
        result.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": format_rfc3339(now)
                if changed or not existing.get("lastTransitionTime")
                else existing["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    if not found:
        result.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": format_rfc3339(now),
                "observedGeneration": generation,
            }
        )
    return result


def _blocking(updates: Sequence[ConditionUpdate]) -> ConditionUpdate | None:
    """The component that keeps Ready from being True: one only a person can fix, first."""
    failing = [u for u in updates if u.status is not True]
    for update in failing:
        if update.status is False and action_of(update.reason) is Action.USER:
            return update
    return failing[0] if failing else None


def summarize(updates: Iterable[ConditionUpdate]) -> list[ConditionUpdate]:
    """Ready, Reconciling and Stalled for these component verdicts."""
    blocking = _blocking(list(updates))
    if blocking is None:
        message = "pool, certificates and nodes are ready"
        return [
            ConditionUpdate(READY, True, "Ready", message),
            ConditionUpdate(RECONCILING, False, "Ready", message),
            ConditionUpdate(STALLED, False, "Ready", message),
        ]
    message = f"{blocking.type}: {blocking.message}"
    stalled = blocking.status is False and action_of(blocking.reason) is Action.USER
    return [
        ConditionUpdate(READY, False, blocking.reason, message),
        ConditionUpdate(
            RECONCILING, not stalled, "Stalled" if stalled else blocking.reason, message
        ),
        ConditionUpdate(STALLED, stalled, blocking.reason if stalled else "Reconciling", message),
    ]


def _in_order(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {t: i for i, t in enumerate(ALL_TYPES)}
    return sorted(conditions, key=lambda c: order.get(c.get("type", ""), len(order)))


def apply_conditions(
    conditions: Sequence[dict[str, Any]],
    updates: Iterable[ConditionUpdate],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply component updates and the derived summaries, in the canonical type order."""
    updates = list(updates)
    result = list(conditions)
    for update in [*summarize(updates), *updates]:
        result = set_condition(result, update, generation=generation, now=now)
    return _in_order(result)


def apply_refusal(
    conditions: Sequence[dict[str, Any]],
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """A verdict on the whole object taken before any component is looked at (an invalid spec,
    a foreign vault, a pause): Ready False with ``reason``; Stalled when the registry says only a
    person can lift it, neither Stalled nor Reconciling when paused. Components are kept."""
    action = action_of(reason)
    stalled = action is Action.USER
    quiet = reason if action is Action.PAUSED else "Stalled"
    summaries = [
        ConditionUpdate(READY, False, reason, message),
        ConditionUpdate(RECONCILING, False, quiet, message),
        ConditionUpdate(STALLED, stalled, reason, message),
    ]
    result = list(conditions)
    for update in summaries:
        result = set_condition(result, update, generation=generation, now=now)
    return _in_order(result)


def get_condition(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None
