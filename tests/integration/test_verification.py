"""Node verification through the real operator process, the real API server and the simulator.

Covers (issues 13 and 21): a pool of three nodes with ``spec.verification`` proves every
node current; a rotation with one node unable to fetch → after the polling interval the others
are current and that node stale with the OLD thumbprint, ``NodesReady=False NodesStale`` (Event
NodesStale); the node recovers → ``Ready`` with ``NodesReady`` ``RotationVerified`` (Event
NodesVerified); a busy node (slots full) and a node whose task times out stay ``unverified``,
never fail the resource, and (``requireProof: false``) give ``True/RotationUnverified`` then
``RotationVerified`` once slots free; never more than one task per node is outstanding; the
Batch requests per verification run per node; ownership — another tenant's job on the pool
(named as the old default, holding a planted task) and a second object claiming the pool
(``PoolNotOwned``) are never read, added to or deleted; a mixed-case vault URL is proven current
(file names keep the URL's case) with the account's active job quota one above what others use,
and no job of ours is left active between runs; a task's output gone (409 TaskFilesUnavailable)
and a node leaving mid-run (its task running) never stall the run, and the node that left is
counted nowhere; a task planted in a run's own job (with its command line) is never read;
another tenant's job taking the very id of a run (409 JobExists) is left
untouched and the run retried under a new name; a restart mid-run deletes the old run's job (not
another tenant's job carrying our prefix), and a restart on a Ready verified pool writes no
status, posts no Event and starts no run; a Windows pool is proven through its LocalMachine store;
a pool recreated with the same name while its old run's job is still deleting is proven again.

Slow tier (``faults_full``, over a minute each): the three-node rotation, hostile output,
requireProof on a busy pool, Windows, and the pool recreated while its old job deletes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
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


# Minutes long (measured 260/186/134 s): the slow tier, run before an issue is resolved.
@pytest.mark.faults_full
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
        "NodesReady=False NodesStale, and the other nodes' proofs in",
        # NodesStale shows as soon as one node is proven stale; the others' tasks may answer a
        # poll later.
        lambda: (
            _nodes_ready(stack, "ver", ns) == ("False", "NodesStale")
            and _verification(stack, "ver", ns).get("current") == NODES - 1
        ),
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

    # --- busy node and task timeout: unverified, never a failure; Ready per requireProof -----
    busy, hanging = node_ids[1], node_ids[2]
    stack.control.set_node(*ids, node_id=busy, busySlots=1)
    stack.control.set_node(*ids, node_id=hanging, taskHang=True)
    stack.control.renew_certificate(demo["vault"], cert)
    # requireProof false: pending for at most polling + taskTimeout, then the extension's
    # verdict with the unproven count (a busy pool is Ready; proof completes as slots free).
    stack.wait_until(
        "NodesReady=True RotationUnverified",
        lambda: _nodes_ready(stack, "ver", ns) == ("True", "RotationUnverified"),
        name="ver",
        namespace=ns,
        timeout=240,
    )
    verification = _verification(stack, "ver", ns)
    assert (verification["current"], verification["stale"], verification["unverified"]) == (
        1,
        0,
        2,
    ), verification
    assert stack.condition("ver", ns, "Ready")["status"] == "True"
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
        if job["pool_id"].lower() == ids[-1].lower()
        and job["job_id"].startswith("bcv-")
        and job.get("state", "active") == "active"
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


def test_mixed_case_vault_url_is_proven_with_the_job_quota_nearly_used(
    stack: OperatorStack,
) -> None:
    ns, demo = stack.namespace("vercase"), stack.demo
    cert = f"Case-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    vault_url = demo["vaultUrl"]
    scheme, rest = vault_url.split("//", 1)
    label, domain = rest.split(".", 1)
    mixed = f"{scheme}//{label[:1].upper()}{label[1:-1]}{label[-1:].upper()}.{domain}"
    assert mixed != vault_url and mixed.lower() == vault_url.lower()
    others = sum(1 for j in _jobs(stack) if j["state"] == "active")
    stack.control.add_batch_account(
        demo["subscriptionId"],
        demo["resourceGroup"],
        demo["batchAccount"],
        active_job_quota=others + 1,  # room for one run's job, none for a standing one
    )
    try:
        stack.apply(
            stack.manifest(
                "vercase",
                ns,
                certificates=[{"vaultUrl": mixed, "name": cert}],
                verification={"enabled": True, "taskTimeout": "PT1M"},
            )
        )
        stack.wait_ready("vercase", ns, timeout=120)
        stack.wait_until(
            "the node proven current (no false NodesStale from the URL's case)",
            lambda: _verification(stack, "vercase", ns).get("current") == 1,
            name="vercase",
            namespace=ns,
            timeout=90,
        )
        assert _verification(stack, "vercase", ns)["stale"] == 0
        uid = stack.get("vercase", ns)["metadata"]["uid"]
        stack.wait_until(
            "no verification job left active once the run's results are in",
            lambda: not [j for j in _jobs(stack) if uid in j["id"] and j["state"] == "active"],
            name="vercase",
            namespace=ns,
            timeout=60,
        )
        # The user's own job still fits under the quota: verification holds none between runs.
        _batch(stack).create_job({"id": f"user-{uid[:8]}", "poolInfo": {"poolId": "vercase"}})
        assert "Traceback" not in stack.operator.log()
    finally:
        stack.control.add_batch_account(
            demo["subscriptionId"],
            demo["resourceGroup"],
            demo["batchAccount"],
            active_job_quota=300,
        )
    stack.cluster.kubectl("delete", "bcp", "vercase", "-n", ns, "--wait=true", "--timeout=90s")


@pytest.mark.faults_full
def test_a_windows_pool_is_proven_through_its_localmachine_store(stack: OperatorStack) -> None:
    """Windows end to end: the PowerShell listing (non-admin, task scope) of the LocalMachine
    store the extension installs into proves the node current, and after a rotation again."""
    ns, demo = stack.namespace("verwin"), stack.demo
    cert = f"win-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            "verwin",
            ns,
            image={
                "publisher": "MicrosoftWindowsServer",
                "offer": "WindowsServer",
                "sku": "2022-datacenter-smalldisk",
                "version": "latest",
            },
            nodeAgentSkuId="batch.node.windows amd64",
            certificates=[
                {
                    "vaultUrl": demo["vaultUrl"],
                    "name": cert,
                    "certificateStoreLocation": "LocalMachine",
                    "certificateStoreName": "MY",
                }
            ],
            verification={"enabled": True, "taskTimeout": "PT1M"},
        )
    )
    stack.wait_ready("verwin", ns, timeout=120)
    stack.wait_until(
        "the Windows node proven current",
        lambda: _verification(stack, "verwin", ns).get("current") == 1,
        name="verwin",
        namespace=ns,
        timeout=90,
    )
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "NodesReady=True RotationVerified on Windows",
        lambda: _nodes_ready(stack, "verwin", ns) == ("True", "RotationVerified"),
        name="verwin",
        namespace=ns,
        timeout=200,
    )
    uid = stack.get("verwin", ns)["metadata"]["uid"]
    bodies = [
        json.loads(r["body"]) if isinstance(r["body"], str) else r["body"]
        for r in stack.control.requests(service="batch", operation="Task_Add", pathRegex=uid)
    ]
    assert len(bodies) >= 2, bodies  # a run before and one after the rotation
    assert all(
        b["userIdentity"] == {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
        for b in bodies
    ), bodies
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verwin", "-n", ns, "--wait=true", "--timeout=90s")


HOSTILE = (
    f"batchcert {'9' * 5000} {'A' * 40}\n"  # an index past any int() limit
    "batchcert 0 SHA1 Fingerprint=" + ":".join(["AB"] * 20) + "\n"
    "batchcert 0 SHA1 Fingerprint=" + ":".join(["CD"] * 20) + "\n"  # repeated
    "batchcert done\n" + "x" * 20_000  # and more than any proof is
)


# Minutes long (measured 260/186/134 s): the slow tier, run before an issue is resolved.
@pytest.mark.faults_full
def test_hostile_task_output_is_no_proof_and_never_a_crash(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("verhostile"), stack.demo
    cert = f"hostile-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            "verhostile",
            ns,
            scale={"fixed": {"targetDedicatedNodes": 2}},
            certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
            verification={"enabled": True, "taskTimeout": "PT1M"},
        )
    )
    stack.wait_ready("verhostile", ns, timeout=120)
    stack.wait_until(
        "both nodes proven current",
        lambda: _verification(stack, "verhostile", ns).get("current") == 2,
        name="verhostile",
        namespace=ns,
        timeout=90,
    )
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "verhostile")
    hostile, _honest = sorted(n["id"] for n in stack.control.pool(*ids)["nodes"])
    stack.control.set_node(*ids, node_id=hostile, taskOutput=HOSTILE)
    stack.control.renew_certificate(demo["vault"], cert)  # every node runs again after it
    stack.wait_until(
        "after the rotation: the honest node proven, the hostile one unverified",
        lambda: (
            (
                _verification(stack, "verhostile", ns).get("current"),
                _verification(stack, "verhostile", ns).get("unverified"),
            )
            == (1, 1)
        ),
        name="verhostile",
        namespace=ns,
        timeout=200,
    )
    verification = _verification(stack, "verhostile", ns)
    assert verification["stale"] == 0 and "lastError" not in verification, verification
    stack.control.set_node(*ids, node_id=hostile, taskOutput=None)
    stack.wait_until(
        "NodesReady=True RotationVerified once the node behaves",
        lambda: _nodes_ready(stack, "verhostile", ns) == ("True", "RotationVerified"),
        name="verhostile",
        namespace=ns,
        timeout=200,
    )
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verhostile", "-n", ns, "--wait=true", "--timeout=90s")


# Minutes long (measured 260/186/134 s): the slow tier, run before an issue is resolved.
@pytest.mark.faults_full
def test_require_proof_holds_nodes_ready_while_every_slot_is_busy(stack: OperatorStack) -> None:
    """requireProof: true on a pool whose only slot is busy across a rotation: NodesReady stays
    False VerificationPending (in progress, not Stalled, no page) well past polling interval +
    taskTimeout; once the slot frees, the verification task goes first and proves it."""
    ns, demo = stack.namespace("verproof"), stack.demo
    cert = f"proof-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            "verproof",
            ns,
            certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
            verification={"enabled": True, "taskTimeout": "PT1M", "requireProof": True},
        )
    )
    stack.wait_until(
        "the node proven current",
        lambda: _verification(stack, "verproof", ns).get("current") == 1,
        name="verproof",
        namespace=ns,
        timeout=150,
    )
    stack.wait_ready("verproof", ns, timeout=60)
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "verproof")
    (node,) = [n["id"] for n in stack.control.pool(*ids)["nodes"]]
    stack.control.set_node(*ids, node_id=node, busySlots=1)
    rotated_at = time.monotonic()
    stack.control.renew_certificate(demo["vault"], cert)
    # polling 60 s + taskTimeout 60 s, and a margin: still held, still in progress.
    stack.wait_until(
        "polling interval + taskTimeout + 30 s passed",
        lambda: time.monotonic() - rotated_at > 150,
        name="verproof",
        namespace=ns,
        timeout=200,
    )
    assert _nodes_ready(stack, "verproof", ns) == ("False", "VerificationPending")
    assert stack.condition("verproof", ns, "Stalled")["status"] == "False"
    assert _verification(stack, "verproof", ns)["unverified"] == 1
    stack.control.set_node(*ids, node_id=node, busySlots=0)
    freed_at = time.monotonic()
    stack.wait_until(
        "RotationVerified once the slot frees",
        lambda: _nodes_ready(stack, "verproof", ns) == ("True", "RotationVerified"),
        name="verproof",
        namespace=ns,
        timeout=200,
    )
    print(f"\nproof {time.monotonic() - freed_at:.0f} s after the slot freed")
    assert "VerificationPending" not in stack.event_reasons(ns)
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verproof", "-n", ns, "--wait=true", "--timeout=90s")


@pytest.mark.faults_full
def test_a_pool_recreated_while_its_old_job_is_deleting(stack: OperatorStack) -> None:
    """Delete the object while a run's job is active (its task waits for a busy slot), and
    apply it again at once: the old job goes (deleting, then gone), the new object's runs use
    jobs of their own and prove the new pool, and nothing meets 409 JobBeingDeleted."""
    ns, demo = stack.namespace("verre"), stack.demo
    cert = f"re-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    manifest = stack.manifest(
        "verre",
        ns,
        certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
        verification={"enabled": True, "taskTimeout": "PT1M"},
    )
    stack.apply(manifest)
    stack.wait_until(
        "proven current",
        lambda: _verification(stack, "verre", ns).get("current") == 1,
        name="verre",
        namespace=ns,
        timeout=150,
    )
    old_uid = stack.get("verre", ns)["metadata"]["uid"]
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "verre")
    (node,) = [n["id"] for n in stack.control.pool(*ids)["nodes"]]
    stack.control.set_node(*ids, node_id=node, busySlots=1)
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "a run in progress (its job active, its task waiting)",
        lambda: any(old_uid in j["id"] and j["state"] == "active" for j in _jobs(stack)),
        name="verre",
        namespace=ns,
        timeout=150,
    )
    stack.cluster.kubectl("delete", "bcp", "verre", "-n", ns, "--wait=true", "--timeout=120s")
    assert not [j for j in _jobs(stack) if old_uid in j["id"] and j["state"] == "active"]
    stack.apply(manifest)
    stack.wait_until(
        "the recreated pool proven current",
        lambda: _verification(stack, "verre", ns).get("current") == 1,
        name="verre",
        namespace=ns,
        timeout=240,
    )
    new_uid = stack.get("verre", ns)["metadata"]["uid"]
    assert new_uid != old_uid
    assert "lastError" not in _verification(stack, "verre", ns)
    refused = stack.control.requests(service="batch", status=409, pathRegex="/jobs")
    assert not [r for r in refused if new_uid in r["path"] or old_uid in r["path"]], refused
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verre", "-n", ns, "--wait=true", "--timeout=120s")


def _our_jobs(stack: OperatorStack, uid: str, state: str | None = "active") -> list[str]:
    return [j["id"] for j in _jobs(stack) if uid in j["id"] and state in (None, j["state"])]


def _task_prefix(node_id: str) -> str:
    """The operator's task id prefix for a node (``translate.verification_task``)."""
    return "bcv-" + hashlib.sha1(node_id.encode(), usedforsecurity=False).hexdigest()[:20] + "-"


