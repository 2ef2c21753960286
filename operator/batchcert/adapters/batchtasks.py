"""Batch data plane: the verification job and its tasks (azure-batch, async client).

Used only when a BatchCertPool asks for node verification; it is the only code that needs
Batch job/task *write* permission. Calls: list nodes (affinity ids and busy slots), create the
job (``409 JobExists`` is success), add/list/delete tasks, download a task's ``stdout.txt``,
begin deleting the job (the SDK's poller is not awaited: the handler never waits on Azure).

Invariants: calls share the process-wide Batch semaphore with the node reads (bounded
concurrency); failures surface as ``AzureCallError``; deleting something already gone succeeds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.errors import AzureCallError

_MAX_STDOUT = 64 * 1024  # the command prints a few lines; never buffer a runaway file


def _as_dict(model: Any) -> dict[str, Any]:
    return dict(model.as_dict()) if hasattr(model, "as_dict") else dict(model)


class BatchTasksAdapter:
    def __init__(self, clients: AzureClients, limit: asyncio.Semaphore) -> None:
        self._clients = clients
        self._limit = limit

    async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
        """Each node's id, state, affinity id and slots in use (one paged request)."""
        client = self._clients.batch(endpoint)
        async with self._limit, translating("batch", "nodes.list"):
            return [
                _as_dict(n)
                async for n in client.list_nodes(
                    pool_id, select=["id", "state", "affinityId", "runningTaskSlotsCount"]
                )
            ]

    async def create_job(self, endpoint: str, body: dict[str, Any]) -> None:
        client = self._clients.batch(endpoint)
        try:
            async with self._limit, translating("batch", "jobs.create"):
                await client.create_job(body)  # type: ignore[arg-type]
        except AzureCallError as exc:
            if exc.code != "JobExists":
                raise

    async def add_task(self, endpoint: str, job_id: str, body: dict[str, Any]) -> None:
        client = self._clients.batch(endpoint)
        async with self._limit, translating("batch", "tasks.add"):
            await client.create_task(job_id, body)  # type: ignore[arg-type]

    async def list_tasks(self, endpoint: str, job_id: str) -> list[dict[str, Any]]:
        client = self._clients.batch(endpoint)
        async with self._limit, translating("batch", "tasks.list"):
            return [
                _as_dict(t)
                async for t in client.list_tasks(
                    job_id, select=["id", "state", "creationTime", "executionInfo", "nodeInfo"]
                )
            ]

    async def read_stdout(self, endpoint: str, job_id: str, task_id: str) -> str:
        client = self._clients.batch(endpoint)
        chunks: list[bytes] = []
        size = 0
        async with self._limit, translating("batch", "tasks.getFile"):
            stream = await client.download_task_file(job_id, task_id, "stdout.txt")
            async for chunk in stream:
                chunks.append(chunk)
                size += len(chunk)
                if size >= _MAX_STDOUT:
                    break
        return b"".join(chunks)[:_MAX_STDOUT].decode("utf-8", errors="replace")

    async def delete_task(self, endpoint: str, job_id: str, task_id: str) -> None:
        client = self._clients.batch(endpoint)
        try:
            async with self._limit, translating("batch", "tasks.delete"):
                await client.delete_task(job_id, task_id)
        except AzureCallError as exc:
            if exc.status != 404:
                raise

    async def begin_delete_job(self, endpoint: str, job_id: str) -> None:
        client = self._clients.batch(endpoint)
        try:
            async with self._limit, translating("batch", "jobs.delete"):
                await client.begin_delete_job(job_id)  # the initial DELETE only
        except AzureCallError as exc:
            if exc.status != 404:
                raise
