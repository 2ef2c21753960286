"""Batch data plane: the pool's nodes and the instance view of our extension on each.

Parsing is defensive (recorded real answers differ from the spec examples; see
``../shared/azure-recordings/batch-dataplane-nodes-extensions.json``): ``level`` as integer or
string, ``instanceView`` empty, ``settings`` absent, an object or a JSON string, other
extensions beside ours. No answer shape raises out of here.

Invariants: calls run under one process-wide semaphore (bounded concurrency however many pools
and nodes there are); a failure reading one node's extensions is recorded on that node, not
raised, so one bad node never hides the others; listing the nodes themselves may raise.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.errors import AzureCallError
from batchcert.models.azure import ExtensionStatus, NodeExtensionReport, NodesReading
from batchcert.models.timestamps import parse_rfc3339

# Batch writes ``level`` as an integer in real answers and as a string in its spec examples:
# batch-dataplane-nodes-extensions.json [5], [6] (recordings, ``"level": 0``) vs [7] (spec
# example, ``"level": "Info"``). The Azure VM extension convention is 0 Info, 1 Warning, 2 Error.
_LEVELS = {0: "Info", 1: "Warning", 2: "Error"}
_LEVEL_NAMES = {name.lower(): name for name in _LEVELS.values()}


def parse_level(raw: Any) -> str | None:
    """``0``/``"0"``/``"Info"``/``"info"`` → ``"Info"``; anything unknown → its text (never raises)."""
    if raw is None or isinstance(raw, bool):
        return None if raw is None else str(raw)
    if isinstance(raw, int):
        return _LEVELS.get(raw, str(raw))
    text = str(getattr(raw, "value", raw)).strip()  # an SDK enum member, or plain text
    if text.isdigit():
        return _LEVELS.get(int(text), text)
    return _LEVEL_NAMES.get(text.lower(), text or None)


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    return str(getattr(raw, "value", raw))


def _statuses(items: Any) -> tuple[ExtensionStatus, ...]:
    """Statuses from whatever Batch sent: a list of objects, or nothing usable (``{}``, null)."""
    if not isinstance(items, (list, tuple)):
        return ()
    return tuple(
        ExtensionStatus(
            code=_text(item.get("code")),
            level=parse_level(item.get("level")),
            display_status=_text(item.get("displayStatus")),
            message=_text(item.get("message")),
            time=parse_rfc3339(item.get("time")),
        )
        for item in items
        if isinstance(item, dict)
    )


def _as_dict(model: Any) -> dict[str, Any]:
    if hasattr(model, "as_dict"):
        return dict(model.as_dict())
    return dict(model) if isinstance(model, dict) else {}


def _name_of(mapping: Any) -> str:
    return str(mapping.get("name") or "") if isinstance(mapping, dict) else ""


def build_node_report(
    node: dict[str, Any], extensions: list[dict[str, Any]], extension_name: str
) -> NodeExtensionReport:
    """One node's report from its raw extension list (pure; tolerant of every shape seen).

    Our extension is found by name, case-insensitively, among any others (Batch lists its own
    ``batchNodeExtension`` on every node: recordings [2], [5]). An empty ``instanceView`` (``{}``,
    while Creating: recording [2]) gives no statuses, so the node counts as transitioning.
    """
    node_id, node_state = str(node.get("id")), _text(node.get("state"))
    wanted = extension_name.lower()
    for ext in extensions:
        if not isinstance(ext, dict):
            continue
        raw_vm, raw_view = ext.get("vmExtension"), ext.get("instanceView")
        vm_extension: dict[str, Any] = raw_vm if isinstance(raw_vm, dict) else {}
        view: dict[str, Any] = raw_view if isinstance(raw_view, dict) else {}
        if wanted in (_name_of(vm_extension).lower(), _name_of(view).lower()):
            return NodeExtensionReport(
                node_id,
                node_state,
                extension_found=True,
                provisioning_state=_text(ext.get("provisioningState")),
                statuses=_statuses(view.get("statuses")),
                sub_statuses=_statuses(view.get("subStatuses")),
            )
    return NodeExtensionReport(node_id, node_state, extension_found=False)


class BatchNodesAdapter:
    def __init__(self, clients: AzureClients, concurrency: int) -> None:
        self._clients = clients
        self._limit = asyncio.Semaphore(concurrency)

    async def _node_report(
        self, endpoint: str, pool_id: str, node: dict[str, Any], extension_name: str
    ) -> NodeExtensionReport:
        node_id, node_state = str(node.get("id")), _text(node.get("state"))
        client = self._clients.batch(endpoint)
        try:
            async with self._limit, translating("batch", "nodes.listExtensions"):
                extensions = [
                    _as_dict(e) async for e in client.list_node_extensions(pool_id, node_id)
                ]
        except AzureCallError as exc:
            return NodeExtensionReport(
                node_id, node_state, extension_found=False, error=f"{exc.code}: {exc.message}"
            )
        try:
            return build_node_report(node, extensions, extension_name)
        except Exception as exc:  # a surprising answer degrades one node, never the reconcile
            return NodeExtensionReport(
                node_id,
                node_state,
                extension_found=False,
                error=f"UnexpectedAnswer: the node's extension list could not be read ({exc!r:.200})",
            )

    async def read_nodes(
        self, endpoint: str, pool_id: str, extension_name: str, now: datetime
    ) -> NodesReading:
        client = self._clients.batch(endpoint)
        async with self._limit, translating("batch", "nodes.list"):
            nodes = [_as_dict(n) async for n in client.list_nodes(pool_id)]
        reports = await asyncio.gather(
            *(self._node_report(endpoint, pool_id, node, extension_name) for node in nodes)
        )
        return NodesReading(read_at=now, nodes=tuple(reports))