def test_task_output_gone_and_a_node_removed_mid_run_never_stall_the_run(
    stack: OperatorStack,
) -> None:
    """One node's finished task has its files gone when read (409 TaskFilesUnavailable, as on
    real Batch once the node is reimaged or the retention passed); another node leaves the pool
    while its task runs (the user scales down). The run completes, the job goes, the first node
    is proven on the next run, and the node that left is counted nowhere."""
    ns, demo = stack.namespace("vergone"), stack.demo
    cert = f"gone-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    manifest = stack.manifest(
        "vergone",
        ns,
        scale={"fixed": {"targetDedicatedNodes": 3}},
        certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
        verification={"enabled": True, "taskTimeout": "PT1M"},
    )
    stack.apply(manifest)
    stack.wait_until(
        "every node proven current",
        lambda: _verification(stack, "vergone", ns).get("current") == 3,
        name="vergone",
        namespace=ns,
        timeout=150,
    )
    uid = stack.get("vergone", ns)["metadata"]["uid"]
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "vergone")
    in_order = [n["id"] for n in stack.control.pool(*ids)["nodes"]]
    files_gone, leaving = in_order[0], in_order[-1]  # a shrink removes the newest node
    stack.control.set_node(*ids, node_id=leaving, taskHang=True)  # still running when it goes
    stack.control.add_fault(
        match={
            "service": "batch",
            "method": "GET",
            "pathRegex": f"/jobs/bcv-{uid}-[0-9a-f]+/tasks/{_task_prefix(files_gone)}"
            r"\d+/files/stdout\.txt$",
        },
        status=409,
        body={
            "odata.metadata": "https://x/$metadata#Microsoft.Azure.Batch.Protocol.Entities"
            ".Container.errors/@Element",
            "code": "TaskFilesUnavailable",
            "message": {"lang": "en-US", "value": "The node files for the task are unavailable."},
        },
        count=1,
    )
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "the run's task running on the node about to leave",
        lambda: any(
            (t.get("nodeInfo") or {}).get("nodeId") == leaving and t["state"] == "running"
            for t in _tasks(stack, ids)
        ),
        name="vergone",
        namespace=ns,
        timeout=150,
    )
    stack.apply(
        dict(manifest, spec=dict(manifest["spec"], scale={"fixed": {"targetDedicatedNodes": 2}}))
    )
    stack.wait_until(
        "NodesReady=True RotationVerified on the two nodes left",
        lambda: (
            _nodes_ready(stack, "vergone", ns) == ("True", "RotationVerified")
            and _verification(stack, "vergone", ns).get("current") == 2
        ),
        name="vergone",
        namespace=ns,
        timeout=240,
    )
    verification = _verification(stack, "vergone", ns)
    assert (verification["stale"], verification["unverified"]) == (0, 0), verification
    assert "lastError" not in verification, verification
    assert leaving not in {n["id"] for n in stack.control.pool(*ids)["nodes"]}
    gone = stack.control.requests(service="batch", status=409, pathRegex=_task_prefix(files_gone))
    assert gone, "the injected TaskFilesUnavailable was read"
    stack.wait_until(
        "no job of ours left active",
        lambda: not _our_jobs(stack, uid),
        name="vergone",
        namespace=ns,
        timeout=60,
    )
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "vergone", "-n", ns, "--wait=true", "--timeout=90s")


