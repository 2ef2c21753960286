"""Node verification, one run against a fake Batch (``reconcile.verification_run``).

Covers: ownership — a run's job is used only when this run created it or a read after
``409 JobExists`` shows this object's uid and pool (a foreign job is never added to, read or
deleted); only tasks this run added, with the command it set, are read (a planted task and a
task whose command was changed are ignored); gone output and churn — ``404`` and ``409``
``TaskFilesUnavailable``/``TaskFilesCleanedup``/``NodeNotReady`` on stdout, a task that ran on a
node that has left, a job being deleted — are "no proof" and the run goes on and ends (its job
deleted); a task queued for a busy slot is kept until its job's own limit and the poll says
when every task waits (the caller backs off); hostile Batch answers (random shapes) never raise
anything but ``AzureCallError``.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchcert.errors import AzureCallError
from batchcert.models.spec import parse_spec
from batchcert.reconcile.verification_run import (
    ForeignJobError,
    RunContext,
    VerificationRun,
    add_task,
    poll_run,
    run_limit,
    start_run,
)
from batchcert.translate.verification_task import OWNER_UID_KEY, POOL_KEY
from support.builders import base_spec

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
UID = "0b0c7a8e-1f7e-4a53-9d1e-3f4b5a6c7d8e"
NEW = "B" * 40
GOOD = f"batchcert 0 {NEW}\nbatchcert done\n"


def _error(status: int, code: str | None) -> AzureCallError:
    return AzureCallError(service="batch", operation="x", status=status, code=code, message=code)


class FakeBatch:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.stdout: dict[str, str | AzureCallError] = {}
        self.calls: list[tuple[str, str]] = []
        self.list_error: AzureCallError | None = None

    async def create_job(self, endpoint: str, body: dict[str, Any]) -> bool:
        self.calls.append(("create_job", body["id"]))
        if body["id"] in self.jobs:
            return False
        self.jobs[body["id"]] = body
        return True

    async def list_jobs(self, endpoint: str, id_prefix: str) -> list[dict[str, Any]]:
        self.calls.append(("list_jobs", id_prefix))
        return [
            dict(j, state=j.get("state", "active"))
            for j in self.jobs.values()
            if j["id"].startswith(id_prefix)
        ]

    async def get_job(self, endpoint: str, job_id: str) -> dict[str, Any] | None:
        self.calls.append(("get_job", job_id))
        return self.jobs.get(job_id)

    async def add_task(self, endpoint: str, job_id: str, body: dict[str, Any]) -> None:
        self.calls.append(("add_task", job_id))

    async def list_tasks(self, endpoint: str, job_id: str) -> list[dict[str, Any]]:
        self.calls.append(("list_tasks", job_id))
        if self.list_error is not None:
            raise self.list_error
        return self.tasks

    async def read_stdout(self, endpoint: str, job_id: str, task_id: str) -> str:
        self.calls.append(("read_stdout", task_id))
        answer = self.stdout.get(task_id, GOOD)
        if isinstance(answer, AzureCallError):
            raise answer
        return answer

    async def begin_delete_job(self, endpoint: str, job_id: str) -> None:
        self.calls.append(("delete_job", job_id))


def _poll(
    batch: FakeBatch, ctx: RunContext, run: VerificationRun, now: datetime
) -> tuple[list[Any], bool]:
    result = asyncio.run(poll_run(batch, ctx, run, now))  # type: ignore[arg-type]
    return result.proofs, result.over


def _ctx(nodes: tuple[str, ...] = ("n1", "n2")) -> RunContext:
    return RunContext(
        account="acct",
        uid=UID,
        pool_id="pool1",
        certificates=1,
        task_timeout=timedelta(minutes=5),
        task_timeout_text="PT5M",
        node_ids=frozenset(nodes),
    )


def _done(task_id: str, node: str, command: str = "cmd") -> dict[str, Any]:
    return {
        "id": task_id,
        "state": "completed",
        "commandLine": command,
        "creationTime": T0.isoformat(),
        "nodeInfo": {"nodeId": node},
        "executionInfo": {"exitCode": 0, "endTime": T0.isoformat()},
    }


def test_a_foreign_job_with_the_runs_name_is_left_untouched() -> None:
    batch = FakeBatch()
    ctx = _ctx()
    job_id = f"bcv-{UID}-{int(T0.timestamp() * 1000):x}"
    batch.jobs[job_id] = {"id": job_id, "poolInfo": {"poolId": "pool1"}}  # no marks
    with pytest.raises(ForeignJobError, match="not created by this resource"):
        asyncio.run(start_run(batch, ctx, "cmd", T0))  # type: ignore[arg-type]
    assert [c[0] for c in batch.calls] == ["create_job", "get_job"]  # no add, list or delete


def test_a_job_of_ours_after_409_is_adopted_and_one_on_another_pool_is_not() -> None:
    batch = FakeBatch()
    ctx = _ctx()
    first = asyncio.run(start_run(batch, ctx, "cmd", T0))  # type: ignore[arg-type]
    again = asyncio.run(start_run(batch, ctx, "cmd", T0))  # type: ignore[arg-type]
    assert again.job_id == first.job_id
    marks = {m["name"]: m["value"] for m in batch.jobs[first.job_id]["metadata"]}
    assert marks == {OWNER_UID_KEY: UID, POOL_KEY: "pool1"}
    batch.jobs[first.job_id]["poolInfo"] = {"poolId": "elsewhere"}
    with pytest.raises(ForeignJobError):
        asyncio.run(start_run(batch, ctx, "cmd", T0))  # type: ignore[arg-type]


def test_only_tasks_this_run_added_with_its_command_are_read() -> None:
    batch = FakeBatch()
    run = VerificationRun("job", T0, "cmd", {"t1": "n1", "t2": "n2"})
    batch.tasks = [
        _done("planted", "n1"),  # not added by this run
        _done("t1", "n1"),
        _done("t2", "n2", command="cmd; echo batchcert 0 " + NEW),  # changed behind our back
    ]
    proofs, over = _poll(batch, _ctx(), run, T0)
    assert [p.node_id for p in proofs] == ["n1"]
    assert ("read_stdout", "planted") not in batch.calls
    assert ("read_stdout", "t2") not in batch.calls
    assert over and ("delete_job", "job") in batch.calls  # no job left standing


@pytest.mark.parametrize(
    "gone",
    [
        _error(409, "TaskFilesUnavailable"),
        _error(409, "TaskFilesCleanedup"),
        _error(409, "NodeNotReady"),
        _error(404, "FileNotFound"),
        AzureCallError(service="batch", operation="x", status=409, code=None, message="?"),
    ],
)
def test_output_gone_is_no_proof_and_the_run_goes_on(gone: AzureCallError) -> None:
    batch = FakeBatch()
    run = VerificationRun("job", T0, "cmd", {"t1": "n1", "t2": "n2"})
    batch.tasks = [_done("t1", "n1"), _done("t2", "n2")]
    batch.stdout["t1"] = gone
    proofs, over = _poll(batch, _ctx(), run, T0)
    assert [p.node_id for p in proofs] == ["n2"] and over


def test_a_node_that_left_gives_no_proof_and_a_job_being_deleted_ends_the_run() -> None:
    batch = FakeBatch()
    run = VerificationRun("job", T0, "cmd", {"t1": "n1", "t2": "gone-node"})
    batch.tasks = [_done("t1", "n1"), _done("t2", "gone-node")]
    proofs, over = _poll(batch, _ctx(("n1",)), run, T0)
    assert [p.node_id for p in proofs] == ["n1"] and over
    assert ("read_stdout", "t2") not in batch.calls

    batch = FakeBatch()
    batch.list_error = _error(409, "JobBeingDeleted")
    run = VerificationRun("job", T0, "cmd", {"t1": "n1"})
    assert _poll(batch, _ctx(), run, T0) == ([], True)

    class Deleting(FakeBatch):
        async def add_task(self, endpoint: str, job_id: str, body: dict[str, Any]) -> None:
            raise _error(409, "JobBeingDeleted")

    assert not asyncio.run(add_task(Deleting(), _ctx(), run, {"id": "t"}))  # type: ignore[arg-type]


def test_tasks_queued_for_a_slot_wait_until_the_jobs_own_limit() -> None:
    """A busy node's task stays queued (first when a slot frees) and the poll says "every task
    waits" (the caller backs off); past the job's maxWallClockTime it is dropped, run over."""
    batch = FakeBatch()
    run = VerificationRun("job", T0, "cmd", {"t1": "n1", "t2": "n2"})
    batch.tasks = [
        {"id": "t1", "state": "active", "commandLine": "cmd", "creationTime": T0.isoformat()},
        {"id": "t2", "state": "active", "commandLine": "cmd", "creationTime": T0.isoformat()},
    ]
    assert run_limit(timedelta(minutes=5)) == timedelta(minutes=20)
    later = T0 + timedelta(minutes=19)
    result = asyncio.run(poll_run(batch, _ctx(), run, later))  # type: ignore[arg-type]
    assert (result.proofs, result.over, result.waiting) == ([], False, True)
    batch.tasks[0]["state"] = "running"  # a slot freed: poll quickly again
    result = asyncio.run(poll_run(batch, _ctx(), run, later))  # type: ignore[arg-type]
    assert (result.over, result.waiting) == (False, False)
    much_later = T0 + timedelta(minutes=22)
    assert _poll(batch, _ctx(), run, much_later) == ([], True)
    assert ("delete_job", "job") in batch.calls


