"""Batch data plane: the verification job and its tasks (azure-batch, async client).

Used only when a BatchCertPool asks for node verification; it is the only code that needs
Batch job/task *write* permission. Calls: list nodes (affinity ids and busy slots), list the
jobs named with the operator's own prefix for an object, create a run's job (``409 JobExists`` is *not* success: the caller reads the job and checks it is its
own), get a job, add/list tasks, download a task's ``stdout.txt`` (capped), begin deleting a job
(the SDK's poller is not awaited: the handler never waits on Azure).

Invariants: concurrency is bounded per Batch account (one semaphore per account endpoint), so
one tenant's busy account cannot starve another's verification; failures surface as
``AzureCallError``; deleting something already gone (or going) succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResponseNotReadError

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.errors import translating
from batchcert.errors import AzureCallError

_MAX_STDOUT = 64 * 1024  # the command prints a few lines; never buffer a runaway file


class _UnreadStreamedError(logging.Filter):
    """azure-batch logs a WARNING with a traceback for every error answer to a streamed download
    (it tries to parse a body it has not read: ``ResponseNotReadError``) and then raises as
    usual. Task files gone is an ordinary answer here (409 TaskFilesCleanedup): keep that noise
    out of the operator's log; every other record of that logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ResponseNotReadError)


logging.getLogger("azure.batch._utils.model_base").addFilter(_UnreadStreamedError())


async def _read_error_body(exc: HttpResponseError) -> None:
    """A streamed call's error body is left unread by the SDK: read it (bounded by the
    service's error shape) so the error's code (``TaskFilesUnavailable``…) can be told."""
    response = exc.response
    read = getattr(response, "read", None)
    if read is None:
        return
    # Unreadable: the code stays unknown (any 404/409 on a task file is "gone" to the caller).
    with contextlib.suppress(AzureError, OSError, TimeoutError):
        await read()


def _as_dict(model: Any) -> dict[str, Any]:
    return dict(model.as_dict()) if hasattr(model, "as_dict") else dict(model)


class BatchTasksAdapter:
    def __init__(self, clients: AzureClients, *, per_account: int) -> None:
        self._clients = clients
        self._per_account = max(1, per_account)
        self._limits: dict[str, asyncio.Semaphore] = {}

    def _limit(self, endpoint: str) -> asyncio.Semaphore:
        key = endpoint.lower()
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(self._per_account)
        return self._limits[key]

    async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
        """Each node's id, state, affinity id and slots in use (one paged request)."""
        client = self._clients.batch(endpoint)
        async with self._limit(endpoint), translating("batch", "nodes.list"):
            return [
                _as_dict(n)
                async for n in client.list_nodes(
                    pool_id, select=["id", "state", "affinityId", "runningTaskSlotsCount"]
                )
            ]

    async def create_job(self, endpoint: str, body: dict[str, Any]) -> bool:
        """True when this call created it; False on ``409 JobExists`` (whose job: unknown)."""
        client = self._clients.batch(endpoint)
        try:
            async with self._limit(endpoint), translating("batch", "jobs.create"):
                await client.create_job(body)  # type: ignore[arg-type]
        except AzureCallError as exc:
            if exc.code != "JobExists":
                raise
            return False
        return True

    async def get_job(self, endpoint: str, job_id: str) -> dict[str, Any] | None:
        """The job's id, pool and metadata; None when it does not exist."""
        client = self._clients.batch(endpoint)
        try:
            async with self._limit(endpoint), translating("batch", "jobs.get"):
                job = await client.get_job(job_id, select=["id", "state", "poolInfo", "metadata"])
        except AzureCallError as exc:
            if exc.status == 404:
                return None
            raise
        return _as_dict(job)

    async def list_jobs(self, endpoint: str, id_prefix: str) -> list[dict[str, Any]]:
        """Jobs whose id starts with ``id_prefix`` (id, state, pool, metadata): the operator's
        own naming, so a restart finds its leftover jobs with one filtered request. Batch
        filters ids with OData ``startswith`` ("Create queries to list Batch resources
        efficiently": ``startswith(id, 'renderTask')``)."""
        if "'" in id_prefix:
            raise ValueError("a job id prefix never holds a quote")
        client = self._clients.batch(endpoint)
        async with self._limit(endpoint), translating("batch", "jobs.list"):
            return [
                _as_dict(j)
                async for j in client.list_jobs(
                    filter=f"startswith(id, '{id_prefix}')",
                    select=["id", "state", "poolInfo", "metadata"],
                )
            ]

    async def add_task(self, endpoint: str, job_id: str, body: dict[str, Any]) -> None:
        client = self._clients.batch(endpoint)
        async with self._limit(endpoint), translating("batch", "tasks.add"):
            await client.create_task(job_id, body)  # type: ignore[arg-type]

    async def list_tasks(self, endpoint: str, job_id: str) -> list[dict[str, Any]]:
        client = self._clients.batch(endpoint)
        async with self._limit(endpoint), translating("batch", "tasks.list"):
            return [
                _as_dict(t)
                async for t in client.list_tasks(
                    job_id,
                    select=[
                        "id",
                        "state",
                        "creationTime",
                        "commandLine",
                        "executionInfo",
                        "nodeInfo",
                    ],
                )
            ]

    async def read_stdout(self, endpoint: str, job_id: str, task_id: str) -> str:
        client = self._clients.batch(endpoint)
        chunks: list[bytes] = []
        size = 0
        async with self._limit(endpoint), translating("batch", "tasks.getFile"):
            try:
                stream = await client.download_task_file(job_id, task_id, "stdout.txt")
            except HttpResponseError as exc:
                await _read_error_body(exc)
                raise
            async for chunk in stream:
                chunks.append(chunk)
                size += len(chunk)
                if size >= _MAX_STDOUT:
                    break
        return b"".join(chunks)[:_MAX_STDOUT].decode("utf-8", errors="replace")

    async def delete_task(self, endpoint: str, job_id: str, task_id: str) -> None:
        client = self._clients.batch(endpoint)
        try:
            async with self._limit(endpoint), translating("batch", "tasks.delete"):
                await client.delete_task(job_id, task_id)
        except AzureCallError as exc:
            if exc.status != 404:
                raise

    async def begin_delete_job(self, endpoint: str, job_id: str) -> None:
        client = self._clients.batch(endpoint)
        try:
            async with self._limit(endpoint), translating("batch", "jobs.delete"):
                await client.begin_delete_job(job_id)  # the initial DELETE only
        except AzureCallError as exc:
            if exc.status != 404 and exc.code != "JobBeingDeleted":
                raise
