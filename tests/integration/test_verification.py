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
            verification={"enabled": True, "taskTimeout": "PT20S"},
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

    stack.cluster.kubectl("delete", "bcp", "ver", "-n", ns, "--wait=true", "--timeout=60s")
    assert not any(j for j in _jobs(stack) if j == "batchcert-verify-ver")


def _tasks(stack: OperatorStack, ids: tuple[str, ...]) -> list[dict[str, Any]]:
    state = stack.control.request("GET", "/state")["world"]
    for account in state["accounts"].values():
        job = account["jobs"].get("batchcert-verify-ver")
        if job:
            return [
                {
                    "id": t["task_id"],
                    "state": t["state"],
                    "nodeInfo": {"nodeId": t["node_id"]} if t["node_id"] else None,
                    "affinity": str(t["body"].get("affinityInfo", {}).get("affinityId", ""))[4:],
                }
                for t in job["tasks"].values()
            ]
    return []


def _jobs(stack: OperatorStack) -> list[str]:
    state = stack.control.request("GET", "/state")["world"]
    return [j for a in state["accounts"].values() for j in a["jobs"]]
