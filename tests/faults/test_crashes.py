"""Crashes: the operator process is SIGKILLed at each step of creation and deletion, then
restarted.

Covers: a kill right after the object is applied (before any Azure write); a kill while the pool
PUT is in flight at Azure (the PUT completes after the operator died, racing the restarted
operator's own guarded PUT); a kill right after Azure answered the PUT but before status was
written (the restarted operator must adopt the pool by the uid in its metadata, not create a
second); a SIGTERM while a certificate read is in flight (a rollout: the process must exit 0
with no traceback); a kill after the DELETE was sent but before the finalizer came off (the
object must go, the pool must go, and nothing may recreate it). Each asserts exactly one pool (or none), at most
one successful pool PUT in the simulator's log, convergence, and a clean operator log.
"""

from __future__ import annotations

import time

from support.faults import FaultStack, Scenario, timed


def _assert_one_pool(fstack: FaultStack, name: str, row: Scenario) -> None:
    pools, creates = fstack.pools_named(name), fstack.successful_creates(name)
    row.duplicate_pools = max(0, len(pools) - 1) + max(0, len(creates) - 1)
    row.lost_resources = 0 if pools else 1
    assert len(pools) == 1, pools
    assert len(creates) == 1, creates  # a second 200 PUT would have replaced (clobbered) it
    pool = fstack.pool_in_azure(name)
    assert pool is not None
    uid = fstack.get(name, fstack.home)["metadata"]["uid"]
    metadata = {m["name"]: m["value"] for m in pool["properties"].get("metadata") or []}
    assert metadata.get("batchcert.dev/uid") == uid, metadata


def test_kill_before_any_azure_write(fstack: FaultStack, scenario: Scenario) -> None:
    name = "crash-apply"
    scenario.injected = "SIGKILL right after kubectl apply (before the pool PUT); restart"
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.kill_operator()
    fstack.start_operator()
    scenario.converge_seconds = round(fstack.timed_ready(name), 1)
    _assert_one_pool(fstack, name, scenario)
    fstack.assert_operator_healthy()
    scenario.operator_did = "restarted, created the pool once, Ready"


def test_kill_while_the_put_is_in_flight(fstack: FaultStack, scenario: Scenario) -> None:
    name = "crash-inflight"
    scenario.injected = (
        "pool PUT held 5 s at Azure (latency fault); SIGKILL while it is pending; restart "
        "(the old PUT completes after the kill, racing the new operator)"
    )
    rule = fstack.control.add_fault(
        match={"service": "arm", "method": "PUT", "pathRegex": fstack.pool_path_regex(name)},
        latencySeconds=5,
        count=1,
    )
    fstack.apply(fstack.manifest(name, fstack.home))

    def put_pending() -> bool:  # a count-1 rule leaves the list the moment a request matched it
        return rule["id"] not in {
            f["id"] for f in fstack.control.request("GET", "/faults")["faults"]
        }

    assert timed(put_pending, timeout=60, poll=0.05) is not None, fstack.operator.log()[-3000:]
    held_until = time.monotonic() + 5
    fstack.kill_operator()
    fstack.start_operator()
    scenario.converge_seconds = round(fstack.timed_ready(name), 1)
    # Let the held PUT finish (answered or dropped with its dead client) so the count is final.
    time.sleep(max(0.0, held_until + 1 - time.monotonic()))
    _assert_one_pool(fstack, name, scenario)
    refused = fstack.control.requests(
        operation="Pool_Create", pathRegex=fstack.pool_path_regex(name), status=412
    )
    scenario.extra["refusedPuts"] = len(refused)
    fstack.assert_operator_healthy()
    scenario.operator_did = (
        f"one PUT won, {len(refused)} refused by If-None-Match (412) and adopted; Ready"
        if refused
        else "the held PUT landed after the kill; the restarted operator found and adopted it; Ready"
    )


def test_kill_after_put_before_status(fstack: FaultStack, scenario: Scenario) -> None:
    name = "crash-afterput"
    scenario.injected = (
        "Batch node reads held 10 s so the turn stalls after the PUT; SIGKILL the moment the "
        "simulator logged the 200 PUT; restart"
    )
    since = fstack.last_seq()
    # Certificates are read before the pool step (no pool while one is missing); the nodes are
    # read after it, so holding Batch's data plane holds the turn between the PUT and its status.
    fstack.control.add_fault(match={"service": "batch"}, latencySeconds=10, durationSeconds=60)
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_for_request(
        since=since, operation="Pool_Create", status=200, pathRegex=fstack.pool_path_regex(name)
    )
    fstack.kill_operator()
    # The window was hit: Azure holds the pool, status never heard of it.
    status = fstack.get(name, fstack.home).get("status", {})
    assert "pool" not in status, status
    assert "PoolCreated" not in fstack.reasons_for(name)
    fstack.control.clear_faults()
    fstack.start_operator()
    scenario.converge_seconds = round(fstack.timed_ready(name), 1)
    _assert_one_pool(fstack, name, scenario)
    assert fstack.get(name, fstack.home)["status"]["pool"]["resourceId"].endswith(f"/pools/{name}")
    fstack.assert_operator_healthy()
    scenario.operator_did = "adopted its own pool by metadata uid (no second PUT); Ready"


