"""Batch jobs, tasks and task files on the simulated data plane, via azure-batch (sync client).

Covers: add job (201, 409 JobExists), get job; add task → running on the affinity node when it
has a free slot → completed with exitCode 0 and nodeInfo; task files (contentLength a string)
and stdout.txt; the operator's own verification command printing the thumbprint of what THAT
node's extension fetched (a node unable to fetch keeps the old one after a rotation); affinity
not honoured when the node's slots are full (runs elsewhere) and a task waiting while every node
is busy; a hanging task ended at maxWallClockTime as a failure; delete task.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from batchcert.models.spec import OsType, parse_spec
from batchcert.translate.verification_task import (
    build_command_line,
    build_targets,
    build_task_body,
)

pytestmark = pytest.mark.sim


def _hex(x5t: str) -> str:
    return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()


def _command(demo: dict[str, Any]) -> str:
    spec = parse_spec(
        {
            "account": {"subscriptionId": "s", "resourceGroup": "r", "name": "a"},
            "vmSize": "x",
            "image": {"publisher": "p", "offer": "o", "sku": "s"},
            "nodeAgentSkuId": "batch.node.ubuntu 20.04",
            "scale": {"fixed": {"targetDedicatedNodes": 2}},
            "identity": {"resourceId": demo["identity"]["resourceId"]},
            "certificates": [{"secretId": demo["secretId"]}],
        }
    )
    return build_command_line(spec.resolved_os_type, build_targets(spec))


@pytest.fixture
def pool(
    arm: Any, demo: dict[str, Any], pool_body: Callable[..., Any], kv_extension: Any, control: Any
) -> str:
    arm.pool.create(
        demo["resourceGroup"],
        demo["batchAccount"],
        "vp",
        pool_body(nodes=2, extensions=[kv_extension(polling="300")]),
    )
    control.advance(60)
    return "vp"


def _stdout(batch: Any, job: str, task: str) -> str:
    return b"".join(batch.download_task_file(job, task, "stdout.txt")).decode()


def test_jobs_tasks_files_and_what_each_node_holds(
    batch: Any, control: Any, demo: dict[str, Any], pool: str
) -> None:
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], pool)
    batch.create_job({"id": "verify", "poolInfo": {"poolId": pool}})
    with pytest.raises(HttpResponseError) as exists:
        batch.create_job({"id": "verify", "poolInfo": {"poolId": pool}})
    assert exists.value.status_code == 409
    assert batch.get_job("verify").pool_info.pool_id == pool
    marked = {
        "id": "marked",
        "poolInfo": {"poolId": pool},
        "priority": 1000,
        "metadata": [{"name": "batchcert.dev/owner-uid", "value": "u"}],
        "constraints": {"maxWallClockTime": "PT30M"},
    }
    batch.create_job(marked)
    job = batch.get_job("marked").as_dict()
    assert job["metadata"] == marked["metadata"] and job["priority"] == 1000
    assert job["constraints"]["maxWallClockTime"] == "PT30M"

    nodes = {n.id: n for n in batch.list_nodes(pool)}
    first, second = sorted(nodes)
    command = _command(demo)
    cert = control.certificate(demo["vault"], demo["certificate"])
    old_thumb = _hex(cert["current"]["x5t"])

    def run(task_id: str, node_id: str, timeout: str = "PT10M") -> Any:
        body = build_task_body(task_id, command, nodes[node_id].affinity_id, timeout, OsType.LINUX)
        batch.create_task("verify", body)
        return batch.get_task("verify", task_id)

    added = run("t1", first)
    (logged,) = control.requests(operation="Task_Add", limit=1)
    assert json.loads(logged["body"])["commandLine"] == command  # what was asked, recorded
    assert added.state == "running" and added.node_info.node_id == first
    control.advance(2)
    done = batch.get_task("verify", "t1")
    assert (done.state, done.execution_info.exit_code, done.execution_info.result) == (
        "completed",
        0,
        "success",
    )
    files = {f.name: f for f in batch.list_task_files("verify", "t1")}
    assert isinstance(files["stdout.txt"].properties.content_length, int)  # SDK parses "13"
    fingerprint = ":".join(old_thumb[i : i + 2] for i in range(0, 40, 2))
    assert _stdout(batch, "verify", "t1") == f"batchcert 0 SHA1 Fingerprint={fingerprint}\n" + (
        "batchcert done\n"
    )

    # The second node cannot fetch any more; a rotation reaches only the first.
    control.set_node(*ids, node_id=second, fetchBlocked=True)
    new_version = control.renew_certificate(demo["vault"], demo["certificate"])
    control.advance(301)
    new_thumb = _hex(control.certificate(demo["vault"], demo["certificate"])["current"]["x5t"])
    assert control.certificate(demo["vault"], demo["certificate"])["current"]["version"] == (
        new_version
    )
    run("t2", first), run("t3", second)
    control.advance(2)
    assert new_thumb.replace(":", "") in _stdout(batch, "verify", "t2").replace(":", "")
    assert old_thumb in _stdout(batch, "verify", "t3").replace(":", "")

    # Affinity is soft: a full node sends the task elsewhere; all full → it waits.
    control.set_node(*ids, node_id=first, busySlots=1)
    moved = run("t4", first)
    assert moved.node_info.node_id == second
    control.advance(2)
    control.set_node(*ids, node_id=second, busySlots=1)
    waiting = run("t5", first)
    assert waiting.state == "active" and waiting.node_info is None
    assert {n.id: n.running_task_slots_count for n in batch.list_nodes(pool)} == {
        first: 1,
        second: 1,
    }

    # A hanging task ends at maxWallClockTime as a failure.
    control.set_node(*ids, node_id=first, busySlots=0, taskHang=True)
    control.advance(1)
    batch.delete_task("verify", "t5")
    hung = run("t6", first, timeout="PT5S")
    assert hung.state == "running"
    control.advance(6)
    ended = batch.get_task("verify", "t6")
    assert ended.state == "completed" and ended.execution_info.result == "failure"
    assert ended.execution_info.failure_info.code == "TaskEnded"

    batch.delete_task("verify", "t6")
    with pytest.raises(ResourceNotFoundError):
        batch.get_task("verify", "t6")


def _code(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    if exc.value.error is not None:
        return exc.value.status_code, exc.value.error.code
    # A streamed download's error body is not parsed by the SDK: read it (the operator cannot
    # rely on the code there, only on the status).
    response = exc.value.response
    assert response is not None
    response.read()
    return exc.value.status_code, json.loads(response.text())["code"]


def test_never_kinder_than_azure_deleting_quota_and_gone_files(
    batch: Any, control: Any, demo: dict[str, Any], pool: str
) -> None:
    """Job delete is not instant (409 JobBeingDeleted, also for a new job with its id); the
    account's active job quota (409 ActiveJobAndScheduleQuotaReached); task files vanish after
    retentionTime (409 TaskFilesCleanedup) and with their node (NodeNotReady while it is down)."""
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], pool)
    nodes = sorted(n.id for n in batch.list_nodes(pool))
    batch.create_job({"id": "gone", "poolInfo": {"poolId": pool}})
    batch.begin_delete_job("gone")  # the initial DELETE; the poller is not waited on
    assert batch.get_job("gone").state == "deleting"
    with pytest.raises(HttpResponseError) as deleting:
        batch.create_job({"id": "gone", "poolInfo": {"poolId": pool}})
    assert _code(deleting) == (409, "JobBeingDeleted")
    with pytest.raises(HttpResponseError) as adding:
        batch.create_task("gone", {"id": "t", "commandLine": "x"})
    assert _code(adding) == (409, "JobBeingDeleted")
    control.advance(60)
    with pytest.raises(ResourceNotFoundError):
        batch.get_job("gone")

    control.add_batch_account(
        demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], active_job_quota=1
    )
    batch.create_job({"id": "one", "poolInfo": {"poolId": pool}})
    with pytest.raises(HttpResponseError) as quota:
        batch.create_job({"id": "two", "poolInfo": {"poolId": pool}})
    assert _code(quota) == (409, "ActiveJobAndScheduleQuotaReached")
    control.add_batch_account(
        demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], active_job_quota=300
    )

    command = _command(demo)
    body = build_task_body("kept", command, f"TVM:{nodes[0]}", "PT5M", OsType.LINUX)
    body["constraints"]["retentionTime"] = "PT10M"
    batch.create_task("one", body)
    control.advance(2)
    assert "batchcert done" in _stdout(batch, "one", "kept")
    listed = batch.list_tasks("one", select=["id", "state"])
    assert [set(t.as_dict()) for t in listed] == [{"id", "state"}]  # $select honoured
    control.set_node_state(*ids, node_id=nodes[0], state="unusable")
    control.advance(1)
    with pytest.raises(HttpResponseError) as down:
        _stdout(batch, "one", "kept")
    assert _code(down) == (409, "NodeNotReady")
    control.set_node_state(*ids, node_id=nodes[0], state=None)
    control.advance(601)
    with pytest.raises(HttpResponseError) as cleaned:
        _stdout(batch, "one", "kept")
    assert _code(cleaned) == (409, "TaskFilesCleanedup")


def test_priority_elevation_and_the_urls_case(
    batch: Any, control: Any, demo: dict[str, Any], pool: str
) -> None:
    """Freed slots go to the higher-priority job's task; a non-admin task cannot read the Linux
    extension's 0700 folder (MISSING); files keep the vault URL's case (the operator's command
    for a mixed-case URL finds them)."""
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], pool)
    nodes = sorted(n.id for n in batch.list_nodes(pool))
    for node in nodes:
        control.set_node(*ids, node_id=node, busySlots=1)
    batch.create_job({"id": "low", "poolInfo": {"poolId": pool}, "priority": -10})
    batch.create_job({"id": "high", "poolInfo": {"poolId": pool}, "priority": 1000})
    batch.create_task("low", {"id": "l", "commandLine": "/bin/true"})
    control.advance(1)
    batch.create_task("high", {"id": "h", "commandLine": "/bin/true"})
    control.set_node(*ids, node_id=nodes[0], busySlots=0)
    control.advance(0.1)
    assert batch.get_task("high", "h").state == "running"
    assert batch.get_task("low", "l").state == "active"
    for node in nodes:
        control.set_node(*ids, node_id=node, busySlots=0)
    control.advance(3)

    command = _command(demo)
    plain = build_task_body("plain", command, f"TVM:{nodes[0]}", "PT5M", OsType.LINUX)
    plain["userIdentity"] = {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
    batch.create_task("high", plain)
    control.advance(2)
    assert _stdout(batch, "high", "plain") == "batchcert 0 MISSING\nbatchcert done\n"

    vault_url = demo["secretId"].split("/secrets/")[0]
    host = vault_url.split("//", 1)[1]
    shouting = demo["secretId"].replace(host.split(".", 1)[0], host.split(".", 1)[0].upper())
    assert shouting != demo["secretId"]
    spec = parse_spec(
        {
            "account": {"subscriptionId": "s", "resourceGroup": "r", "name": "a"},
            "vmSize": "x",
            "image": {"publisher": "p", "offer": "o", "sku": "s"},
            "nodeAgentSkuId": "batch.node.ubuntu 20.04",
            "scale": {"fixed": {"targetDedicatedNodes": 2}},
            "identity": {"resourceId": demo["identity"]["resourceId"]},
            "certificates": [{"secretId": shouting}],
        }
    )
    # The extension on this pool was given the demo's (lower-case) URL: a command naming the
    # file with another case finds nothing, as on a real (case-sensitive) Linux file system.
    upper = build_command_line(spec.resolved_os_type, build_targets(spec))
    batch.create_task(
        "high", build_task_body("upper", upper, f"TVM:{nodes[0]}", "PT5M", OsType.LINUX)
    )
    control.advance(2)
    assert _stdout(batch, "high", "upper") == "batchcert 0 MISSING\nbatchcert done\n"


def test_jobs_are_listed_by_id_prefix_and_state_with_select(
    batch: Any, demo: dict[str, Any], pool: str
) -> None:
    """Job_List ``$filter`` with the Batch docs' ``startswith(id, '...')`` (and ``state eq``),
    ``$select`` honoured; a filter the simulator does not model is refused, never ignored."""
    for job_id in ("bcv-uid1-a", "bcv-uid1-b", "bcv-uid2-a", "user-job"):
        batch.create_job({"id": job_id, "poolInfo": {"poolId": pool}})
    batch.begin_delete_job("bcv-uid1-b")
    listed = list(batch.list_jobs(filter="startswith(id, 'bcv-uid1-')", select=["id", "state"]))
    assert sorted((j.id, j.state) for j in listed) == [
        ("bcv-uid1-a", "active"),
        ("bcv-uid1-b", "deleting"),
    ]
    assert all(set(j.as_dict()) == {"id", "state"} for j in listed)
    active = batch.list_jobs(filter="startswith(id, 'bcv-') and state eq 'active'")
    assert sorted(j.id for j in active) == ["bcv-uid1-a", "bcv-uid2-a"]
    assert "user-job" in {j.id for j in batch.list_jobs()}
    with pytest.raises(HttpResponseError) as refused:
        list(batch.list_jobs(filter="endswith(id, 'a')"))
    assert _code(refused) == (400, "InvalidQueryParameterValue")


def test_another_tenant_can_win_the_race_for_a_job_id(batch: Any, control: Any, pool: str) -> None:
    """``foreignJobIdRegex``: the next add of a matching id meets a job someone else created
    with it (409 JobExists; no metadata), once; the next matching add is the caller's own."""
    control.set_settings(foreignJobIdRegex="^bcv-race-")
    with pytest.raises(HttpResponseError) as taken:
        batch.create_job({"id": "bcv-race-1", "poolInfo": {"poolId": pool}})
    assert _code(taken) == (409, "JobExists")
    foreign = batch.get_job("bcv-race-1").as_dict()
    assert foreign["poolInfo"] == {"poolId": pool} and "metadata" not in foreign
    batch.create_job({"id": "bcv-race-2", "poolInfo": {"poolId": pool}})  # once only


