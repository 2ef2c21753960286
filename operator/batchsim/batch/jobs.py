"""Simulated Batch jobs and tasks on the data plane, and what a task prints on its node.

Role: ``POST/GET/DELETE /jobs[/{jobId}]``, ``POST/GET /jobs/{jobId}/tasks``,
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
  user's own work set through the control API, ``busy_slots``);
* ``affinityInfo.affinityId`` is honoured when that node has a free slot; otherwise the task runs
  on any other node with a free slot (affinity is soft in Batch), or waits ``active``;
* a task runs for ``TASK_RUN_S`` and completes with exit code 0; on a node whose tasks hang
  (control API) it runs until ``constraints.maxWallClockTime`` and then completes as a failure.

What a task prints: the node "runs" the command line the operator builds — ``/bin/sh -c`` with
one ``openssl x509 -noout -fingerprint -sha1 -in <file>`` per certificate (Linux), or a
PowerShell ``Get-ChildItem -Path 'Cert:\\<location>\\<store>'`` listing (Windows) — against the
files the node's Key Vault extension actually wrote: for each certificate the extension fetched,
``<certificateStoreLocation>/<vault>.<certificate>`` (Linux) or the named store (Windows) holds
the version *that node* fetched last, so a node whose fetches fail keeps the old thumbprint.
Any other command line prints nothing and exits 0.

Unconfirmed (modelling choices, easy to change): the timeout failure's ``failureInfo`` code and
message; files of a task that never started (404 ``TaskFileNotFound`` here); job delete
removing the job at once (real Batch passes through ``deleting``); the Linux extension's file
name ``<vault>.<certificate>`` (documented for KeyVaultForLinux, not recorded); Windows stores
keeping only the last fetched version.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from batchsim.batch.errors import BatchError
from batchsim.world import BatchAccount, BatchJob, BatchTask, JsonDict, Node, Pool

if TYPE_CHECKING:
    from batchsim.core import Simulation

TASK_RUN_S = 1.0
UNLIMITED = "P10675199DT2H48M5.4775807S"  # .NET TimeSpan.MaxValue, as Batch writes "no limit"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEDULABLE = frozenset({"idle", "running"})

_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("POST", "Job_Add", re.compile(r"^/jobs/?$")),
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

ThumbprintOf = Callable[[str, str], "str | None"]  # (versionless secret URL, version) -> hex


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


# --- the node's side: what its Key Vault extension wrote, and running a command --------------


def _cert_files(
    node: Node, thumbprint_of: ThumbprintOf
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Linux files ``path → hex thumbprint`` and Windows stores ``Location\\Name → [hex]``."""
    files: dict[str, str] = {}
    stores: dict[str, list[str]] = {}
    for ext in node.extensions:
        kind = str(ext.get("type", "")).lower()
        if kind not in ("keyvaultforlinux", "keyvaultforwindows"):
            continue
        runtime = node.extension_runtime.get(str(ext.get("name", "")))
        if runtime is None:
            continue
        settings: Any = ext.get("settings") or {}
        if isinstance(settings, str):
            try:
                settings = json.loads(settings)
            except ValueError:
                continue
        sms = settings.get("secretsManagementSettings") or {}
        where: dict[str, tuple[str, str]] = {}
        for item in sms.get("observedCertificates") or []:
            url = item if isinstance(item, str) else item.get("url")
            location = (
                item.get("certificateStoreLocation") if isinstance(item, dict) else None
            ) or sms.get("certificateStoreLocation", "")
            store = (
                item.get("certificateStoreName") if isinstance(item, dict) else None
            ) or sms.get("certificateStoreName", "MY")
            if isinstance(url, str):
                where[url] = (str(location), str(store))
        for url, version in runtime.versions.items():
            thumb = thumbprint_of(url, version)
            location, store = where.get(url, ("", "MY"))
            if thumb is None:
                continue
            if kind == "keyvaultforlinux":
                parts = urlsplit(url)
                vault = (parts.hostname or "").split(".", 1)[0]
                name = [p for p in parts.path.split("/") if p][1]
                files[f"{location.rstrip('/')}/{vault}.{name}"] = thumb
            else:
                stores.setdefault(f"{location}\\{store}".lower(), []).append(thumb)
    return files, stores


_OPENSSL = re.compile(
    r"""echo "batchcert (?P<index>\d+) \$\(openssl x509 -noout -fingerprint -sha1 -in """
    r"""(?P<path>'(?:[^']|'"'"')*'|[^\s)]+) 2>/dev/null \|\| echo MISSING\)\""""
)
_POWERSHELL = re.compile(
    r"Get-ChildItem -Path '(?P<path>(?:[^']|'')*)' -ErrorAction SilentlyContinue \| "
    r"ForEach-Object \{ 'batchcert (?P<index>\d+) ' \+ \$_\.Thumbprint \}"
)


