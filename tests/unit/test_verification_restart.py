"""Node verification across a restart of the operator (``reconcile.verification``).

Covers: a fresh verifier fed the status a previous process wrote for a verified pool (every node
current, or one proven stale) writes the same ``status.nodes.verification`` and ``NodesReady``,
posts no Event and creates no job before a run is due; a record that does not account for every
node (unverified nodes, a truncated stale list, a rotation since its last run) is not trusted
and the nodes are proven anew; no recorded shape raises; this object's jobs left by the earlier
process are found by the operator's own prefix and deleted when they pass the ownership check,
and a job that fails it (foreign metadata, another pool) or is being deleted is never touched.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from batchcert.assess.verification import RecordedCertificate, restore_proofs
from batchcert.conditions import NODES_READY, ConditionUpdate
from batchcert.models.spec import parse_spec
from batchcert.reasons import NodesReason
from batchcert.reconcile.verification import PoolFacts, Verifier
from batchcert.reconcile.verification_run import sweep_leftover_jobs
from batchcert.translate.verification_task import (
    OWNER_UID_KEY,
    POOL_KEY,
    build_job_body,
    build_job_id,
)
from support.builders import base_spec

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
UID = "0b0c7a8e-1f7e-4a53-9d1e-3f4b5a6c7d8e"
OLD, NEW = "A" * 40, "B" * 40
NODES = {"n1": "idle", "n2": "idle", "n3": "running"}


class RecordingBatch:
    """A Batch that records every call; its jobs answer the list by prefix."""

    def __init__(self, jobs: list[dict[str, Any]] | None = None) -> None:
        self.jobs = jobs or []
        self.calls: list[tuple[str, str]] = []

    async def list_jobs(self, endpoint: str, id_prefix: str) -> list[dict[str, Any]]:
        self.calls.append(("list_jobs", id_prefix))
        return [j for j in self.jobs if j["id"].startswith(id_prefix)]

    async def begin_delete_job(self, endpoint: str, job_id: str) -> None:
        self.calls.append(("delete_job", job_id))

    async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
        self.calls.append(("list_nodes", pool_id))
        return [{"id": n, "affinityId": f"TVM:{n}", "state": s} for n, s in NODES.items()]

    async def create_job(self, endpoint: str, body: dict[str, Any]) -> bool:
        self.calls.append(("create_job", body["id"]))
        return True

    async def add_task(self, endpoint: str, job_id: str, body: dict[str, Any]) -> None:
        self.calls.append(("add_task", body["id"]))


class _Vault:
    async def list_version_thumbprints(self, vault: str, name: str) -> dict[str, str]:
        return {OLD: "v1", NEW: "v2"}


def _spec() -> Any:
    return parse_spec(
        base_spec(
            scale={"fixed": {"targetDedicatedNodes": 3}},
            keyVaultExtension={"pollingIntervalSeconds": 300},
            verification={"enabled": True, "interval": "PT24H", "taskTimeout": "PT10M"},
        )
    )


ROTATED = T0 - timedelta(hours=1)  # rotated, settled (polling 5 min), then the last run
ITEM = {"thumbprint": NEW, "version": "v2", "lastRotationTime": "2026-12-05T08:00:00Z"}


def _record(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "current": 3,
        "stale": 0,
        "unverified": 0,
        "summary": "3/3",
        "staleNodes": [],
        "lastRunTime": "2026-12-05T09:00:00Z",
    }
    record.update(over)
    return record


def _turn(
    batch: RecordingBatch,
    recorded: dict[str, Any] | None,
    before: ConditionUpdate,
    now: datetime,
    item: dict[str, Any] = ITEM,
) -> tuple[dict[str, Any], ConditionUpdate, list[Any]]:
    async def endpoint() -> str:
        return "acct"

    verifier = Verifier(batch, _Vault(), poll_seconds=15, retry_cap_seconds=300)  # type: ignore[arg-type]
    old_conditions = [{"type": NODES_READY, "status": str(before.status), "reason": before.reason}]
    status, condition, events = asyncio.run(
        verifier.step(
            pool=PoolFacts(key="ns/p", uid=UID, object_name="p", owned=True),
            spec=_spec(),
            endpoint=endpoint,
            cert_items=[item],
            nodes_status={"total": 3},
            node_states=dict(NODES),
            condition=ConditionUpdate(NODES_READY, True, NodesReason.EXTENSION_SUCCEEDED, "ok"),
            old_conditions=old_conditions,
            now=now,
            mono=1000.0,
            recorded=recorded,
        )
    )
    assert status is not None
    return status["verification"], condition, events


def test_a_restarted_verifier_writes_the_same_status_and_starts_no_run() -> None:
    """The first turn after a restart, past the polling interval but within ``interval``: the
    verified pool stays RotationVerified with the same counts, no Event, no job created."""
    batch = RecordingBatch()
    verified = ConditionUpdate(
        NODES_READY,
        True,
        NodesReason.ROTATION_VERIFIED,
        "3/3 nodes proven to hold the current version of every certificate",
    )
    now = T0 + timedelta(hours=2)
    status, condition, events = _turn(batch, _record(), verified, now)
    assert status == _record()
    assert condition == verified
    assert events == []
    assert [c[0] for c in batch.calls] == ["list_jobs"]  # the leftover sweep only, no run


def test_a_run_that_proved_every_node_just_before_the_window_ended_is_not_repeated() -> None:
    """The last run started in the second before the rotation's polling interval ended (status
    keeps whole seconds) and found every node current: after a restart just past the window's
    end the proofs stand and no run starts (the full run's one-second race, stop 27)."""
    settled = datetime(2026, 12, 5, 8, 5, tzinfo=UTC)  # ITEM's rotation + 300 s polling
    record = _record(lastRunTime="2026-12-05T08:04:59Z")
    verified = ConditionUpdate(
        NODES_READY,
        True,
        NodesReason.ROTATION_VERIFIED,
        "3/3 nodes proven to hold the current version of every certificate",
    )
    batch = RecordingBatch()
    status, condition, events = _turn(batch, record, verified, settled + timedelta(seconds=8))
    assert status == record
    assert condition == verified and events == []
    assert [c[0] for c in batch.calls] == ["list_jobs"]


def test_a_proof_not_current_from_before_the_window_ended_is_looked_at_again() -> None:
    """The same record with one node stale before the window ended: that proof predates the
    node's chance to fetch, so a run starts once the window is over."""
    stale = [{"nodeId": "n2", "certificate": "mycert", "thumbprint": OLD, "version": "v1"}]
    record = _record(
        current=2, stale=1, summary="2/3", staleNodes=stale, lastRunTime="2026-12-05T08:04:59Z"
    )
    before = ConditionUpdate(NODES_READY, False, NodesReason.VERIFICATION_PENDING, "x")
    batch = RecordingBatch()
    now = datetime(2026, 12, 5, 8, 5, 8, tzinfo=UTC)
    _turn(batch, record, before, now)
    assert "create_job" in [c[0] for c in batch.calls]


def test_a_restart_keeps_a_proven_stale_node_stale_with_its_thumbprint() -> None:
    stale = [{"nodeId": "n2", "certificate": "mycert", "thumbprint": OLD, "version": "v1"}]
    record = _record(current=2, stale=1, summary="2/3", staleNodes=stale)
    before = ConditionUpdate(NODES_READY, False, NodesReason.NODES_STALE, "x")
    batch = RecordingBatch()
    status, condition, events = _turn(batch, record, before, T0 + timedelta(minutes=2))
    assert status == record
    assert condition.reason == NodesReason.NODES_STALE and events == []
    assert "create_job" not in [c[0] for c in batch.calls]  # n2 is looked at after polling


def test_a_record_that_does_not_account_for_every_node_is_not_trusted() -> None:
    before = ConditionUpdate(NODES_READY, True, NodesReason.ROTATION_UNVERIFIED, "x")
    now = T0 + timedelta(minutes=30)
    for record, item in (
        (_record(current=2, unverified=1, summary="2/3"), ITEM),  # which node is unknown
        (_record(current=2, stale=1, summary="2/3"), ITEM),  # the stale list was cut short
        (_record(), dict(ITEM, lastRotationTime="2026-12-05T09:10:00Z")),  # rotated since
    ):
        batch = RecordingBatch()
        status, _, _ = _turn(batch, record, before, now, item)
        assert status["lastRunTime"] != record["lastRunTime"]  # a new run started now
        assert ("create_job", build_job_id(UID, now)) in batch.calls


def test_no_recorded_shape_raises() -> None:
    rng = random.Random(23)
    values: list[Any] = [None, "", "x", 0, -1, 3, 10**400, [], {}, [{}], [None], True, 2.5]
    values += ["2026-12-05T09:00:00Z", [{"nodeId": "n1", "certificate": 7}]]
    certificates = [RecordedCertificate("mycert", NEW, ROTATED)]
    keys = ["current", "stale", "unverified", "staleNodes", "lastRunTime"]
    for _ in range(500):
        record = {k: rng.choice(values) for k in keys if rng.random() < 0.8}
        proofs, _ = restore_proofs(rng.choice([record, None, "x", []]), list(NODES), certificates)
        assert set(proofs) <= set(NODES)


def _job(job_id: str, *, uid: str = UID, pool: str = "p", state: str = "active") -> dict[str, Any]:
    body = build_job_body(job_id, pool, uid, "PT30M")
    return {
        "id": job_id,
        "state": state,
        "poolInfo": body["poolInfo"],
        "metadata": body["metadata"],
    }


def test_leftover_jobs_of_an_earlier_process_go_and_no_other_job_is_touched() -> None:
    ours_active = _job(build_job_id(UID, T0))
    ours_completed = _job(build_job_id(UID, T0 + timedelta(minutes=1)), state="completed")
    current = _job(build_job_id(UID, T0 + timedelta(minutes=2)))
    going = _job(build_job_id(UID, T0 + timedelta(minutes=3)), state="deleting")
    foreign = {"id": build_job_id(UID, T0 + timedelta(minutes=4)), "poolInfo": {"poolId": "p"}}
    elsewhere = _job(build_job_id(UID, T0 + timedelta(minutes=5)), pool="other")
    marked_other = dict(elsewhere, poolInfo={"poolId": "p"})  # metadata names another pool
    batch = RecordingBatch([ours_active, ours_completed, current, going, foreign, marked_other])
    sweep = sweep_leftover_jobs(batch, "acct", UID, "p", keep=current["id"])  # type: ignore[arg-type]
    deleted = asyncio.run(sweep)
    assert deleted == [ours_active["id"], ours_completed["id"]]
    assert batch.calls == [
        ("list_jobs", f"bcv-{UID}-"),
        ("delete_job", ours_active["id"]),
        ("delete_job", ours_completed["id"]),
    ]
    marks = {m["name"]: m["value"] for m in ours_active["metadata"]}
    assert marks == {OWNER_UID_KEY: UID, POOL_KEY: "p"}


def test_deleting_the_object_after_a_restart_takes_its_leftover_jobs_only() -> None:
    ours = _job(build_job_id(UID, T0))
    foreign = {"id": build_job_id(UID, T0 + timedelta(minutes=1)), "poolInfo": {"poolId": "p"}}
    batch = RecordingBatch([ours, foreign])

    async def endpoint() -> str:
        return "acct"

    verifier = Verifier(batch, _Vault(), poll_seconds=15, retry_cap_seconds=300)  # type: ignore[arg-type]
    asyncio.run(verifier.delete_job("ns/p", endpoint, owner=(UID, "p")))
    assert batch.calls == [("list_jobs", f"bcv-{UID}-"), ("delete_job", ours["id"])]


def test_a_first_turn_without_the_node_list_keeps_the_record_and_restores_on_the_next() -> None:
    """The node reading failed on the first turn after a restart: the record is kept as it is
    (no run, no sweep yet), and the next turn, with the nodes, restores from it."""
    batch = RecordingBatch()
    verifier = Verifier(batch, _Vault(), poll_seconds=15, retry_cap_seconds=300)  # type: ignore[arg-type]

    async def endpoint() -> str:
        return "acct"

    def turn(nodes: dict[str, str | None]) -> Any:
        return asyncio.run(
            verifier.step(
                pool=PoolFacts(key="ns/p", uid=UID, object_name="p", owned=True),
                spec=_spec(),
                endpoint=endpoint,
                cert_items=[ITEM],
                nodes_status={"total": len(nodes)},
                node_states=nodes,
                condition=ConditionUpdate(NODES_READY, True, NodesReason.EXTENSION_SUCCEEDED, ""),
                old_conditions=[],
                now=T0 + timedelta(hours=1),
                mono=1000.0,
                recorded=_record(),
            )
        )

    status, _, _ = turn({})
    assert status["verification"] == _record() and batch.calls == []
    status, condition, _ = turn(dict(NODES))
    assert status["verification"] == _record()
    assert condition.reason == NodesReason.ROTATION_VERIFIED
    assert [c[0] for c in batch.calls] == ["list_jobs"]


def test_nodes_verified_is_posted_when_the_condition_turns_so_and_only_then() -> None:
    pending = ConditionUpdate(NODES_READY, False, NodesReason.VERIFICATION_PENDING, "x")
    _, condition, events = _turn(RecordingBatch(), _record(), pending, T0 + timedelta(hours=2))
    assert condition.reason == NodesReason.ROTATION_VERIFIED
    assert [(e.type, e.reason) for e in events] == [("Normal", "NodesVerified")]
