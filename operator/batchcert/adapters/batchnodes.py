"""Batch data plane: the pool's nodes and the instance view of our extension on each.

Parsing is defensive (recorded real answers differ from the spec examples; see
``../shared/azure-recordings/batch-dataplane-nodes-extensions.json``): ``level`` as integer or
string, ``instanceView`` empty, ``settings`` absent, an object or a JSON string, other
extensions beside ours. No answer shape raises out of here.

The node list asks only for what the assessment reads (``$select=id,state``) and 1000 nodes a
page, the most Batch returns (``maxresults``: "A maximum of 1000 results will be returned",
ComputeNode_List in the Batch REST spec and azure-batch's ``list_nodes``). Our extension is read
by name (``ComputeNodeExtension_Get``, same shape as a list item: recording [3]).

Invariants: calls run under one :class:`AdaptiveLimit` per Batch account (Batch throttles per
account: bounded concurrency however many pools and nodes an account has, halved when that
account throttles, and one busy account never slows another's; 3000 pools in 40 accounts behind
one process-wide limit of 8 waited minutes for their node reads); a failure reading one node's
extension is recorded on that node, not raised, so one bad node never hides the others; listing
the nodes themselves may raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.adapters.pacing import AdaptiveLimit
from batchcert.assess.nodeselect import NodeSighting
from batchcert.errors import AzureCallError, Verdict, classify
from batchcert.models.azure import ExtensionStatus, NodeExtensionReport, NodesReading
from batchcert.models.timestamps import parse_rfc3339

# Batch writes ``level`` as an integer in real answers and as a string in its spec examples:
# batch-dataplane-nodes-extensions.json [5], [6] (recordings, ``"level": 0``) vs [7] (spec
# example, ``"level": "Info"``). The Azure VM extension convention is 0 Info, 1 Warning, 2 Error.
_LEVELS = {0: "Info", 1: "Warning", 2: "Error"}
_LEVEL_NAMES = {name.lower(): name for name in _LEVELS.values()}

NODE_PAGE_SIZE = 1000  # Batch's maximum ``maxresults``
NODE_FIELDS = ("id", "state")  # all the assessment reads from a node
_NODE_OR_POOL_GONE = frozenset({"nodenotfound", "poolnotfound"})


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
    """Node list (``$select``ed, 1000 a page) and per-node reads of our one extension."""

    def __init__(self, clients: AzureClients, concurrency: int) -> None:
        self._clients = clients
        self._concurrency = concurrency
        self._limits: dict[str, AdaptiveLimit] = {}

    def limit_for(self, endpoint: str) -> AdaptiveLimit:
        """The adaptive limit of one Batch account (its endpoint)."""
        key = endpoint.lower()
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = AdaptiveLimit(self._concurrency)
        return limit

    @asynccontextmanager
    async def _call(self, endpoint: str, operation: str) -> AsyncIterator[None]:
        """One data-plane request under its account's adaptive limit; the answer feeds it."""
        async with self.limit_for(endpoint).slot() as slot:
            try:
                async with translating("batch", operation):
                    yield
            except AzureCallError as exc:
                verdict = classify(exc)
                if verdict.verdict is Verdict.THROTTLED:
                    slot.throttled(verdict.retry_after)
                else:
                    slot.neutral()
                raise

    async def list_nodes(self, endpoint: str, pool_id: str) -> tuple[NodeSighting, ...]:
        """Every node's id and state: one request per 1000 nodes. May raise AzureCallError."""
        client = self._clients.batch(endpoint)
        try:
            async with self._call(endpoint, "nodes.list"):
                nodes = [
                    _as_dict(n)
                    async for n in client.list_nodes(
                        pool_id, max_results=NODE_PAGE_SIZE, select=list(NODE_FIELDS)
                    )
                ]
            return tuple(NodeSighting(str(n.get("id")), _text(n.get("state"))) for n in nodes)
        except AzureCallError:
            raise
        except Exception as exc:  # an answer the SDK cannot read is a failed call, not a crash
            raise AzureCallError(
                service="batch",
                operation="nodes.list",
                status=None,
                code="UnexpectedAnswer",
                message=f"the node list could not be read ({exc!r:.200})",
            ) from exc

    async def read_extension(
        self, endpoint: str, pool_id: str, node: NodeSighting, extension_name: str
    ) -> NodeExtensionReport:
        """Our extension on one node (``ComputeNodeExtension_Get``); never raises."""
        client = self._clients.batch(endpoint)
        raw = {"id": node.node_id, "state": node.state}
        try:
            async with self._call(endpoint, "nodes.getExtension"):
                extension = _as_dict(
                    await client.get_node_extension(pool_id, node.node_id, extension_name)
                )
        except AzureCallError as exc:
            if exc.is_not_found and (exc.code or "").lower() not in _NODE_OR_POOL_GONE:
                # Not on the node (the code for an unknown extension name is unconfirmed, so any
                # 404 that does not say the node or pool is gone means "not installed").
                return NodeExtensionReport(node.node_id, node.state, extension_found=False)
            return NodeExtensionReport(
                node.node_id, node.state, extension_found=False, error=f"{exc.code}: {exc.message}"
            )
        except Exception as exc:  # the SDK could not read the answer: one node degrades
            return NodeExtensionReport(
                node.node_id,
                node.state,
                extension_found=False,
                error=f"UnexpectedAnswer: the node's extension could not be read ({exc!r:.200})",
            )
        try:
            return build_node_report(raw, [extension], extension_name)
        except Exception as exc:  # a surprising answer degrades one node, never the reconcile
            return NodeExtensionReport(
                node.node_id,
                node.state,
                extension_found=False,
                error=f"UnexpectedAnswer: the node's extension could not be read ({exc!r:.200})",
            )

    async def read_extensions(
        self,
        endpoint: str,
        pool_id: str,
        nodes: Sequence[NodeSighting],
        extension_name: str,
    ) -> list[NodeExtensionReport]:
        """Our extension on each of ``nodes``, in their order (never raises).

        As many workers as the account's limit allows at most, each taking the next node: a
        1000-node pass holds a handful of coroutines, not a thousand queued at the limit (their
        frames, futures and the waiter queue's O(n) removals were memory and event-loop time).
        """
        reports: list[NodeExtensionReport | None] = [None] * len(nodes)
        queue = iter(enumerate(nodes))

        async def worker() -> None:
            for index, node in queue:  # one shared iterator: each node is taken once
                reports[index] = await self.read_extension(endpoint, pool_id, node, extension_name)

        workers = min(len(nodes), self.limit_for(endpoint).maximum)
        await asyncio.gather(*(worker() for _ in range(workers)))
        return [r for r in reports if r is not None]

    async def read_nodes(
        self, endpoint: str, pool_id: str, extension_name: str, now: datetime
    ) -> NodesReading:
        """Every node and its extension (a full pass: the list, then one read per node)."""
        listed = await self.list_nodes(endpoint, pool_id)
        reports = await self.read_extensions(endpoint, pool_id, listed, extension_name)
        return NodesReading(read_at=now, nodes=tuple(reports))
