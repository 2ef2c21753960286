"""Two shards never both act: ``batchcert run --shards 2 --shard 0|1`` on one namespace.

Covers: two standalone operator processes, each owning the objects whose uid hashes to its
shard (``reconcile/sharding.py``); six new objects all converge, both shards own some of them,
and every pool has exactly one pool PUT in the simulator's log and no other pool write (a second
shard acting on an object would send its own guarded PUT and be refused with 412); each shard
deletes its own objects while the other holds the shared finalizer in place (a shard that does
not own an object still requires the finalizer, else its kopf removes it and the owner adds it
back, many times a second: the finalizer is sampled and must never be missing); and each
deleted object's pool is deleted in Azure by its owner (deletionPolicy applied). Not covered
here: a change of shard count (two rolls, each index under its own peering), whose safety is an
algebraic claim checked over thousands of uids in ``tests/unit/test_sharding.py``.
"""

from __future__ import annotations

import json
import time

from batchcert.models.names import FINALIZER
from batchcert.reconcile.sharding import shard_of
from support.faults import FaultStack, Scenario, start_replica, stop_operator

OBJECTS = [f"sharded-{i}" for i in range(6)]


def test_two_shards_never_both_act(fstack: FaultStack, scenario: Scenario) -> None:
    scenario.injected = "two operator processes on one namespace as shards 0 and 1 of 2"
    fstack.kill_operator()  # the module's standalone operator would own everything
    logs = fstack.log_path.parent
    shards = [
        start_replica(
            fstack,
            peering=None,
            priority=0,
            log_path=logs / f"shard-{index}.log",
            extra_args=("--shards", "2", "--shard", str(index)),
        )
        for index in (0, 1)
    ]
    try:
        since = fstack.last_seq()
        for name in OBJECTS:
            fstack.apply(fstack.manifest(name, fstack.home))
        scenario.converge_seconds = round(max(fstack.timed_ready(n) for n in OBJECTS), 1)
        owners: dict[int, list[str]] = {0: [], 1: []}
        for name in OBJECTS:
            got = fstack.cluster.kubectl("get", "bcp", name, "-n", fstack.home, "-o", "json")
            uid = json.loads(got.stdout)["metadata"]["uid"]
            owners[shard_of(uid, 2)].append(name)
        writes = [
            r
            for r in fstack.control.requests(sinceSeq=since, service="arm")
            if r["method"] in ("PUT", "PATCH", "DELETE") and "/pools/" in r["path"]
        ]
        assert sorted((w["operation"], w["status"]) for w in writes) == [
            ("Pool_Create", 200)
        ] * len(OBJECTS), writes
        for name in OBJECTS:
            assert len(fstack.pools_named(name)) == 1
            assert len([w for w in writes if w["path"].lower().endswith(name)]) == 1
        missing, versions = 0, set()
        for _ in range(20):
            got = fstack.cluster.kubectl("get", "bcp", OBJECTS[0], "-n", fstack.home, "-o", "json")
            meta = json.loads(got.stdout)["metadata"]
            missing += FINALIZER not in (meta.get("finalizers") or [])
            versions.add(meta["resourceVersion"])
            time.sleep(0.25)
        assert missing == 0, f"finalizer missing in {missing}/20 samples ({len(versions)} versions)"
        for op in shards:
            assert op.is_running() and "Traceback" not in op.log(), op.log()[-3000:]
        scenario.extra = {
            "shard0": len(owners[0]),
            "shard1": len(owners[1]),
            "resourceVersions_in_5s": len(versions),
        }
        scenario.operator_did = (
            f"shard 0 created {len(owners[0])} pools, shard 1 {len(owners[1])}; "
            "one pool PUT per object in all; every object Ready"
        )
        since = fstack.last_seq()
        for name in OBJECTS:  # each owner applies deletionPolicy; kopf then drops the finalizer
            fstack.delete(name)
        deletes = [
            r
            for r in fstack.control.requests(sinceSeq=since, service="arm")
            if r["method"] == "DELETE" and "/pools/" in r["path"]
        ]
        for name in OBJECTS:
            assert [d for d in deletes if d["path"].lower().endswith(name)], (name, deletes)
    finally:
        for name in OBJECTS:  # idempotent: gone already unless an assertion above failed
            fstack.delete(name)
        for op in shards:
            stop_operator(op)
        fstack.start_operator()  # back to one standalone operator for the fixture's cleanup