def test_sigterm_with_a_certificate_read_in_flight_exits_cleanly(
    fstack: FaultStack, scenario: Scenario
) -> None:
    name = "crash-sigterm"
    scenario.injected = (
        "Key Vault certificate read held 10 s; SIGTERM (a rollout) while it is in flight; restart"
    )
    rule = fstack.control.add_fault(
        match={"service": "keyvault"}, latencySeconds=10, durationSeconds=60, count=1
    )
    fstack.apply(fstack.manifest(name, fstack.home))

    def read_pending() -> bool:  # a count-1 rule leaves the list the moment a request matched it
        return rule["id"] not in {
            f["id"] for f in fstack.control.request("GET", "/faults")["faults"]
        }

    assert timed(read_pending, timeout=60, poll=0.05) is not None, fstack.operator.log()[-3000:]
    # The read outlives the object's turn (other objects may await it): shutdown must end it
    # before closing the client it reads through, else kopf re-raised "Session is closed".
    fstack.operator.stop(timeout=30)
    assert fstack.operator.process.returncode == 0, fstack.operator.log()[-4000:]
    assert "Traceback" not in fstack.operator.log(), fstack.operator.log()[-6000:]
    fstack.control.clear_faults()
    fstack.start_operator()
    scenario.converge_seconds = round(fstack.timed_ready(name), 1)
    _assert_one_pool(fstack, name, scenario)
    fstack.assert_operator_healthy()
    scenario.operator_did = "exited 0 with no traceback; the next process converged; Ready"


def test_kill_during_delete(fstack: FaultStack, scenario: Scenario) -> None:
    name = "crash-delete"
    scenario.injected = (
        "SIGKILL right after the pool DELETE was accepted (202), finalizer still on; restart"
    )
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    since = fstack.last_seq()
    fstack.delete(name, wait=False)
    fstack.wait_for_request(
        since=since, operation="Pool_Delete", status=202, pathRegex=fstack.pool_path_regex(name)
    )
    fstack.kill_operator()
    assert fstack.exists(name)  # the finalizer holds it: nothing was lost track of
    fstack.start_operator()
    gone = timed(lambda: not fstack.exists(name) and not fstack.pools_named(name), timeout=90)
    assert gone is not None, fstack.explain(name, fstack.home, "never deleted")
    scenario.converge_seconds = round(gone, 1)
    recreated = fstack.control.requests(
        sinceSeq=since, operation="Pool_Create", pathRegex=fstack.pool_path_regex(name)
    )
    assert recreated == [], recreated
    scenario.lost_resources = len(fstack.pools_named(name))  # a pool left behind is leaked
    fstack.assert_operator_healthy()
    scenario.operator_did = (
        "restarted, saw the pool Deleting/gone, removed the finalizer; no recreate"
    )


def test_kill_when_ready_is_a_no_op(fstack: FaultStack, scenario: Scenario) -> None:
    name = "crash-ready"
    scenario.injected = "SIGKILL of a Ready operator; restart"
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    before = fstack.get(name, fstack.home)["status"]
    since = fstack.last_seq()
    fstack.restart_operator()
    seen = timed(
        lambda: bool(fstack.control.requests(sinceSeq=since, operation="Pool_Get")), timeout=60
    )
    assert seen is not None
    scenario.converge_seconds = round(fstack.timed_ready(name), 1)
    writes = [
        r
        for r in fstack.control.requests(sinceSeq=since, service="arm")
        if r["method"] in ("PUT", "PATCH", "DELETE") and "/pools/" in r["path"]
    ]
    assert writes == [], writes
    after = fstack.get(name, fstack.home)["status"]
    assert after["certificates"][0]["rotations"] == before["certificates"][0]["rotations"]
    _assert_one_pool(fstack, name, scenario)
    fstack.assert_operator_healthy()
    scenario.operator_did = "re-read the pool, wrote nothing to Azure, rotation count unchanged"
