"""What ``batchcert status`` prints and decides, from the object alone (pure: no I/O).

Rendering takes the object, its Events and the time (:func:`render_status`), so it is unit-tested
on captured status; :func:`verdict_of` is the command's exit status (:class:`Verdict`), by the same
rule as kstatus and ``kubectl wait``. Nothing secret is ever in what is printed: status carries
URIs, versions and thumbprints, never key material.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from batchcert.models.azure import image_text
from batchcert.models.names import PAUSED_ANNOTATION
from batchcert.models.timestamps import parse_rfc3339

CONDITION_ORDER = ("Ready", "PoolReady", "CertificateReady", "NodesReady")
RECENT_EVENTS = 10
DEFAULT_WAIT_SECONDS = 600.0


class Verdict(IntEnum):
    """What the object says about its current generation, as the command's exit status."""

    READY = 0
    CONVERGING = 1  # the operator is getting there by itself (or the object is paused)
    UNREADABLE = 2  # not found, forbidden, or the cluster cannot be reached
    STALLED = 3  # Stalled=True: only a person can make progress
    TIMED_OUT = 4  # --wait: neither Ready nor Stalled before the timeout


EXIT_READY, EXIT_NOT_READY, EXIT_UNREADABLE = Verdict.READY, Verdict.CONVERGING, Verdict.UNREADABLE


