"""Simulated Batch jobs and tasks on the data plane: their HTTP surface and their scheduling.

Role: ``POST/GET/DELETE /jobs[/{jobId}]`` (``GET /jobs``: the account's jobs, ``$filter`` as
below, ``$select``), ``POST/GET /jobs/{jobId}/tasks``,
``GET/DELETE /jobs/{jobId}/tasks/{taskId}``, ``GET /jobs/{jobId}/tasks/{taskId}/files`` and
``GET/HEAD .../files/{path}``, shaped as the recordings in
``shared/azure-recordings/batch-dataplane-jobs-tasks.json`` show them: add answers 201 with no
body and a bare ``ETag`` (``0x8DD…``) plus ``DataServiceId``; a task just added is ``active`` with
``executionInfo`` ``{retryCount, requeueCount}`` and no ``nodeInfo``; a finished one is
``completed`` with ``previousState: running``, an integer ``exitCode``, ``result`` and
``nodeInfo{affinityId, nodeUrl, poolId, nodeId, taskRootDirectory, taskRootDirectoryUrl}``; its
ETag does not change across these transitions; file listings carry ``contentLength`` as a
**string**; HEAD/GET of a file carry ``ocp-batch-file-isdirectory: False`` and an URL-encoded
``ocp-batch-file-url``, no ETag.

Scheduling (evaluated lazily on every data-plane request, on the simulated clock):
* a node takes tasks while it is ``idle``/``running`` and has a free slot
  (``taskSlotsPerNode`` of the pool, default 1, minus slots held by running tasks and by the
  user's own work set through the control API, ``busy_slots``); waiting tasks take freed slots
  in job ``priority`` order (REST spec: -1000..1000, higher first), oldest first;
* ``affinityInfo.affinityId`` is honoured when that node has a free slot; otherwise the task runs
  on any other node with a free slot (affinity is soft in Batch), or waits ``active``;
* a task runs for ``TASK_RUN_S`` and completes with exit code 0; on a node whose tasks hang
  (control API) it runs until ``constraints.maxWallClockTime`` and then completes as a failure;
  a running task whose node leaves is requeued (``requeueCount``), as Batch does;
* what it prints is ``taskrun.run_command`` (elevation enforced).

Never kinder than Azure (azure-behaviour notes, Batch error-code table): job delete leaves the
job ``deleting`` for ``JOB_DELETE_S`` (every operation but a read answers 409
``JobBeingDeleted``, and so does adding a job with its id); job add beyond the account's
``active_job_quota`` answers 409 ``ActiveJobAndScheduleQuotaReached``; a job past its
``maxWallClockTime`` is terminated (``completed``); task files vanish after ``retentionTime``
(409 ``TaskFilesCleanedup``) and with their node (409 ``TaskFilesUnavailable``; ``NodeNotReady``
while it is not idle/running); ``$select`` is honoured on job get, task get and task list.

Unconfirmed (modelling choices, easy to change): the timeout failure's ``failureInfo`` code and
message; files of a task that never started (404 ``TaskFileNotFound`` here); how long a job stays
``deleting``; which 409 code each way of losing task files gives.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from batchsim.batch.errors import BatchError
from batchsim.batch.taskrun import run_command, thumbprints
from batchsim.world import BatchAccount, BatchJob, BatchTask, JsonDict, Node, Pool

if TYPE_CHECKING:
    from batchsim.core import Simulation

TASK_RUN_S = 1.0
# Unconfirmed: how long a job stays ``deleting`` (real Batch: not instant, seconds to minutes
# with tasks to clean up). Less helpful than instant, so a recreate meets JobBeingDeleted.
JOB_DELETE_S = 30.0
DEFAULT_RETENTION = "P7D"  # the REST spec's default task retentionTime
UNLIMITED = "P10675199DT2H48M5.4775807S"  # .NET TimeSpan.MaxValue, as Batch writes "no limit"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEDULABLE = frozenset({"idle", "running"})

_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("POST", "Job_Add", re.compile(r"^/jobs/?$")),
    ("GET", "Job_List", re.compile(r"^/jobs/?$")),
    ("GET", "Job_Get", re.compile(r"^/jobs/(?P<jobId>[^/]+)/?$")),
    ("DELETE", "Job_Delete", re.compile(r"^/jobs/(?P<jobId>[^/]+)/?$")),
    ("POST", "Task_Add", re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/?$")),
    ("GET", "Task_List", re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/?$")),
    ("GET", "Task_Get", re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/(?P<taskId>[^/]+)/?$")),
    ("DELETE", "Task_Delete", re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/(?P<taskId>[^/]+)/?$")),
    (
        "GET",
        "File_ListFromTask",
        re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/(?P<taskId>[^/]+)/files/?$"),
    ),
    (
        "GET",
        "File_GetFromTask",
        re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/(?P<taskId>[^/]+)/files/(?P<path>.+)$"),
    ),
    (
        "HEAD",
        "File_GetPropertiesFromTask",
        re.compile(r"^/jobs/(?P<jobId>[^/]+)/tasks/(?P<taskId>[^/]+)/files/(?P<path>.+)$"),
    ),
]


def match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The job/task operation for this request, or None when it is not a job/task path."""
    if not path.startswith("/jobs"):
        return None
    for verb, operation, pattern in _ROUTES:
        found = pattern.match(path)
        if found and verb == method.upper():
            return operation, found.groupdict()
    if any(p.match(path) for _, _, p in _ROUTES):
        raise BatchError(
            405,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
            [{"key": "HttpVerb", "value": method}],
        )
    return None