def test_a_job_id_taken_by_another_tenant_is_left_untouched_and_retried_under_another_name(
    stack: OperatorStack,
) -> None:
    """Another tenant of the account creates a job with the very id the operator is about to
    use (409 JobExists): the operator reads it, sees it is not its own, never adds to, lists or
    deletes it, says so in lastError, and the next run uses a new name and proves the node."""
    ns, demo = stack.namespace("vercoll"), stack.demo
    cert = f"coll-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            "vercoll",
            ns,
            certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
            verification={"enabled": True, "taskTimeout": "PT1M"},
        )
    )
    stack.wait_until(
        "the node proven current",
        lambda: _verification(stack, "vercoll", ns).get("current") == 1,
        name="vercoll",
        namespace=ns,
        timeout=150,
    )
    uid = stack.get("vercoll", ns)["metadata"]["uid"]
    stack.control.set_settings(foreignJobIdRegex=f"^bcv-{uid}-")
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "NodesReady=True RotationVerified under a job of its own",
        lambda: _nodes_ready(stack, "vercoll", ns) == ("True", "RotationVerified"),
        name="vercoll",
        namespace=ns,
        timeout=200,
    )
    taken = [
        r
        for r in stack.control.requests(service="batch", operation="Job_Add", status=409)
        if uid in str(r["body"])
    ]
    assert len(taken) == 1, taken
    foreign = (
        json.loads(taken[0]["body"])["id"]
        if isinstance(taken[0]["body"], str)
        else (taken[0]["body"]["id"])
    )
    jobs = {j["id"]: j for j in _jobs(stack)}
    assert jobs[foreign]["state"] == "active" and jobs[foreign]["tasks"] == [], jobs[foreign]
    touched = [
        (r["method"], r["operation"])
        for r in stack.control.requests(service="batch", pathRegex=f"/jobs/{foreign}")
    ]
    assert touched == [("GET", "Job_Get")], touched  # the ownership read, nothing else
    assert "VerificationJobNotOwned" in stack.operator.log()
    assert "lastError" not in _verification(stack, "vercoll", ns)  # cleared by the next run
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "vercoll", "-n", ns, "--wait=true", "--timeout=90s")
    assert jobs[foreign]["id"] in {j["id"] for j in _jobs(stack)}  # still there, still theirs


