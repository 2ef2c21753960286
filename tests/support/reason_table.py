"""The reason table of docs/usage.md, rendered from the reason registry (``batchcert.reasons``).

Rows group reasons that share a condition, an action, an Event type and a meaning; a reason every
component can report (the Azure faults the error classifier names) is one row for all three.
"""

from __future__ import annotations

from batchcert.reasons import COMPONENT_TYPES, REASONS, Action

ACTION_TEXT = {
    Action.NONE: "ready",
    Action.TRANSIENT: "in progress",
    Action.USER: "**needs a person**",
    Action.PAUSED: "paused",
}

HEADER = "| condition | reason | verdict | Event | meaning / what to do |\n|---|---|---|---|---|\n"


def render_reason_table() -> str:
    # reason name + what it says → the condition types that carry it that way
    carried: dict[tuple[str, Action, str | None, str], list[str]] = {}
    for r in REASONS:
        key = (r.name, r.action, r.event.value if r.event else None, r.meaning)
        carried.setdefault(key, []).append(r.type)
    rows: dict[tuple[str, Action, str | None, str], list[str]] = {}
    for (name, action, event, meaning), types in carried.items():
        where = "any component" if tuple(types) == COMPONENT_TYPES else ", ".join(types)
        rows.setdefault((where, action, event, meaning), []).append(name)
    lines = []
    previous = None
    for (where, action, event, meaning), names in rows.items():
        shown = "" if where == previous else where
        previous = where
        reasons = ", ".join(f"`{n}`" for n in names)
        lines.append(
            f"| {shown} | {reasons} | {ACTION_TEXT[action]} | {event or '—'} | {meaning} |"
        )
    return HEADER + "\n".join(lines) + "\n"
