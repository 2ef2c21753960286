"""Two replicas never both act: kopf peering (``batchcert run --peering NAME --priority N``).

Covers: two operator processes on one namespace sharing the KopfPeering object; both start
paused, only the higher priority one resumes while the other stays paused; a new object converges with exactly one pool
PUT in the simulator's log (a second acting replica would send its own guarded PUT and be refused
with 412) and no other pool write. Not covered: failover after the leader dies (kopf waits the
peer's 60 s lifetime before the other replica resumes; too slow for this suite's budget).

``faults_full``: a replica that acted and is then paused by a peer of higher priority stops
exporting the object's series within the metrics' staleness window (two minutes), while the
replica that now acts exports them: Prometheus never sees the standby's stale expiry.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from support.deploy import free_port
from support.faults import FaultStack, Scenario, start_replica, stop_operator, timed

PEERING = "batchcert"


def _peers(fstack: FaultStack) -> dict[str, object]:
    result = fstack.cluster.kubectl("get", "kopfpeering", PEERING, "-n", fstack.home, "-o", "json")
    if result.returncode != 0:
        return {}
    return dict(json.loads(result.stdout).get("status") or {})


def test_two_replicas_never_both_act(fstack: FaultStack, scenario: Scenario) -> None:
    name = "replicated"
    scenario.injected = (
        "two operator processes on one namespace (kopf peering, priorities 100 and 10)"
    )
    fstack.cluster.apply(
        f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: {PEERING}, namespace: {fstack.home}}}\n"
    )
    fstack.kill_operator()  # the module's standalone operator must not be a third actor
    logs = fstack.log_path.parent
    # The leader first, as in a rolling Deployment: a peer that starts while it is alone in the
    # peering object resumes at once (kopf's rule), so the follower joins a live leader.
    leader = start_replica(fstack, peering=PEERING, priority=100, log_path=logs / "leader.log")
    follower = None
    try:
        # kopf starts every peered operator paused; alone, the leader resumes.
        assert timed(lambda: "Resuming operations" in leader.log(), timeout=60) is not None, (
            leader.log()[-3000:]
        )
        follower = start_replica(
            fstack, peering=PEERING, priority=10, log_path=logs / "follower.log"
        )
        assert timed(lambda: len(_peers(fstack)) == 2, timeout=60) is not None, _peers(fstack)
        # Joining a live leader of higher priority, the follower stays in kopf's initial pause
        # (it never logs "Resuming"): asserted after the object converged, below.
        since = fstack.last_seq()
        fstack.apply(fstack.manifest(name, fstack.home))
        scenario.converge_seconds = round(fstack.timed_ready(name), 1)
        writes = [
            r
            for r in fstack.control.requests(sinceSeq=since, service="arm")
            if r["method"] in ("PUT", "PATCH", "DELETE") and "/pools/" in r["path"]
        ]
        assert [(w["operation"], w["status"]) for w in writes] == [("Pool_Create", 200)], writes
        assert len(fstack.pools_named(name)) == 1
        assert "Resuming operations" not in follower.log(), follower.log()[-3000:]
        for op in (leader, follower):
            assert op.is_running() and "Traceback" not in op.log(), op.log()[-3000:]
        scenario.extra = {"poolWrites": len(writes), "peers": len(_peers(fstack))}
        scenario.operator_did = (
            "the follower stayed paused while the leader lived; one pool PUT in all; Ready"
        )
    finally:
        stop_operator(leader)
        if follower is not None:
            stop_operator(follower)
        fstack.start_operator()  # back to one standalone operator for the fixture's cleanup


def _object_series(port: int, name: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith("batchcert_certificate_expiration") and f'name="{name}"' in line
    ]


@pytest.mark.faults_full
def test_a_paused_replica_stops_exporting_the_objects_series(
    fstack: FaultStack, scenario: Scenario
) -> None:
    name = "demoted"
    scenario.injected = "a replica that acted is paused by a peer of higher priority"
    fstack.cluster.apply(
        f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: {PEERING}, namespace: {fstack.home}}}\n"
    )
    fstack.kill_operator()
    logs = fstack.log_path.parent
    first_port, second_port = free_port(), free_port()
    first = start_replica(
        fstack, peering=PEERING, priority=10, log_path=logs / "first.log", metrics_port=first_port
    )
    second = None
    try:
        assert timed(lambda: "Resuming operations" in first.log(), timeout=60) is not None
        fstack.apply(fstack.manifest(name, fstack.home))
        fstack.timed_ready(name)
        assert timed(lambda: bool(_object_series(first_port, name)), timeout=30) is not None
        second = start_replica(
            fstack, peering=PEERING, priority=100, log_path=logs / "second.log",
            metrics_port=second_port,
        )  # fmt: skip
        assert timed(lambda: "Pausing operations" in first.log(), timeout=90) is not None, (
            first.log()[-3000:]
        )
        dropped = timed(lambda: not _object_series(first_port, name), timeout=180)
        assert dropped is not None, _object_series(first_port, name)
        assert timed(lambda: bool(_object_series(second_port, name)), timeout=60) is not None
        scenario.extra = {"standbyDroppedSeriesAfterSeconds": round(dropped, 1)}
        scenario.operator_did = (
            "the paused replica dropped the object's series; the new leader exports them"
        )
    finally:
        stop_operator(first)
        if second is not None:
            stop_operator(second)
        fstack.start_operator()