def humanize(delta_seconds: float) -> str:
    """``3d4h``, ``5m``, ``12s``: the two largest units, like kubectl's AGE."""
    seconds = int(abs(delta_seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def when(text: Any, now: datetime) -> str:
    """A timestamp with its distance from now: ``2027-01-01T00:00:00Z (in 34d2h)``."""
    moment = parse_rfc3339(text)
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    relative = f"in {humanize(delta)}" if delta > 0 else f"{humanize(delta)} ago"
    return f"{text} ({relative})"


def parse_duration(text: str | float) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``1h30m`` → seconds (argparse type for ``--wait``)."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (write 90s, 10m or 1h)")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600.0 + int(minutes or 0) * 60.0 + float(seconds or 0)


def get_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the current generation (an older generation's Ready says nothing)."""
    ready = get_condition(obj.get("status") or {}, "Ready")
    return ready is not None and ready.get("status") == "True" and _is_current(obj, ready)


def _is_current(obj: dict[str, Any], condition: dict[str, Any]) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = condition.get(
        "observedGeneration", (obj.get("status") or {}).get("observedGeneration")
    )
    return generation is None or observed == generation


def is_stalled(obj: dict[str, Any]) -> bool:
    """Stalled=True for the current generation: an older generation's verdict may be fixed."""
    stalled = get_condition(obj.get("status") or {}, "Stalled")
    return stalled is not None and stalled.get("status") == "True" and _is_current(obj, stalled)


def verdict_of(obj: dict[str, Any]) -> Verdict:
    if is_ready(obj):
        return Verdict.READY
    return Verdict.STALLED if is_stalled(obj) else Verdict.CONVERGING


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append((indent + "  ".join([*cells, row[-1]])).rstrip())
    return lines


def _pool_lines(obj: dict[str, Any]) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    account = spec.get("account") or {}
    pool = status.get("pool") or {}
    name = pool.get("name") or spec.get("poolName") or obj["metadata"]["name"]
    lines = [f"Pool:         {name}"]
    lines.append(
        f"  Account:    {account.get('name', '-')} "
        f"(resource group {account.get('resourceGroup', '-')}, "
        f"subscription {account.get('subscriptionId', '-')})"
    )
    if pool:
        lines.append(
            f"  State:      {pool.get('provisioningState', '-')}, "
            f"allocation {pool.get('allocationState', '-')}, "
            f"{pool.get('currentDedicatedNodes', 0)} dedicated + "
            f"{pool.get('currentLowPriorityNodes', 0)} low-priority nodes"
        )
        lines.append(f"  Resource:   {pool.get('resourceId', '-')}")
    else:
        lines.append("  State:      not seen in Azure yet")
    lines += _runs_lines(spec, pool)
    identity = spec.get("identity") or {}
    client_id = identity.get("clientId") or "looked up from the resource"
    lines.append(f"Identity:     {identity.get('resourceId', '-')}")
    lines.append(f"  Client ID:  {client_id}")
    return lines


def _runs_lines(spec: dict[str, Any], pool: dict[str, Any]) -> list[str]:
    """What the pool runs as Azure reports it (``status.pool``), beside what the spec asks: during
    a refused disruptive change the two differ, and the user must see which one runs."""
    image = spec.get("image")
    asked = {
        "vmSize": spec.get("vmSize"),
        "image": image_text({"imageReference": image}) if isinstance(image, dict) else None,
        "nodeAgentSkuId": spec.get("nodeAgentSkuId"),
    }
    lines = []
    for label, key in (
        ("VM size:", "vmSize"),
        ("Image:", "image"),
        ("Node agent:", "nodeAgentSkuId"),
    ):
        wanted, running = asked[key], pool.get(key)
        if not running:
            shown = f"{wanted or '-'} (the spec; not reported by Azure yet)"
        elif wanted and str(running).lower() != str(wanted).lower():
            shown = f"{running} (DIFFERS: the spec asks for {wanted})"
        else:
            shown = str(running)
        lines.append(f"  {label:<12}{shown}")
    return lines


def _certificate_lines(status: dict[str, Any], now: datetime) -> list[str]:
    items = status.get("certificates") or []
    lines = [f"Certificates: {len(items)}"]
    for item in items:
        lines.append(f"  {item.get('name', '-')}  {item.get('secretId', '-')}")
        lines.append(f"    Version:           {item.get('version', '-')}")
        lines.append(f"    Thumbprint:        {item.get('thumbprint', '-')}")
        lines.append(f"    Not before:        {when(item.get('notBefore'), now)}")
        lines.append(f"    Not after:         {when(item.get('notAfter'), now)}")
        lines.append(f"    Expected renewal:  {when(item.get('expectedRenewalTime'), now)}")
        rotations = int(item.get("rotations") or 0)
        last = when(item.get("lastRotationTime"), now) if item.get("lastRotationTime") else "never"
        lines.append(f"    Last rotation:     {last}; {rotations} rotation(s) seen")
    return lines


def _node_lines(status: dict[str, Any], now: datetime) -> list[str]:
    nodes = status.get("nodes")
    if not nodes:
        return ["Nodes:        not checked yet"]
    lines = [
        f"Nodes:        {nodes.get('ready', 0)}/{nodes.get('total', 0)} ready, "
        f"{nodes.get('transitioning', 0)} transitioning, {nodes.get('failed', 0)} failed "
        # lastCheckTime moves when the node view changes and at least hourly, not every pass.
        f"(as of {when(nodes.get('lastCheckTime'), now)})"
    ]
    failures = nodes.get("failures") or []
    if failures:
        lines.append("  Failures:")
        rows = [["NODE", "CODE", "SINCE", "MESSAGE"]]
        for failure in failures:
            since = parse_rfc3339(failure.get("time"))
            rows.append(
                [
                    str(failure.get("nodeId", "-")),
                    str(failure.get("code", "-")),
                    humanize((now - since).total_seconds()) if since else "-",
                    str(failure.get("message", "")),
                ]
            )
        lines += _table(rows, indent="    ")
    return lines + _verification_lines(nodes, now)


def _verification_lines(nodes: dict[str, Any], now: datetime) -> list[str]:
    """What the verification tasks proved (spec.verification), with every stale node listed."""
    verification = nodes.get("verification")
    if not verification:
        return []
    lines = [
        f"Verified:     {verification.get('current', 0)} current, "
        f"{verification.get('stale', 0)} stale, {verification.get('unverified', 0)} unverified "
        f"(last run {when(verification.get('lastRunTime'), now)})"
    ]
    if verification.get("lastError"):
        lines.append(f"  Last error: {verification['lastError']}")
    stale = verification.get("staleNodes") or []
    if stale:
        lines.append("  Stale nodes:")
        rows = [["NODE", "CERTIFICATE", "THUMBPRINT FOUND", "VERSION FOUND"]]
        rows += [
            [
                str(item.get("nodeId", "-")),
                str(item.get("certificate", "-")),
                str(item.get("thumbprint") or "(none)"),
                str(item.get("version") or "-"),
            ]
            for item in stale
        ]
        lines += _table(rows, indent="    ")
    return lines


def _condition_lines(status: dict[str, Any], now: datetime) -> list[str]:
    conditions = list(status.get("conditions") or [])
    if not conditions:
        return ["Conditions:   none yet (the operator has not seen this object)"]
    order = {t: i for i, t in enumerate(CONDITION_ORDER)}
    conditions.sort(key=lambda c: order.get(c.get("type", ""), len(order)))
    rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    for condition in conditions:
        since = parse_rfc3339(condition.get("lastTransitionTime"))
        rows.append(
            [
                str(condition.get("type", "-")),
                str(condition.get("status", "-")),
                str(condition.get("reason", "-")),
                humanize((now - since).total_seconds()) if since else "-",
                str(condition.get("message", "")),
            ]
        )
    return ["Conditions:", *_table(rows)]


def _event_time(event: dict[str, Any]) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        moment = parse_rfc3339(event.get(key))
        if moment is not None:
            return moment
    return parse_rfc3339((event.get("metadata") or {}).get("creationTimestamp"))


def _event_lines(events: list[dict[str, Any]], now: datetime) -> list[str]:
    if not events:
        return ["Events:       none"]
    floor = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(events, key=lambda e: _event_time(e) or floor)[-RECENT_EVENTS:]
    rows = [["AGE", "TYPE", "REASON", "MESSAGE"]]
    for event in ordered:
        moment = _event_time(event)
        rows.append(
            [
                humanize((now - moment).total_seconds()) if moment else "-",
                str(event.get("type", "-")),
                str(event.get("reason", "-")),
                str(event.get("message", "")),
            ]
        )
    return [f"Events (last {len(ordered)}, oldest first):", *_table(rows)]


def render_status(obj: dict[str, Any], events: list[dict[str, Any]], now: datetime) -> str:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    ready = get_condition(status, "Ready") or {}
    verdict = "Ready" if is_ready(obj) else "NOT Ready"
    if ready.get("status") == "True" and not is_ready(obj):
        verdict += " (Ready is for an older generation: the operator has not caught up)"
    lines = [
        f"Name:         {meta.get('name', '-')}",
        f"Namespace:    {meta.get('namespace', '-')}",
        f"Generation:   {meta.get('generation', '-')} "
        f"(observed {status.get('observedGeneration', '-')})",
        f"Status:       {verdict}: {ready.get('reason', 'NoStatus')}"
        + (f" - {ready['message']}" if ready.get("message") else ""),
    ]
    paused = (meta.get("annotations") or {}).get(PAUSED_ANNOTATION)
    if paused is not None and str(paused).lower() == "true":
        lines.append(f"Paused:       yes (annotation {PAUSED_ANNOTATION}=true)")
    elif paused is not None and str(paused).lower() != "false":
        # As the operator reads it (reconcile/admission.py): any other value pauses nothing.
        lines.append(
            f"Paused:       no: annotation {PAUSED_ANNOTATION}={str(paused)!r} is ignored "
            '(only "true" pauses)'
        )
    sections = [
        lines,
        _pool_lines(obj),
        _certificate_lines(status, now),
        _node_lines(status, now),
        _condition_lines(status, now),
        _event_lines(events, now),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