async def test_the_operators_tasks_adapter_tells_gone_files_and_lists_its_jobs(
    batch: Any,
    control: Any,
    demo: dict[str, Any],
    pool: str,
    info: dict[str, Any],
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the operator's own async adapter: a task file gone answers an AzureCallError
    carrying Batch's code (the SDK leaves a streamed error body unread; the adapter reads it),
    without the SDK's traceback in the log; jobs are listed by the operator's prefix."""
    from batchcert.adapters.azure_clients import AzureClients
    from batchcert.adapters.batchtasks import BatchTasksAdapter
    from batchcert.config import load_config
    from batchcert.errors import AzureCallError

    creds = info["principals"]["operator"]
    monkeypatch.setenv("AZURE_TENANT_ID", info["tenantId"])
    monkeypatch.setenv("AZURE_CLIENT_ID", creds["clientId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", creds["clientSecret"])
    clients = AzureClients(load_config({"BATCHCERT_CLOUD_FILE": str(sim.sim_json)}))
    tasks = BatchTasksAdapter(clients, per_account=2)
    endpoint = demo["accountEndpoint"]
    try:
        batch.create_job({"id": "bcv-u1-1", "poolInfo": {"poolId": pool}})
        batch.create_job({"id": "other", "poolInfo": {"poolId": pool}})
        node = sorted(n.id for n in batch.list_nodes(pool))[0]
        body = build_task_body("t", _command(demo), f"TVM:{node}", "PT5M", OsType.LINUX)
        body["constraints"]["retentionTime"] = "PT10M"
        batch.create_task("bcv-u1-1", body)
        control.advance(2)
        assert "batchcert done" in await tasks.read_stdout(endpoint, "bcv-u1-1", "t")
        control.advance(601)
        with pytest.raises(AzureCallError) as gone:
            await tasks.read_stdout(endpoint, "bcv-u1-1", "t")
        assert (gone.value.status, gone.value.code) == (409, "TaskFilesCleanedup")
        assert not [r for r in caplog.records if "deserialization" in r.getMessage()]
        listed = await tasks.list_jobs(endpoint, "bcv-u1-")
        assert [j["id"] for j in listed] == ["bcv-u1-1"]
        assert set(listed[0]) <= {"id", "state", "poolInfo", "metadata"}
    finally:
        await clients.close()
