"""Node verification, one run against Batch: its own job, one task per due node, the proofs.

A run (``VerificationRun``) starts when some node is due: it creates a job named and marked by
the operator (``translate.verification_task``: the object's uid in the name and the metadata,
the pool in the metadata and ``poolInfo``), adds one task per due node, and on later ticks lists
the job's tasks (one request) until every task has an answer; then it deletes the job. So a
verified pool holds no active job between runs.

Ownership: a job is used only when this run created it (201), or when ``409 JobExists`` is
followed by a read showing it is this object's job for this pool; a foreign job is never read,
added to or deleted, and the run is abandoned with a clear error (``ForeignJobError``). Only
tasks this run added, still carrying the command line it set, are read.

Batch's ordinary conditions end a node's part of a run as "no proof, retried later", never as
a failure of the reconcile: a task file gone (``404``, ``409 TaskFilesUnavailable``,
``TaskFilesCleanedup``, ``NodeNotReady``), a task that ran on a node that has left, a task that
waited longer than ``taskTimeout`` for a slot, the job gone or being deleted.

Invariants: never waits on Azure; every Batch failure other than those is an ``AzureCallError``
for the caller's backoff; nothing read from Batch raises anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.assess.verification import NodeProof, parse_task_output
from batchcert.errors import AzureCallError
from batchcert.models.timestamps import parse_rfc3339
from batchcert.translate.verification_task import build_job_body, build_job_id, is_own_job

log = logging.getLogger(__name__)

# Reading a task's files, or the job, fails in these ways on real Batch once the node has gone,
# the retention time has passed or the job is being deleted (Batch error-code table; the
# azure-behaviour notes): each is "no proof for that node", not a failure of the run.
_GONE_CODES = frozenset(
    {
        "TaskFilesUnavailable",
        "TaskFilesCleanedup",
        "NodeNotReady",
        "TaskFileNotFound",
        "FileNotFound",
        "TaskNotFound",
        "NodeNotFound",
        "JobNotFound",
        "JobBeingDeleted",
        "JobCompleted",
        "JobTerminating",
    }
)


def is_gone(exc: AzureCallError) -> bool:
    return exc.status == 404 or exc.code in _GONE_CODES


class ForeignJobError(Exception):
    """The run's job id is taken by a job this object did not create: left untouched."""


@dataclass
class VerificationRun:
    job_id: str
    started: datetime
    command: str
    pending: dict[str, str] = field(default_factory=dict)  # task id → node it was meant for


@dataclass(frozen=True)
class RunContext:
    account: str  # Batch account endpoint
    uid: str
    pool_id: str
    certificates: int
    task_timeout: timedelta
    task_timeout_text: str
    node_ids: frozenset[str]  # the pool's nodes now


async def start_run(
    tasks: BatchTasksAdapter, ctx: RunContext, command: str, now: datetime
) -> VerificationRun:
    """Create this run's job (or adopt it after ``JobExists`` when it is provably ours)."""
    run = VerificationRun(build_job_id(ctx.uid, now), now, command)
    # Waiting for a slot (≤ taskTimeout), then running (≤ taskTimeout), plus a margin for the
    # operator's polls: past that Batch terminates the job by itself.
    limit = int(2 * ctx.task_timeout.total_seconds()) + 600
    body = build_job_body(run.job_id, ctx.pool_id, ctx.uid, f"PT{limit}S")
    if not await tasks.create_job(ctx.account, body):
        job = await tasks.get_job(ctx.account, run.job_id)
        if job is None or not is_own_job(job, ctx.uid, ctx.pool_id):
            raise ForeignJobError(
                f"a Batch job named {run.job_id} exists and was not created by this resource "
                "for this pool: left untouched, verification retried later under another name"
            )
    return run


async def add_task(
    tasks: BatchTasksAdapter, ctx: RunContext, run: VerificationRun, body: dict[str, Any]
) -> bool:
    """Add one task to the run's job; False when the job is gone or going (run over)."""
    try:
        await tasks.add_task(ctx.account, run.job_id, body)
    except AzureCallError as exc:
        if is_gone(exc):
            return False
        raise
    return True


async def poll_run(
    tasks: BatchTasksAdapter, ctx: RunContext, run: VerificationRun, now: datetime
) -> tuple[list[NodeProof], bool]:
    """The proofs this poll brought, and whether the run is over (its job then deleted)."""
    try:
        listed = await tasks.list_tasks(ctx.account, run.job_id)
    except AzureCallError as exc:
        if not is_gone(exc):
            raise
        run.pending.clear()  # the job is gone or going: no proof from this run
        return [], True
    proofs: list[NodeProof] = []
    seen: set[str] = set()
    for task in listed:
        task_id = task.get("id")
        if not isinstance(task_id, str) or task_id not in run.pending:
            continue  # not a task this run added: never read
        seen.add(task_id)
        if task.get("commandLine") != run.command:
            run.pending.pop(task_id)  # not the command we set: not evidence
            continue
        state = str(task.get("state", "")).lower()
        if state == "completed":
            run.pending.pop(task_id)
            proof = await _take_result(tasks, ctx, run, task, now)
            if proof is not None:
                proofs.append(proof)
        elif _has_waited_too_long(task, ctx, now):
            run.pending.pop(task_id)  # busy or hung: unverified; the job's delete ends it
    for task_id in set(run.pending) - seen:
        run.pending.pop(task_id)  # deleted behind our back
    if run.pending:
        return proofs, False
    await tasks.begin_delete_job(ctx.account, run.job_id)
    return proofs, True


def _has_waited_too_long(task: dict[str, Any], ctx: RunContext, now: datetime) -> bool:
    created = parse_rfc3339(task.get("creationTime"))
    # Never scheduled within taskTimeout (the node stayed busy), or scheduled and then past
    # its own maxWallClockTime (Batch ends it; a poll's worth of margin).
    return created is None or now - created > 2 * ctx.task_timeout + timedelta(minutes=1)


async def _take_result(
    tasks: BatchTasksAdapter,
    ctx: RunContext,
    run: VerificationRun,
    task: dict[str, Any],
    now: datetime,
) -> NodeProof | None:
    node_info = task.get("nodeInfo")
    execution = task.get("executionInfo")
    ran_on = node_info.get("nodeId") if isinstance(node_info, dict) else None
    if not isinstance(ran_on, str) or ran_on not in ctx.node_ids:
        return None  # never ran, or its node has left the pool: nothing to say about it
    if not isinstance(execution, dict):
        return None
    if execution.get("failureInfo") or execution.get("exitCode") != 0:
        return None  # timed out or failed: no proof (an earlier proof still stands)
    try:
        stdout = await tasks.read_stdout(ctx.account, run.job_id, str(task["id"]))
    except AzureCallError as exc:
        # A streamed download's error body is not parsed by the SDK (the code is lost): any
        # 404 or 409 on the file is "gone" (TaskFilesUnavailable, TaskFilesCleanedup,
        # NodeNotReady are all 409s).
        if is_gone(exc) or exc.status == 409:
            log.info("output of %s gone (%s): no proof for %s", task["id"], exc.status, ran_on)
            return None
        raise
    found = parse_task_output(stdout, ctx.certificates)
    if found is None:
        return None
    ended = parse_rfc3339(execution.get("endTime")) or now
    return NodeProof(ran_on, min(ended, now), found)
