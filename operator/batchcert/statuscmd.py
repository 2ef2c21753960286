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

Rendering is pure and lives in ``statusview.py`` (:func:`render_status` takes the object, its
Events and the time) so it is unit-tested on captured status; only :func:`run` talks to
Kubernetes. Nothing secret is ever in what is printed: status carries URIs, versions and
thumbprints, never key material.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from batchcert.models.names import GROUP, PLURAL, VERSION
from batchcert.statusview import (
    DEFAULT_WAIT_SECONDS,
    EXIT_NOT_READY,
    EXIT_READY,
    EXIT_UNREADABLE,
    RECENT_EVENTS,
    Verdict,
    humanize,
    is_ready,
    is_stalled,
    parse_duration,
    render_status,
    verdict_of,
)

# The pure part lives in statusview; these names are this command's API as well.
__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "EXIT_NOT_READY",
    "EXIT_READY",
    "EXIT_UNREADABLE",
    "RECENT_EVENTS",
    "StatusReadError",
    "Verdict",
    "add_parser",
    "humanize",
    "is_ready",
    "is_stalled",
    "parse_duration",
    "render_status",
    "run",
    "verdict_of",
]


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