# --- time and shapes -------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _http_date(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def _etag(seconds: float, salt: str) -> str:
    ticks = int(seconds * 10_000_000) + (sum(salt.encode()) % 9973)
    return f"0x8DD{ticks & 0xFFFFFFFFFFFF:012X}"


def _duration_seconds(text: Any) -> float | None:
    if not isinstance(text, str) or text == UNLIMITED:
        return None
    found = re.match(
        r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", text.strip().upper()
    )
    if found is None:
        return None
    d, h, m, s = (float(g) if g else 0.0 for g in found.groups())
    return d * 86400 + h * 3600 + m * 60 + s


# --- scheduling ------------------------------------------------------------------------------


def _slots(pool: Pool) -> int:
    return int(pool.spec.get("properties", {}).get("taskSlotsPerNode") or 1)


def running_slots(account: BatchAccount, pool: Pool, node: Node) -> tuple[int, int]:
    """(running tasks, slots in use) on ``node``: our tasks plus the user's own work."""
    running = sum(
        1
        for job in account.jobs.values()
        if job.pool_id.lower() == pool.name.lower()
        for task in job.tasks.values()
        if task.state == "running" and task.node_id == node.node_id
    )
    return running + node.busy_slots, running + node.busy_slots


def advance(sim: Simulation, account: BatchAccount) -> None:
    """Move every job and task of the account to the clock's now: jobs being deleted go, jobs
    past their ``maxWallClockTime`` terminate, tasks on a node that left are requeued (as Batch
    does on a pool shrink with the default ``requeue``), tasks finish, and waiting tasks take
    free slots in job ``priority`` order (REST spec: higher first; ties by age)."""
    now = sim.clock.timestamp()
    for key, job in list(account.jobs.items()):
        if job.state == "deleting" and job.delete_due is not None and now >= job.delete_due:
            del account.jobs[key]
    waiting: list[tuple[int, float, BatchJob, BatchTask]] = []
    for job in account.jobs.values():
        pool = account.pools.get(job.pool_id.lower())
        if job.state == "active":
            _terminate_if_over_time(job, now)
        for task in job.tasks.values():
            if task.state == "running" and not _on_live_node(pool, task):
                _requeue(task, now)
            if task.state == "running" and task.end_time is not None and now >= task.end_time:
                _complete(task)
        if pool is None or job.state != "active":
            continue
        priority = int(job.body.get("priority") or 0)
        waiting += [
            (-priority, t.creation_time, job, t) for t in job.tasks.values() if t.state == "active"
        ]
    for _, _, job, task in sorted(waiting, key=lambda w: (w[0], w[1])):
        pool = account.pools.get(job.pool_id.lower())
        if pool is not None:
            _schedule(sim, account, pool, task, now)


