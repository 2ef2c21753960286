"""``batchcert status NAME [-n NS]`` (also ``kubectl batchcert status``): one BatchCertPool's story.

Reads the object and its recent Events from the API server and prints, readable at a glance: the
pool, the identity, every certificate (version, thumbprint, validity, expected renewal, last
rotation), the nodes (with failure reasons), the conditions and the Events.

Exit status, so scripts can branch on it (:class:`Verdict`): 0 Ready for the current generation
(the same rule as kstatus and ``kubectl wait``), 1 still converging (or paused), 3 Stalled for the
current generation (only a person can make progress: waiting longer will not help), 2 not found
or unreadable. ``--wait[=TIMEOUT]`` watches the object (one API watch, no polling) until it is
Ready or Stalled and exits with that code, or 4 when TIMEOUT passes first; unlike ``kubectl wait
--for=condition=Ready`` it returns the moment the operator writes ``Stalled``.

Rendering is pure (:func:`render_status` takes the object, its Events and the time) so it is
unit-tested on captured status; only :func:`run` talks to Kubernetes. Nothing secret is ever in
what is printed: status carries URIs, versions and thumbprints, never key material.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from batchcert.models.names import GROUP, PAUSED_ANNOTATION, PLURAL, VERSION
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


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show one BatchCertPool's pool, certificates, nodes, conditions and events",
        description=(
            "Show one BatchCertPool at a glance. Exit status: 0 Ready for the current "
            "generation, 1 still converging (or paused), 3 Stalled (needs a person), 2 not "
            "found or unreadable; with --wait, 4 when the timeout passes first."
        ),
    )
    parser.add_argument("name", help="the BatchCertPool's name")
    parser.add_argument(
        "--wait",
        nargs="?",
        const=DEFAULT_WAIT_SECONDS,
        default=None,
        type=parse_duration,
        metavar="TIMEOUT",
        help="watch until Ready (exit 0) or Stalled (exit 3) for the current generation, at most "
        "TIMEOUT (90s, 10m, 1h; default 10m), then exit 4; write it --wait=TIMEOUT",
    )
    parser.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    parser.add_argument("--kubeconfig", help="kubeconfig to use (default: KUBECONFIG/in-cluster)")
    parser.set_defaults(func=run)


# --- pure rendering ---------------------------------------------------------------------------


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
    lines.append(
        f"  VM size:    {spec.get('vmSize', '-')}, node agent {spec.get('nodeAgentSkuId', '-')}"
    )
    identity = spec.get("identity") or {}
    client_id = identity.get("clientId") or "looked up from the resource"
    lines.append(f"Identity:     {identity.get('resourceId', '-')}")
    lines.append(f"  Client ID:  {client_id}")
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
    if str((meta.get("annotations") or {}).get(PAUSED_ANNOTATION, "")).lower() == "true":
        lines.append(f"Paused:       yes (annotation {PAUSED_ANNOTATION}=true)")
    sections = [
        lines,
        _pool_lines(obj),
        _certificate_lines(status, now),
        _node_lines(status, now),
        _condition_lines(status, now),
        _event_lines(events, now),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


# --- I/O --------------------------------------------------------------------------------------


class StatusReadError(Exception):
    """The resource could not be read; the message says why, for the user."""


def _login(kubeconfig: str | None) -> Any:
    """Credentials as the operator finds them: a kubeconfig, else the pod's service account.

    kopf's own login (no Kubernetes client library, which the image does not carry).
    """
    import os

    import kopf

    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    settings = kopf.OperatorSettings()
    info = kopf.login_with_kubeconfig(settings=settings) or kopf.login_with_service_account(
        settings=settings
    )
    if info is None:
        raise StatusReadError("no kubeconfig found (set KUBECONFIG) and not running in a pod")
    return info


class _Cluster:
    """One BatchCertPool's URLs on one API server, over one HTTP session."""

    def __init__(self, http: Any, server: str, name: str, namespace: str) -> None:
        self.http, self.name, self.namespace = http, name, namespace
        self.base = server.rstrip("/")
        self.collection = f"{self.base}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    def _unreadable(self, response: Any) -> StatusReadError:
        if response.status == 404:
            return StatusReadError(
                f"batchcertpool {self.name} in namespace {self.namespace} not found"
            )
        return StatusReadError(
            f"batchcertpool {self.name} in namespace {self.namespace} cannot be read "
            f"({response.status} {response.reason})"
        )

    async def get_object(self) -> dict[str, Any]:
        async with self.http.get(f"{self.collection}/{self.name}") as response:
            if response.status >= 400:
                raise self._unreadable(response)
            return dict(await response.json())

    async def list_events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        selector = f"involvedObject.uid={obj['metadata']['uid']}"
        url = f"{self.base}/api/v1/namespaces/{self.namespace}/events"
        async with self.http.get(url, params={"fieldSelector": selector}) as response:
            if response.status >= 400:  # Events are context: a user who may not list them still
                return []  # gets the status.
            return list((await response.json()).get("items") or [])

    async def watch_until_settled(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object once it is Ready or Stalled for its generation (cancel for a timeout).

        One watch on this object's name from the version already read, resumed where it ended
        (the server closes watches now and then) and restarted from a fresh read when that
        version has been compacted away (410 Gone).
        """
        while verdict_of(obj) not in (Verdict.READY, Verdict.STALLED):
            params = {
                "watch": "true",
                "fieldSelector": f"metadata.name={self.name}",
                "resourceVersion": obj["metadata"]["resourceVersion"],
                "timeoutSeconds": "300",
            }
            async with self.http.get(self.collection, params=params, timeout=None) as response:
                if response.status == 410:
                    obj = await self.get_object()
                    continue
                if response.status >= 400:
                    raise self._unreadable(response)
                events = 0
                async for event in _json_lines(response.content):
                    events += 1
                    kind, item = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        obj = await self.get_object()  # 410 Gone inside the stream: start over
                        break
                    if kind == "DELETED":
                        raise StatusReadError(
                            f"batchcertpool {self.name} in namespace {self.namespace} "
                            "was deleted while waiting"
                        )
                    if kind in ("ADDED", "MODIFIED"):
                        obj = item
                        if verdict_of(obj) in (Verdict.READY, Verdict.STALLED):
                            break
            if not events:  # closed at once (a proxy's idle cut): resume, but not in a hot loop
                await asyncio.sleep(1.0)
        return obj


async def _json_lines(stream: Any) -> Any:
    """A watch's events, one JSON document a line (no line-length limit: status can be large)."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


async def _show(
    name: str, namespace: str | None, kubeconfig: str | None, wait: float | None
) -> tuple[dict[str, Any], list[dict[str, Any]], Verdict]:
    """Read the object (and with ``wait``, watch it until it settles), then its Events."""
    import aiohttp

    info = _login(kubeconfig)
    namespace = namespace or info.default_namespace or "default"
    connector = aiohttp.TCPConnector(ssl=info.as_ssl_context())
    async with aiohttp.ClientSession(connector=connector, headers=info.as_http_headers()) as http:
        cluster = _Cluster(http, info.server, name, namespace)
        obj = await cluster.get_object()
        verdict = verdict_of(obj)
        if wait is not None:
            try:
                async with asyncio.timeout(wait):
                    obj = await cluster.watch_until_settled(obj)
                verdict = verdict_of(obj)
            except TimeoutError:
                verdict = Verdict.TIMED_OUT
        return obj, await cluster.list_events(obj), verdict


def run(args: argparse.Namespace) -> int:
    try:
        obj, events, verdict = asyncio.run(
            _show(args.name, args.namespace, args.kubeconfig, getattr(args, "wait", None))
        )
    except StatusReadError as exc:
        print(str(exc), file=sys.stderr)
        return Verdict.UNREADABLE
    except Exception as exc:  # kubeconfig unreadable, server unreachable: say so, no traceback
        print(f"cannot reach the cluster: {exc}", file=sys.stderr)
        return Verdict.UNREADABLE
    print(render_status(obj, events, datetime.now(UTC)), end="")
    if verdict is Verdict.TIMED_OUT:
        print(f"timed out after {args.wait:g}s: neither Ready nor Stalled", file=sys.stderr)
    return int(verdict)