def _without_check_time(status: dict[str, Any]) -> dict[str, Any]:
    nodes = {k: v for k, v in (status.get("nodes") or {}).items() if k != "lastCheckTime"}
    return dict(status, nodes=nodes)


def _restart_operator(stack: OperatorStack) -> None:
    """Stop the operator process and start another in its place (the module's fixture stops
    whichever one is current at the end)."""
    from support.operator import start_operator

    op = stack.operator
    op.stop()
    fresh = start_operator(stack.cluster.kubeconfig, Path(stack.sim.sim_json), op.log_path)
    op.process = fresh.process


def _proven_then_a_run_queued(
    stack: OperatorStack, name: str, ns: str
) -> tuple[str, tuple[str, str, str, str], str, str]:
    """A one-node verified pool on its own certificate, proven current; then its only slot made
    busy and the certificate renewed, so a run is in progress with its task queued. Returns the
    object's uid, the pool's ids, the node and the run's job id."""
    demo = stack.demo
    cert = f"{name}-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest(
            name,
            ns,
            certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}],
            verification={"enabled": True, "taskTimeout": "PT1M"},
        )
    )
    stack.wait_until(
        "the node proven current",
        lambda: _verification(stack, name, ns).get("current") == 1,
        name=name,
        namespace=ns,
        timeout=150,
    )
    uid = stack.get(name, ns)["metadata"]["uid"]
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], name)
    (node,) = [n["id"] for n in stack.control.pool(*ids)["nodes"]]
    stack.control.set_node(*ids, node_id=node, busySlots=1)
    stack.control.renew_certificate(demo["vault"], cert)
    stack.wait_until(
        "a run in progress (its job active, its task queued behind the busy slot)",
        lambda: bool(_our_jobs(stack, uid)),
        name=name,
        namespace=ns,
        timeout=150,
    )
    (job_id,) = _our_jobs(stack, uid)
    return uid, ids, node, job_id