def _on_live_node(pool: Pool | None, task: BatchTask) -> bool:
    node = pool.nodes.get(task.node_id) if pool is not None and task.node_id else None
    return node is not None and node.state in _SCHEDULABLE


def _requeue(task: BatchTask, now: float) -> None:
    task.previous_state, task.previous_state_transition_time = "running", task.start_time
    task.state, task.state_transition_time = "active", now
    task.node_id, task.start_time, task.end_time = None, None, None
    task.stdout, task.exit_code, task.failure = "", None, None
    task.requeue_count += 1


def _terminate_if_over_time(job: BatchJob, now: float) -> None:
    limit = _duration_seconds((job.body.get("constraints") or {}).get("maxWallClockTime"))
    if limit is None or now < job.creation_time + limit:
        return
    # The job is terminated: its tasks end (Unconfirmed: the exact failureInfo of a task ended
    # by its job's termination; the shape of a task timeout is used).
    job.state, job.state_transition_time = "completed", now
    for task in job.tasks.values():
        if task.state in ("active", "running"):
            task.previous_state = task.state
            task.previous_state_transition_time = task.state_transition_time
            task.state, task.state_transition_time = "completed", now
            task.end_time = now
            task.exit_code = None
            task.failure = {
                "category": "usererror",
                "code": "TaskEnded",
                "message": "Task Was Ended by Batch: the job was terminated",
            }


def _complete(task: BatchTask) -> None:
    assert task.end_time is not None
    task.previous_state, task.previous_state_transition_time = "running", task.start_time
    task.state, task.state_transition_time = "completed", task.end_time


def _schedule(
    sim: Simulation, account: BatchAccount, pool: Pool, task: BatchTask, now: float
) -> None:
    def free(node: Node) -> bool:
        return node.state in _SCHEDULABLE and running_slots(account, pool, node)[1] < _slots(pool)

    wanted = str((task.body.get("affinityInfo") or {}).get("affinityId") or "")
    preferred = next((n for n in pool.nodes.values() if f"TVM:{n.node_id}" == wanted), None)
    node = preferred if preferred is not None and free(preferred) else None
    if node is None:
        node = next((n for n in pool.nodes.values() if free(n)), None)
    if node is None:
        return
    task.node_id = node.node_id
    task.start_time = now
    task.previous_state, task.previous_state_transition_time = "active", task.state_transition_time
    task.state, task.state_transition_time = "running", now
    limit = _duration_seconds((task.body.get("constraints") or {}).get("maxWallClockTime"))
    if node.task_hang:
        task.end_time = now + limit if limit is not None else None
        task.exit_code = None
        task.failure = {
            "category": "usererror",
            "code": "TaskEnded",
            "message": "Task Was Ended by Batch: maxWallClockTime exceeded",
        }
        task.stdout = ""
        return
    task.end_time = now + (min(TASK_RUN_S, limit) if limit is not None else TASK_RUN_S)
    task.exit_code = 0
    auto_user = (task.body.get("userIdentity") or {}).get("autoUser") or {}
    admin = str(auto_user.get("elevationLevel") or "nonadmin").lower() == "admin"
    task.stdout = (
        node.task_output
        if node.task_output is not None
        else run_command(str(task.body.get("commandLine", "")), node, thumbprints(sim), admin=admin)
    )


# --- HTTP ------------------------------------------------------------------------------------