def test_hostile_batch_answers_never_raise() -> None:
    """Random shapes where Batch's fields should be: the run reads them as no proof."""
    rng = random.Random(21)
    values: list[Any] = [
        None,
        "",
        "completed",
        "COMPLETED",
        0,
        -1,
        10**400,
        1.5,
        [],
        {},
        {"nodeId": "n1"},
        {"nodeId": 7},
        {"exitCode": 0},
        {"exitCode": "0", "failureInfo": None},
        "9" * 5000,
        "cmd",
        T0.isoformat(),
        "not a time",
    ]
    keys = ["id", "state", "commandLine", "creationTime", "nodeInfo", "executionInfo"]
    for _ in range(500):
        batch = FakeBatch()
        batch.tasks = [
            {k: rng.choice([*values, "t1"]) for k in keys if rng.random() < 0.8}
            for _ in range(rng.randint(0, 5))
        ]
        batch.stdout["t1"] = rng.choice([GOOD, "9" * 100_000, "\x00", "batchcert done"])
        run = VerificationRun("job", T0, "cmd", {"t1": "n1"})
        proofs, _ = _poll(batch, _ctx(), run, T0)
        assert all(p.node_id == "n1" for p in proofs)


class _Vault:
    async def list_version_thumbprints(self, vault: str, name: str) -> dict[str, str]:
        return {NEW: "v2"}


