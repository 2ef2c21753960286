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
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from batchcert.models.spec import parse_spec
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

    nodes = {n.id: n for n in batch.list_nodes(pool)}
    first, second = sorted(nodes)
    command = _command(demo)
    cert = control.certificate(demo["vault"], demo["certificate"])
    old_thumb = _hex(cert["current"]["x5t"])

    def run(task_id: str, node_id: str, timeout: str = "PT10M") -> Any:
        body = build_task_body(task_id, command, nodes[node_id].affinity_id, timeout)
        batch.create_task("verify", body)
        return batch.get_task("verify", task_id)

    added = run("t1", first)
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
