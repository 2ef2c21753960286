"""Batch data plane: the pool's nodes and the instance view of our extension on each.

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


def _statuses(items: Any) -> tuple[ExtensionStatus, ...]:
    return tuple(
        ExtensionStatus(
            code=item.get("code"),
            level=item.get("level"),
            display_status=item.get("displayStatus"),
            message=item.get("message"),
            time=parse_rfc3339(item.get("time")),
        )
        for item in items or []
    )


def _as_dict(model: Any) -> dict[str, Any]:
    return dict(model.as_dict()) if hasattr(model, "as_dict") else dict(model)


class BatchNodesAdapter:
    def __init__(self, clients: AzureClients, concurrency: int) -> None:
        self._clients = clients
        self._limit = asyncio.Semaphore(concurrency)

    async def _node_report(
        self, endpoint: str, pool_id: str, node: dict[str, Any], extension_name: str
    ) -> NodeExtensionReport:
        node_id, node_state = str(node.get("id")), node.get("state")
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
        for ext in extensions:
            vm_extension = ext.get("vmExtension") or {}
            view = ext.get("instanceView") or {}
            if vm_extension.get("name") == extension_name or view.get("name") == extension_name:
                return NodeExtensionReport(
                    node_id,
                    node_state,
                    extension_found=True,
                    provisioning_state=ext.get("provisioningState"),
                    statuses=_statuses(view.get("statuses")),
                    sub_statuses=_statuses(view.get("subStatuses")),
                )
        return NodeExtensionReport(node_id, node_state, extension_found=False)

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