async def respond(
    sim: Simulation,
    account: BatchAccount,
    request: web.Request,
    host: str,
    operation: str,
    params: dict[str, str],
) -> web.StreamResponse:
    base = f"https://{host}"
    now = sim.clock.timestamp()
    advance(sim, account)
    if operation == "Job_Add":
        body = await _body(request)
        _let_another_tenant_win(sim, account, body, now)
        return _add_job(account, body, base, now)
    if operation == "Job_List":
        return _list_jobs(account, request, base)
    job = account.jobs.get(params["jobId"].lower())
    if job is None:
        raise BatchError(404, "JobNotFound", "The specified job does not exist.")
    selected = _selection(request)
    if operation == "Job_Get":
        return _json(_select(_render_job(job, base), selected))
    if job.state == "deleting":
        # Azure: every operation on a job being deleted but reading it fails so (error-code
        # table; azure-behaviour notes). Unconfirmed for task list/get: refused here too, the
        # less helpful choice.
        raise BatchError(
            409,
            "JobBeingDeleted",
            "The specified job has been marked for deletion and is being reclaimed.",
        )
    if operation == "Job_Delete":
        job.state, job.state_transition_time = "deleting", now
        job.delete_due = now + JOB_DELETE_S
        return web.Response(status=202, headers={"DataServiceVersion": "3.0"})
    if operation == "Task_Add":
        if job.state != "active":
            raise BatchError(
                409, "JobCompleted", "The specified job is already in a completed state."
            )
        response = _add_task(job, await _body(request), base, now)
        advance(sim, account)  # a free node starts it at once
        return response
    if operation == "Task_List":
        rendered = [_render_task(job, t, account, base) for t in job.tasks.values()]
        listed = [_select(t, selected) for t in rendered]
        return _json({"odata.metadata": f"{base}/$metadata#tasks", "value": listed})
    task = job.tasks.get(params["taskId"].lower())
    if task is None:
        raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
    if operation == "Task_Get":
        return _json(_select(_render_task(job, task, account, base), selected))
    if operation == "Task_Delete":
        job.tasks.pop(task.task_id.lower(), None)
        return web.Response(status=200, headers={"DataServiceVersion": "3.0"})
    return _serve_file(account, job, task, operation, params.get("path", ""), base, now)


def _serve_file(
    account: BatchAccount,
    job: BatchJob,
    task: BatchTask,
    operation: str,
    path: str,
    base: str,
    now: float,
) -> web.Response:
    """File_ListFromTask, File_GetFromTask and File_GetPropertiesFromTask of one task."""
    if task.start_time is None:
        raise BatchError(404, "TaskFileNotFound", "The specified file does not exist.")
    _check_files_available(account, job, task, now)
    files = {"stdout.txt": task.stdout, "stderr.txt": task.stderr}
    task_url = f"{base}/jobs/{job.job_id}/tasks/{task.task_id}"
    if operation == "File_ListFromTask":
        listed: list[JsonDict] = [
            {
                "name": name,
                "url": f"{task_url}/files/{name}",
                "isDirectory": False,
                "properties": {
                    "creationTime": _iso(task.start_time),
                    "lastModified": _iso(task.end_time or task.start_time),
                    "contentLength": str(len(text.encode())),  # a string, as recorded
                    "contentType": "text/plain",
                },
            }
            for name, text in files.items()
        ]
        listed.append({"name": "wd", "url": f"{task_url}/files/wd", "isDirectory": True})
        return _json({"odata.metadata": f"{base}/$metadata#files", "value": listed})
    name = path
    if name not in files:
        raise BatchError(404, "FileNotFound", "The specified file does not exist.")
    content = files[name].encode()
    headers = {
        "DataServiceVersion": "3.0",
        "Last-Modified": _http_date(task.end_time or task.start_time),
        "ocp-creation-time": _http_date(task.start_time),
        "ocp-batch-file-isdirectory": "False",
        "ocp-batch-file-url": quote(f"{task_url}/files/{name}", safe=""),
    }
    if operation == "File_GetPropertiesFromTask":
        headers["Content-Length"] = str(len(content))
        return web.Response(status=200, headers=headers, content_type="text/plain")
    return web.Response(status=200, headers=headers, body=content, content_type="text/plain")


