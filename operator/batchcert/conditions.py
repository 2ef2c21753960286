"""The one condition helper: metav1.Condition lists kept the Kubernetes way.

Invariants: conditions are a map by ``type`` (order kept, one entry per type);
``lastTransitionTime`` changes only when ``status`` changes; every write stamps
``observedGeneration``; ``Ready`` is True exactly when every other condition is True.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchcert.models.timestamps import format_rfc3339

READY = "Ready"
POOL_READY = "PoolReady"
CERTIFICATE_READY = "CertificateReady"
NODES_READY = "NodesReady"
COMPONENT_TYPES = (POOL_READY, CERTIFICATE_READY, NODES_READY)
ALL_TYPES = (READY, *COMPONENT_TYPES)


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


def summarize_ready(updates: Iterable[ConditionUpdate]) -> ConditionUpdate:
    """Ready: True when every component is True; otherwise the first one that is not, named."""
    updates = list(updates)
    for update in updates:
        if update.status is not True:
            return ConditionUpdate(READY, False, update.reason, update.message)
    return ConditionUpdate(READY, True, "Ready", "pool, certificates and nodes are ready")


def apply_conditions(
    conditions: Sequence[dict[str, Any]],
    updates: Iterable[ConditionUpdate],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply component updates and the derived Ready summary, in the canonical type order."""
    updates = list(updates)
    result = list(conditions)
    for update in [summarize_ready(updates), *updates]:
        result = set_condition(result, update, generation=generation, now=now)
    order = {t: i for i, t in enumerate(ALL_TYPES)}
    return sorted(result, key=lambda c: order.get(c.get("type", ""), len(order)))


def get_condition(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None
