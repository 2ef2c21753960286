"""Node verification through the real operator process, the real API server and the simulator.

Covers (issue 13's "done when"): a pool of three nodes with ``spec.verification`` proves every
node current; a rotation with one node unable to fetch → after the polling interval the others
are current and that node stale with the OLD thumbprint, ``NodesReady=False NodesStale`` (Event
NodesStale); the node recovers → ``Ready`` with ``NodesReady`` ``RotationVerified`` (Event
NodesVerified); a busy node (slots full) and a node whose task times out stay ``unverified``,
never fail the resource, and give ``VerificationPending``; finished tasks are deleted and never
more than one task per node is outstanding; the Batch requests per verification run per node.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest

from support.stack import OperatorStack

pytestmark = pytest.mark.integration

NODES = 3


def _hex(x5t: str) -> str:
    return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()


def _verification(stack: OperatorStack, name: str, ns: str) -> dict[str, Any]:
    return dict(stack.get(name, ns).get("status", {}).get("nodes", {}).get("verification", {}))


def _nodes_ready(stack: OperatorStack, name: str, ns: str) -> tuple[str, str]:
    found = stack.condition(name, ns, "NodesReady")
    return found.get("status", ""), found.get("reason", "")


def test_rotation_is_proven_on_every_node(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("verify"), stack.demo
    cert = f"ver-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            "ver",
            ns,
            scale={"fixed": {"targetDedicatedNodes": NODES}},
            certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
            verification={"enabled": True, "taskTimeout": "PT1M"},
        )
    )
    stack.wait_ready("ver", ns, timeout=120)
    stack.wait_until(
        "every node proven current",
        lambda: _verification(stack, "ver", ns).get("current") == NODES,
        name="ver",
        namespace=ns,
        timeout=60,
    )
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "ver")
    node_ids = sorted(n["id"] for n in stack.control.pool(*ids)["nodes"])
    blocked = node_ids[0]
    old_thumb = _hex(stack.control.certificate(demo["vault"], cert)["current"]["x5t"])

    # --- one node cannot fetch: the rotation is proven stale on it -------------------------
    stack.control.set_node(*ids, node_id=blocked, fetchBlocked=True)
    rotated_at = time.monotonic()
    new_version = stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "NodesReady=False NodesStale",
        lambda: _nodes_ready(stack, "ver", ns) == ("False", "NodesStale"),
        name="ver",
        namespace=ns,
        timeout=180,
    )
    assert time.monotonic() - rotated_at >= 55  # not before the polling interval (60 s)
    verification = _verification(stack, "ver", ns)
    assert (verification["current"], verification["stale"]) == (NODES - 1, 1), verification
    (stale,) = verification["staleNodes"]
    assert stale["nodeId"] == blocked
    assert stale["certificate"] == cert
    assert stale["thumbprint"] == old_thumb
    assert stale["version"] and stale["version"] != new_version
    assert verification["lastRunTime"]
    assert "NodesStale" in stack.event_reasons(ns)
    assert stack.condition("ver", ns, "Ready")["status"] == "False"

    # --- it recovers: Ready again, with the rotation verified on every node -----------------
    stack.control.set_node(*ids, node_id=blocked, fetchBlocked=False)
    stack.wait_until(
        "NodesReady=True RotationVerified",
        lambda: _nodes_ready(stack, "ver", ns) == ("True", "RotationVerified"),
        name="ver",
        namespace=ns,
        timeout=200,
    )
    stack.wait_ready("ver", ns, timeout=30)
    verification = _verification(stack, "ver", ns)
    assert (verification["current"], verification["stale"], verification["staleNodes"]) == (
        NODES,
        0,
        [],
    )
    assert "NodesVerified" in stack.event_reasons(ns)

    # --- busy node and task timeout: unverified, pending, never a failure -------------------
    busy, hanging = node_ids[1], node_ids[2]
    stack.control.set_node(*ids, node_id=busy, busySlots=1)
    stack.control.set_node(*ids, node_id=hanging, taskHang=True)
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "NodesReady=False VerificationPending",
        lambda: _nodes_ready(stack, "ver", ns) == ("False", "VerificationPending"),
        name="ver",
        namespace=ns,
        timeout=200,
    )
    verification = _verification(stack, "ver", ns)
    assert (verification["current"], verification["stale"], verification["unverified"]) == (
        1,
        0,
        2,
    ), verification
    assert stack.condition("ver", ns, "PoolReady")["status"] == "True"
    reasons = stack.event_reasons(ns)
    assert "VerificationPending" not in reasons  # not a failure: no Warning Event
    # never more than one task per node outstanding, and the hanging one is still ours alone
    tasks = [t for t in _tasks(stack, ids) if t["state"] != "completed"]
    per_node: dict[str, int] = {}
    for task in tasks:
        node = (task.get("nodeInfo") or {}).get("nodeId") or task["affinity"]
        per_node[node] = per_node.get(node, 0) + 1
    assert all(count == 1 for count in per_node.values()), tasks

    stack.control.set_node(*ids, node_id=busy, busySlots=0)
    stack.control.set_node(*ids, node_id=hanging, taskHang=False)
    stack.wait_until(
        "RotationVerified after the busy and hanging nodes recover",
        lambda: _nodes_ready(stack, "ver", ns) == ("True", "RotationVerified"),
        name="ver",
        namespace=ns,
        timeout=200,
    )

    # --- cost: Batch requests per verification task (= per node per run) --------------------
    counters = stack.control.counters()
    rows = counters.get("counters", counters) if isinstance(counters, dict) else counters
    ops: dict[str, int] = {}
    for row in rows:
        if row["service"] == "batch" and row["operation"].startswith(("Job_", "Task_", "File_")):
            ops[row["operation"]] = ops.get(row["operation"], 0) + int(row["count"])
    added = ops.get("Task_Add", 0)
    assert added >= 2 * NODES
    per_task = {k: v / added for k, v in sorted(ops.items())}
    print(f"\nBatch job/task requests over {added} verification tasks: {ops}; per task {per_task}")
    # One add, one stdout read, one delete per task; the list is shared by the pool's tasks.
    assert ops.get("File_GetFromTask", 0) <= added
    assert ops.get("Task_Delete", 0) <= added
    assert "Traceback" not in stack.operator.log()

    uid = stack.get("ver", ns)["metadata"]["uid"]
    stack.cluster.kubectl("delete", "bcp", "ver", "-n", ns, "--wait=true", "--timeout=60s")
    assert not [j for j in _jobs(stack) if uid in j and j["state"] == "active"]


def _tasks(stack: OperatorStack, ids: tuple[str, ...]) -> list[dict[str, Any]]:
    state = stack.control.request("GET", "/state")["world"]
    return [
        {
            "id": t["task_id"],
            "state": t["state"],
            "nodeInfo": {"nodeId": t["node_id"]} if t["node_id"] else None,
            "affinity": str(t["body"].get("affinityInfo", {}).get("affinityId", ""))[4:],
        }
        for account in state["accounts"].values()
        for job in account["jobs"].values()
        if job["pool_id"].lower() == ids[-1].lower() and job["job_id"].startswith("bcv-")
        for t in job["tasks"].values()
    ]


def _jobs(stack: OperatorStack) -> list[dict[str, Any]]:
    """Every job in the simulated world: id, pool, state, task ids."""
    state = stack.control.request("GET", "/state")["world"]
    return [
        {
            "id": j["job_id"],
            "pool": j["pool_id"],
            "state": j.get("state", "active"),
            "tasks": sorted(j["tasks"]),
        }
        for a in state["accounts"].values()
        for j in a["jobs"].values()
    ]


def _batch(stack: OperatorStack) -> Any:
    """The real azure-batch client on the demo account, as another tenant would use it."""
    from azure.batch import BatchClient

    from batchsim.client import operator_credential

    info = stack.sim.info
    return BatchClient(
        f"https://{stack.demo['accountEndpoint']}",
        operator_credential(info),
        connection_verify=info["caBundle"],
    )


def test_jobs_and_pools_it_does_not_own_are_never_touched(stack: OperatorStack) -> None:
    """Another tenant's job on the pool (named as the old default, with a task printing a
    proof-shaped line), and a second object claiming the pool: neither is read, added to or
    deleted; the pool's own object proves its nodes with jobs of its own, none left active."""
    ns = stack.namespace("verown")
    stack.apply(stack.manifest("owna", ns, verification={"enabled": True, "taskTimeout": "PT1M"}))
    stack.wait_ready("owna", ns, timeout=120)
    batch = _batch(stack)
    foreign = "batchcert-verify-owna"
    batch.create_job({"id": foreign, "poolInfo": {"poolId": "owna"}})
    batch.create_task(
        foreign,
        {
            "id": "bcv-planted",
            "commandLine": "/bin/sh -c 'echo batchcert 0 MISSING; echo batchcert done'",
        },
    )
    stack.apply(stack.manifest("ownb", ns, poolName="owna", verification={"enabled": True}))
    stack.wait_until(
        "the second object refused as PoolNotOwned",
        lambda: stack.condition("ownb", ns, "PoolReady").get("reason") == "PoolNotOwned",
        name="ownb",
        namespace=ns,
        timeout=60,
    )
    stack.wait_until(
        "the owner's node proven current",
        lambda: _verification(stack, "owna", ns).get("current") == 1,
        name="owna",
        namespace=ns,
        timeout=90,
    )
    uid_a = stack.get("owna", ns)["metadata"]["uid"]
    uid_b = stack.get("ownb", ns)["metadata"]["uid"]
    assert "verification" not in (stack.get("ownb", ns).get("status", {}).get("nodes") or {})
    for name in ("ownb", "owna"):
        stack.cluster.kubectl("delete", "bcp", name, "-n", ns, "--wait=true", "--timeout=90s")
    jobs = {j["id"]: j for j in _jobs(stack)}
    assert foreign in jobs and jobs[foreign]["tasks"] == ["bcv-planted"], jobs
    assert not [j for j in jobs if uid_b in j], jobs  # never verified a pool it does not own
    assert not [j for j in jobs.values() if uid_a in j["id"] and j["state"] == "active"], jobs
    touched = [
        r
        for r in stack.control.requests(service="batch", pathRegex=f"/jobs/{foreign}")
        if r["method"] != "POST"
    ]
    # Only our own create of the foreign job above (POST /jobs) and its task add (POST).
    assert not touched, touched
    assert "Traceback" not in stack.operator.log()
