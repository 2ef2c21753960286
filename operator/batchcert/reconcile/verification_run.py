"""Node verification, one run against Batch: its own job, one task per due node, the proofs.

A run (``VerificationRun``) starts when some node is due: it creates a job named and marked by
the operator (``translate.verification_task``: the object's uid in the name and the metadata,
the pool in the metadata and ``poolInfo``), adds one task per due node, and on later ticks lists
the job's tasks (one request, ``$select``-ed) until every task has an answer; then it deletes the
job. So a verified pool holds no active job between runs. A task waiting for a busy slot stays
queued (first in line when a slot frees) until the job's own ``maxWallClockTime``
(``run_limit``); the caller polls slowly while every task waits and quickly once they run.

After a restart the previous process's job (active, or ended by its limit) is found by the
operator's own id prefix for the object and deleted when it passes the ownership check
(``sweep_leftover_jobs``); a job that fails it is never touched.

Ownership: a job is used only when this run created it (201), or when ``409 JobExists`` is
followed by a read showing it is this object's job for this pool; a foreign job is never read,
added to or deleted, and the run is abandoned with a clear error (``ForeignJobError``). Only
tasks this run added, still carrying the command line it set, are read.

Batch's ordinary conditions end a node's part of a run as "no proof, retried later", never as
a failure of the reconcile: a task file gone (``404``, ``409 TaskFilesUnavailable``,
``TaskFilesCleanedup``, ``NodeNotReady``), a task that ran on a node that has left, a task still
queued or hung past the job's own limit, the job gone or being deleted.

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
from batchcert.translate.verification_task import (
    build_job_body,
    build_job_id,
    build_job_prefix,
    is_own_job,
)

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


def run_limit(task_timeout: timedelta) -> timedelta:
    """A run's job's ``maxWallClockTime``: waiting for a slot, running (each at most
    ``taskTimeout``), and a margin for the operator's slow polls while tasks wait. Past it Batch
    terminates the job by itself (the backstop when the operator is not there to delete it)."""
    return 2 * task_timeout + timedelta(minutes=10)


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
class PollResult:
    proofs: list[NodeProof]
    over: bool  # every task has an answer (or the job is gone): the job was deleted
    waiting: bool  # every task still left is queued for a slot: nothing to read soon


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
    limit = int(run_limit(ctx.task_timeout).total_seconds())
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
) -> PollResult:
    """The proofs this poll brought; the job is deleted once every task has an answer."""
    try:
        listed = await tasks.list_tasks(ctx.account, run.job_id)
    except AzureCallError as exc:
        if not is_gone(exc):
            raise
        run.pending.clear()  # the job is gone or going: no proof from this run
        return PollResult([], True, False)
    proofs: list[NodeProof] = []
    seen: set[str] = set()
    waiting = True
    for task in listed:
        task_id = task.get("id")
        if not isinstance(task_id, str) or task_id not in run.pending:
            continue  # not a task this run added: never read
        seen.add(task_id)
        if task.get("commandLine") != run.command:
            run.pending.pop(task_id)  # not the command we set: not evidence
            continue
        state = str(task.get("state", "")).lower()
        waiting = waiting and state == "active"
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
        return PollResult(proofs, False, waiting)
    await tasks.begin_delete_job(ctx.account, run.job_id)
    return PollResult(proofs, True, False)


async def sweep_leftover_jobs(
    tasks: BatchTasksAdapter, account: str, uid: str, pool_id: str, *, keep: str | None
) -> list[str]:
    """Delete this object's jobs left by an earlier process (a restart mid-run), found by the
    operator's own id prefix and each checked as ours (metadata and ``poolInfo.poolId``); a job
    that fails the check, or ``keep`` (the current run's), is never touched. The ids deleted."""
    deleted = []
    for job in await tasks.list_jobs(account, build_job_prefix(uid)):
        job_id = job.get("id")
        if not isinstance(job_id, str) or job_id == keep:
            continue
        if str(job.get("state", "")).lower() == "deleting" or not is_own_job(job, uid, pool_id):
            continue
        await tasks.begin_delete_job(account, job_id)
        deleted.append(job_id)
    return deleted


def _has_waited_too_long(task: dict[str, Any], ctx: RunContext, now: datetime) -> bool:
    created = parse_rfc3339(task.get("creationTime"))
    # Queued for a busy slot, or hung, past the job's own limit (Batch has terminated the job
    # by then; a poll's worth of margin).
    return created is None or now - created > run_limit(ctx.task_timeout) + timedelta(minutes=1)


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
        # The adapter reads the code of a streamed download's error; should it be unreadable,
        # any 404 or 409 on the file is still "gone" (TaskFilesUnavailable,
        # TaskFilesCleanedup, NodeNotReady are all 409s).
        if is_gone(exc) or exc.status == 409:
            log.info("output of %s gone (%s): no proof for %s", task["id"], exc.status, ran_on)
            return None
        raise
    found = parse_task_output(stdout, ctx.certificates)
    if found is None:
        return None
    ended = parse_rfc3339(execution.get("endTime")) or now
    return NodeProof(ran_on, min(ended, now), found)