# Job_List ``$filter``: the clauses modelled, joined by ``and``. ``startswith(id, '...')`` is
# the Batch docs' own example ("Create queries to list Batch resources efficiently":
# ``(state eq 'running') and startswith(id, 'renderTask')``), ``state eq`` the other one.
_CLAUSE = re.compile(
    r"^\(?\s*(?:startswith\(id,\s*'(?P<prefix>[^']*)'\)|state eq '(?P<state>\w+)')\s*\)?$"
)


def _list_jobs(account: BatchAccount, request: web.Request, base: str) -> web.Response:
    """Every job of the account matching ``$filter``. Unconfirmed: how Batch answers a filter
    outside what is modelled here; refused (400 ``InvalidQueryParameterValue``) rather than
    ignored, so a caller never sees a filter "work" here that was never checked. ``startswith``
    compares as given (ids keep their case; unconfirmed whether Batch folds it)."""
    prefixes: list[str] = []
    states: list[str] = []
    raw = request.query.get("$filter", "").strip()
    for clause in (c for c in re.split(r"\s+and\s+", raw) if c) if raw else []:
        found = _CLAUSE.match(clause.strip())
        if found is None:
            raise BatchError(
                400,
                "InvalidQueryParameterValue",
                "The value for one of the query parameters specified in the request is invalid.",
                [{"key": "QueryParameterName", "value": "$filter"}],
            )
        if found["prefix"] is not None:
            prefixes.append(found["prefix"])
        else:
            states.append(found["state"].lower())
    selected = _selection(request)
    jobs = [
        _select(_render_job(job, base), selected)
        for job in account.jobs.values()
        if all(job.job_id.startswith(p) for p in prefixes) and all(job.state == s for s in states)
    ]
    for job in jobs:
        job.pop("odata.metadata", None)
    return _json({"odata.metadata": f"{base}/$metadata#jobs", "value": jobs})


def _selection(request: web.Request) -> set[str] | None:
    """``$select``: the top-level properties asked for (REST spec: honoured on get and list)."""
    raw = request.query.get("$select")
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def _select(rendered: JsonDict, selected: set[str] | None) -> JsonDict:
    if selected is None:
        return rendered
    return {k: v for k, v in rendered.items() if k in selected or k == "odata.metadata"}


def _check_files_available(
    account: BatchAccount, job: BatchJob, task: BatchTask, now: float
) -> None:
    """Task files are not kept forever (Batch error-code table; azure-behaviour notes): after
    ``retentionTime`` they are cleaned up; a node that left takes them with it; a node being
    torn down or reimaged answers NodeNotReady. Unconfirmed: which of the two 409 codes real
    Batch picks in each case (retention → TaskFilesCleanedup, node gone → TaskFilesUnavailable
    here); the operator treats both, and 404, alike."""
    retention = _duration_seconds(
        (task.body.get("constraints") or {}).get("retentionTime") or DEFAULT_RETENTION
    )
    if task.end_time is not None and retention is not None and now > task.end_time + retention:
        raise BatchError(409, "TaskFilesCleanedup", "The task's files have been cleaned up.")
    pool = account.pools.get(job.pool_id.lower())
    node = pool.nodes.get(task.node_id) if pool is not None and task.node_id else None
    if node is None:
        raise BatchError(
            409, "TaskFilesUnavailable", "The node files for the task are not available."
        )
    if node.state not in _SCHEDULABLE:
        raise BatchError(409, "NodeNotReady", "The specified node is not ready.")