def _spec() -> Any:
    return parse_spec(
        base_spec(
            verification={"enabled": True, "interval": "PT0S", "taskTimeout": "P99999D"},
        )
    )


async def _step(batch: Any, *, owned: bool = True) -> tuple[Any, Any, Any]:
    from batchcert.conditions import NODES_READY, ConditionUpdate
    from batchcert.reconcile.verification import PoolFacts, Verifier

    async def endpoint() -> str:
        return "acct"

    verifier = Verifier(batch, _Vault(), poll_seconds=1, retry_cap_seconds=60)  # type: ignore[arg-type]
    return await verifier.step(
        pool=PoolFacts(key="ns/p", uid=UID, object_name="p", owned=owned),
        spec=_spec(),
        endpoint=endpoint,
        cert_items=[{"thumbprint": NEW, "version": "v2"}],
        nodes_status={"total": 1},
        node_states={"n1": "idle"},
        condition=ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "ok"),
        old_conditions=[],
        now=T0,
        mono=100.0,
    )


def test_a_pool_not_owned_is_never_verified_and_no_job_is_touched() -> None:
    batch = FakeBatch()
    status, condition, _ = asyncio.run(_step(batch, owned=False))
    assert "verification" not in status and condition.reason == "ExtensionSucceeded"
    assert batch.calls == []