def test_a_restart_sweeps_the_runs_leftover_job_and_leaves_a_verified_pool_as_it_was(
    stack: OperatorStack,
) -> None:
    """Restart mid-run (its task queued behind a busy slot): the new process deletes the old
    run's job (ours by metadata and pool) but not another tenant's job carrying our prefix, and
    proves the node once the slot frees. Restart again on the Ready verified pool: the first
    turns write no status and post no Event, and no run starts before one is due."""
    ns = stack.namespace("verrs")
    uid, ids, node, leftover = _proven_then_a_run_queued(stack, "verrs", ns)
    squatter = f"bcv-{uid}-planted"
    _batch(stack).create_job({"id": squatter, "poolInfo": {"poolId": "verrs"}})

    _restart_operator(stack)
    stack.wait_until(
        "the old run's job deleted by the new process",
        lambda: leftover not in _our_jobs(stack, uid),
        name="verrs",
        namespace=ns,
        timeout=90,
    )
    stack.control.set_node(*ids, node_id=node, busySlots=0)
    stack.wait_until(
        "NodesReady=True RotationVerified after the slot frees",
        lambda: _nodes_ready(stack, "verrs", ns) == ("True", "RotationVerified"),
        name="verrs",
        namespace=ns,
        timeout=200,
    )
    stack.wait_ready("verrs", ns, timeout=60)
    stack.wait_until(
        "no run of ours in progress",
        lambda: _our_jobs(stack, uid) == [squatter],
        name="verrs",
        namespace=ns,
        timeout=90,
    )
    touched = [r["method"] for r in stack.control.requests(pathRegex=f"/jobs/{squatter}")]
    assert touched == [], touched  # found by the prefix listing, failed the check, untouched

    # --- a restart on the Ready verified pool: nothing written, nothing posted --------------
    time.sleep(5)  # let the last turn's write land
    before = stack.get("verrs", ns)
    events = len(stack.events(ns))
    since = max((r["seq"] for r in stack.control.requests(limit=1)), default=0)
    _restart_operator(stack)
    stack.wait_until(
        "the new process's first turn for the object (its leftover sweep)",
        lambda: bool(
            stack.control.requests(sinceSeq=since, operation="Job_List", pathRegex="/jobs")
        ),
        name="verrs",
        namespace=ns,
        timeout=90,
    )
    time.sleep(10)  # a few more turns
    after = stack.get("verrs", ns)
    # Verification's part and every condition as they were. status.nodes.lastCheckTime is left
    # out: this module's node recheck is 3 s, so it is a heartbeat that moves restart or not
    # (test_writes restarts at the installed recheck and sees no write at all).
    was, now = _without_check_time(before["status"]), _without_check_time(after["status"])
    assert now["nodes"].get("verification") == was["nodes"].get("verification")
    assert now["conditions"] == was["conditions"]
    assert now == was, {
        k: (was.get(k), now.get(k)) for k in {*was, *now} if was.get(k) != now.get(k)
    }
    assert len(stack.events(ns)) == events, stack.events(ns)[events:]
    started = stack.control.requests(sinceSeq=since, operation="Job_Add")
    assert started == [], started
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verrs", "-n", ns, "--wait=true", "--timeout=90s")