async def _body(request: web.Request) -> JsonDict:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BatchError(
            400, "InvalidRequestBody", "The specified Request Body is not syntactically valid."
        )
    return body


def _json(body: JsonDict, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        charset="utf-8",
        headers={"DataServiceVersion": "3.0", **(headers or {})},
    )


def _created(url: str, etag: str, now: float) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "DataServiceId": url,
            "DataServiceVersion": "3.0",
            "ETag": etag,
            "Last-Modified": _http_date(now),
            "Location": url,
        },
    )


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        # Unconfirmed: the exact values Batch lists for an invalid id.
        raise BatchError(
            400,
            "InvalidPropertyValue",
            "The value provided for one of the properties in the request body is invalid.",
            [{"key": "PropertyName", "value": what}],
        )
    return value


def _let_another_tenant_win(
    sim: Simulation, account: BatchAccount, body: JsonDict, now: float
) -> None:
    """Control setting ``foreignJobIdRegex``: the next add of a job whose id matches meets a
    job another tenant of the account created with that id just before (no metadata; on the
    same pool), as any caller sharing an account can; the add then answers 409 JobExists."""
    regex, job_id = sim.world.foreign_job_id_regex, body.get("id")
    if regex is None or not isinstance(job_id, str) or not re.search(regex, job_id):
        return
    sim.world.foreign_job_id_regex = None
    pool_id = str((body.get("poolInfo") or {}).get("poolId") or "")
    if job_id.lower() not in account.jobs:
        foreign = {"id": job_id, "poolInfo": {"poolId": pool_id}}
        account.jobs[job_id.lower()] = BatchJob(
            job_id, pool_id, foreign, _etag(now, job_id + "-foreign"), now
        )


def _add_job(account: BatchAccount, body: JsonDict, base: str, now: float) -> web.Response:
    job_id = _check_id(body.get("id"), "id")
    pool_id = (body.get("poolInfo") or {}).get("poolId")
    if not isinstance(pool_id, str) or not pool_id:
        raise BatchError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            [{"key": "PropertyName", "value": "poolInfo.poolId"}],
        )
    existing = account.jobs.get(job_id.lower())
    if existing is not None and existing.state == "deleting":
        raise BatchError(
            409,
            "JobBeingDeleted",
            "The specified job has been marked for deletion and is being reclaimed.",
        )
    if existing is not None:
        raise BatchError(409, "JobExists", "The specified job already exists.")
    active = sum(1 for j in account.jobs.values() if j.state == "active")
    if active >= account.active_job_quota:
        # Error-code table: the account's quota of active jobs and job schedules (the user's
        # own job submissions meet it too).
        raise BatchError(
            409,
            "ActiveJobAndScheduleQuotaReached",
            "The specified account has reached its quota of active jobs and job schedules.",
        )
    etag = _etag(now, job_id)
    account.jobs[job_id.lower()] = BatchJob(job_id, pool_id, body, etag, now)
    return _created(f"{base}/jobs/{job_id}", etag, now)


def _render_job(job: BatchJob, base: str) -> JsonDict:
    return {
        "odata.metadata": f"{base}/$metadata#jobs/@Element",
        "id": job.job_id,
        "url": f"{base}/jobs/{job.job_id}",
        "eTag": job.etag,
        "lastModified": _iso(job.creation_time),
        "creationTime": _iso(job.creation_time),
        "state": job.state,
        "stateTransitionTime": _iso(job.state_transition_time or job.creation_time),
        "priority": int(job.body.get("priority") or 0),
        "maxParallelTasks": -1,
        "usesTaskDependencies": False,
        "allowTaskPreemption": False,
        "constraints": {
            "maxWallClockTime": (job.body.get("constraints") or {}).get("maxWallClockTime")
            or UNLIMITED,
            "maxTaskRetryCount": int(
                (job.body.get("constraints") or {}).get("maxTaskRetryCount") or 0
            ),
        },
        "poolInfo": {"poolId": job.pool_id},
        "executionInfo": {"startTime": _iso(job.creation_time), "poolId": job.pool_id},
        "onAllTasksComplete": str(job.body.get("onAllTasksComplete") or "noaction").lower(),
        "onTaskFailure": str(job.body.get("onTaskFailure") or "noaction").lower(),
        # The REST spec's BatchJob.metadata: name/value pairs, returned as given (absent when
        # none were set, as the recorded job shows).
        **({"metadata": job.body["metadata"]} if job.body.get("metadata") else {}),
    }