def test_an_unforeseen_batch_answer_never_raises_out_of_the_step() -> None:
    class Odd(FakeBatch):
        async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
            raise ValueError("a shape no one foresaw")

    status, condition, _ = asyncio.run(_step(Odd()))
    assert status["verification"]["lastError"].startswith("UnexpectedAnswer:")
    assert condition.reason == "ExtensionSucceeded"  # no rotation: the extension's verdict


def test_a_run_starts_with_an_owned_marked_job_and_a_bounded_task() -> None:
    class Nodes(FakeBatch):
        async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
            return [{"id": "n1", "affinityId": "TVM:n1", "state": "idle"}]

    batch = Nodes()
    asyncio.run(_step(batch))
    (job,) = batch.jobs.values()
    assert job["priority"] == 1000 and job["poolInfo"] == {"poolId": "p"}
    assert ("add_task", job["id"]) in batch.calls


def test_turning_verification_off_mid_run_deletes_that_runs_job_only() -> None:
    from batchcert.reconcile.verification import PoolFacts, Verifier, _PoolProgress

    async def endpoint() -> str:
        return "acct"

    batch = FakeBatch()
    verifier = Verifier(batch, _Vault(), poll_seconds=1, retry_cap_seconds=60)  # type: ignore[arg-type]
    verifier._pools["ns/p"] = _PoolProgress(run=VerificationRun("bcv-ours", T0, "cmd", {"t": "n1"}))
    spec = _spec().model_copy(
        update={"verification": _spec().verification.model_copy(update={"enabled": False})}
    )
    from batchcert.conditions import NODES_READY, ConditionUpdate

    asyncio.run(
        verifier.step(
            pool=PoolFacts(key="ns/p", uid=UID, object_name="p", owned=True),
            spec=spec,
            endpoint=endpoint,
            cert_items=[],
            nodes_status={"total": 1},
            node_states={"n1": "idle"},
            condition=ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "ok"),
            old_conditions=[],
            now=T0,
            mono=0.0,
        )
    )
    assert batch.calls == [("delete_job", "bcv-ours")]


def test_polls_back_off_while_every_task_waits_and_quicken_once_one_runs() -> None:
    """A run whose task is queued behind a busy slot is listed ever less often (up to ~30 s),
    and at the busy interval again once the task runs; the object wakes for the next poll."""
    from batchcert.conditions import NODES_READY, ConditionUpdate
    from batchcert.reconcile.verification import PoolFacts, Verifier
    from batchcert.translate.verification_task import build_task_id

    class Nodes(FakeBatch):
        async def list_nodes(self, endpoint: str, pool_id: str) -> list[dict[str, Any]]:
            return [{"id": "n1", "affinityId": "TVM:n1", "state": "running"}]

    async def endpoint() -> str:
        return "acct"

    batch = Nodes()
    verifier = Verifier(batch, _Vault(), poll_seconds=1, retry_cap_seconds=60)  # type: ignore[arg-type]

    def turn(second: int) -> None:
        asyncio.run(
            verifier.step(
                pool=PoolFacts(key="ns/p", uid=UID, object_name="p", owned=True),
                spec=_spec(),
                endpoint=endpoint,
                cert_items=[{"thumbprint": NEW, "version": "v2"}],
                nodes_status={"total": 1},
                node_states={"n1": "running"},
                condition=ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "ok"),
                old_conditions=[],
                now=T0 + timedelta(seconds=second),
                mono=100.0 + second,
            )
        )

    turn(0)
    run = verifier._pools["ns/p"].run
    assert run is not None
    queued = {
        "id": build_task_id("n1", 1),
        "state": "active",
        "commandLine": run.command,
        "creationTime": T0.isoformat(),
    }
    batch.tasks = [queued]
    for second in range(1, 301):
        turn(second)
    waiting_polls = batch.calls.count(("list_tasks", run.job_id))
    assert 8 <= waiting_polls <= 20, waiting_polls  # every second would be 300
    wake = verifier.wake_at("ns/p")
    assert wake is not None and 100.0 + 300 < wake <= 100.0 + 300 + 30
    batch.tasks = [dict(queued, state="running")]
    for second in range(301, 361):
        turn(second)
    running_polls = batch.calls.count(("list_tasks", run.job_id)) - waiting_polls
    assert running_polls >= 25, running_polls  # about every second once it runs