def test_a_task_planted_in_a_run_of_ours_is_never_read(stack: OperatorStack) -> None:
    """Someone with job permissions on the account adds a task to our run's job, with our very
    command line: the operator reads only the tasks it added, so the planted one is never
    listed as evidence, its files never read, and the run ends (its job deleted) regardless."""
    ns = stack.namespace("verplant")
    uid, ids, node, job_id = _proven_then_a_run_queued(stack, "verplant", ns)
    (added,) = stack.control.requests(operation="Task_Add", pathRegex=f"/jobs/{job_id}/")
    ours = json.loads(added["body"]) if isinstance(added["body"], str) else added["body"]
    _batch(stack).create_task(job_id, {"id": "bcv-planted", "commandLine": ours["commandLine"]})
    stack.control.set_node(*ids, node_id=node, busySlots=0)
    stack.wait_until(
        "NodesReady=True RotationVerified from its own task",
        lambda: _nodes_ready(stack, "verplant", ns) == ("True", "RotationVerified"),
        name="verplant",
        namespace=ns,
        timeout=200,
    )
    stack.wait_until(
        "the run's job deleted",
        lambda: job_id not in _our_jobs(stack, uid),
        name="verplant",
        namespace=ns,
        timeout=60,
    )
    read = stack.control.requests(service="batch", pathRegex="/tasks/bcv-planted")
    assert read == [], read
    assert "Traceback" not in stack.operator.log()
    stack.cluster.kubectl("delete", "bcp", "verplant", "-n", ns, "--wait=true", "--timeout=90s")