def _add_task(job: BatchJob, body: JsonDict, base: str, now: float) -> web.Response:
    task_id = _check_id(body.get("id"), "id")
    if not isinstance(body.get("commandLine"), str) or not body["commandLine"]:
        raise BatchError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            [{"key": "PropertyName", "value": "commandLine"}],
        )
    if task_id.lower() in job.tasks:
        raise BatchError(409, "TaskExists", "The specified task already exists.")
    etag = _etag(now, task_id)
    job.tasks[task_id.lower()] = BatchTask(task_id, body, etag, now, state_transition_time=now)
    return _created(f"{base}/jobs/{job.job_id}/tasks/{task_id}", etag, now)


def _render_task(job: BatchJob, task: BatchTask, account: BatchAccount, base: str) -> JsonDict:
    body = task.body
    auto_user = ((body.get("userIdentity") or {}).get("autoUser")) or {}
    constraints = body.get("constraints") or {}
    rendered: JsonDict = {
        "id": task.task_id,
        "url": f"{base}/jobs/{job.job_id}/tasks/{task.task_id}",
        "eTag": task.etag,
        "creationTime": _iso(task.creation_time),
        "lastModified": _iso(task.creation_time),
        "state": task.state,
        "stateTransitionTime": _iso(task.state_transition_time),
    }
    if task.previous_state is not None and task.previous_state_transition_time is not None:
        rendered["previousState"] = task.previous_state
        rendered["previousStateTransitionTime"] = _iso(task.previous_state_transition_time)
    rendered["commandLine"] = body.get("commandLine")
    if body.get("affinityInfo"):
        rendered["affinityInfo"] = body["affinityInfo"]
    rendered["userIdentity"] = {
        "autoUser": {
            "scope": str(auto_user.get("scope") or "pool").lower(),
            "elevationLevel": str(auto_user.get("elevationLevel") or "nonadmin").lower(),
        }
    }
    rendered["constraints"] = {
        "maxWallClockTime": constraints.get("maxWallClockTime") or UNLIMITED,
        "retentionTime": constraints.get("retentionTime") or "P7D",
        "maxTaskRetryCount": int(constraints.get("maxTaskRetryCount") or 0),
    }
    rendered["requiredSlots"] = int(body.get("requiredSlots") or 1)
    execution: JsonDict = {}
    if task.start_time is not None:
        execution["startTime"] = _iso(task.start_time)
    if task.state == "completed" and task.end_time is not None:
        execution["endTime"] = _iso(task.end_time)
        if task.failure is None:
            execution["exitCode"] = task.exit_code
            execution["result"] = "success"
        else:
            execution["failureInfo"] = task.failure
            execution["result"] = "failure"
    execution.update({"retryCount": 0, "requeueCount": task.requeue_count})
    rendered["executionInfo"] = execution
    if task.node_id is not None:
        node_url = f"{base}/pools/{job.pool_id}/nodes/{task.node_id}"
        rendered["nodeInfo"] = {
            "affinityId": f"TVM:{task.node_id}",
            "nodeUrl": node_url,
            "poolId": job.pool_id,
            "nodeId": task.node_id,
            "taskRootDirectory": f"workitems/{job.job_id}/job-1/{task.task_id}",
            "taskRootDirectoryUrl": f"{node_url}/files/workitems/{job.job_id}/job-1/{task.task_id}",
        }
    return rendered