def run_command(command_line: str, node: Node, thumbprint_of: ThumbprintOf) -> str:
    """stdout of the operator's verification command on ``node`` (empty for anything else)."""
    files, stores = _cert_files(node, thumbprint_of)
    lines: list[str] = []
    try:
        argv = shlex.split(command_line)
    except ValueError:
        return ""
    if len(argv) == 3 and argv[0] == "/bin/sh" and argv[1] == "-c":
        for found in _OPENSSL.finditer(argv[2]):
            path = shlex.split(found["path"])[0]
            thumb = files.get(path)
            fingerprint = (
                "SHA1 Fingerprint=" + ":".join(thumb[i : i + 2] for i in range(0, len(thumb), 2))
                if thumb
                else "MISSING"
            )
            lines.append(f"batchcert {found['index']} {fingerprint}")
        if "echo batchcert done" in argv[2]:
            lines.append("batchcert done")
        return "".join(f"{line}\n" for line in lines)
    if argv and argv[0].lower().startswith("powershell"):
        script = argv[-1]
        for found in _POWERSHELL.finditer(script):
            store = found["path"].replace("''", "'")
            key = store.split(":", 1)[-1].strip("\\").lower()
            lines += [f"batchcert {found['index']} {t}" for t in stores.get(key, [])]
        if "'batchcert done'" in script:
            lines.append("batchcert done")
        return "".join(f"{line}\r\n" for line in lines)
    return ""


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
    """Move every task of the account to the clock's now: finish, time out, schedule."""
    now = sim.clock.timestamp()
    for job in account.jobs.values():
        pool = account.pools.get(job.pool_id.lower())
        for task in job.tasks.values():
            if task.state == "running" and task.end_time is not None and now >= task.end_time:
                _complete(task)
        if pool is None:
            continue
        for task in job.tasks.values():
            if task.state == "active":
                _schedule(sim, account, pool, task, now)


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
    task.stdout = run_command(str(task.body.get("commandLine", "")), node, _thumbprints(sim))


def _thumbprints(sim: Simulation) -> ThumbprintOf:
    def thumbprint_of(url: str, version: str) -> str | None:
        result = sim.kv.resolve_secret(f"{url.rstrip('/')}/{version}")
        x5t = getattr(result, "x5t", None)
        if not x5t:
            return None
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()

    return thumbprint_of


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
        return _add_job(account, await _body(request), base, now)
    job = account.jobs.get(params["jobId"].lower())
    if job is None:
        raise BatchError(404, "JobNotFound", "The specified job does not exist.")
    if operation == "Job_Get":
        return _json(_render_job(job, base))
    if operation == "Job_Delete":
        account.jobs.pop(job.job_id.lower(), None)
        return web.Response(status=202, headers={"DataServiceVersion": "3.0"})
    if operation == "Task_Add":
        response = _add_task(job, await _body(request), base, now)
        advance(sim, account)  # a free node starts it at once
        return response
    if operation == "Task_List":
        return _json(
            {
                "odata.metadata": f"{base}/$metadata#tasks",
                "value": [_render_task(job, t, account, base) for t in job.tasks.values()],
            }
        )
    task = job.tasks.get(params["taskId"].lower())
    if task is None:
        raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
    if operation == "Task_Get":
        return _json(_render_task(job, task, account, base))
    if operation == "Task_Delete":
        job.tasks.pop(task.task_id.lower(), None)
        return web.Response(status=200, headers={"DataServiceVersion": "3.0"})
    if task.start_time is None:
        raise BatchError(404, "TaskFileNotFound", "The specified file does not exist.")
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
    name = params["path"]
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
    if job_id.lower() in account.jobs:
        raise BatchError(409, "JobExists", "The specified job already exists.")
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
        "stateTransitionTime": _iso(job.creation_time),
        "priority": int(job.body.get("priority") or 0),
        "maxParallelTasks": -1,
        "usesTaskDependencies": False,
        "allowTaskPreemption": False,
        "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0},
        "poolInfo": {"poolId": job.pool_id},
        "executionInfo": {"startTime": _iso(job.creation_time), "poolId": job.pool_id},
        "onAllTasksComplete": str(job.body.get("onAllTasksComplete") or "noaction").lower(),
        "onTaskFailure": str(job.body.get("onTaskFailure") or "noaction").lower(),
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
    execution.update({"retryCount": 0, "requeueCount": 0})
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
