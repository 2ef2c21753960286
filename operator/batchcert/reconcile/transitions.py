"""The Events a turn posts for its conditions' transitions, of the type the reason registry names.

Invariants: an Event only when a condition's reason changes; Ready's own Events are "Ready" when
it turns True and the verdicts on the whole object (refusals); a component reason copied onto
Ready has its Event from the component; Reconciling and Stalled only restate the others, so they
post nothing.
"""

from __future__ import annotations

from typing import Any

from batchcert.conditions import COMPONENT_TYPES, READY, get_condition
from batchcert.reasons import event_type_of, find_reason
from batchcert.reconcile.outcome import Event


def transition_events(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Event]:
    events: list[Event] = []
    for condition in after:
        type_, reason = condition["type"], condition["reason"]
        previous = get_condition(before, type_)
        if previous is not None and previous.get("reason") == reason:
            continue
        if type_ == READY:
            entry = find_reason(READY, reason)
            if entry is None or entry.event is None:
                continue
        elif type_ not in COMPONENT_TYPES or condition["status"] == "True":
            continue
        kind = event_type_of(type_, reason)
        if kind is not None:
            events.append(Event(kind.value, reason, condition["message"]))
    return events
