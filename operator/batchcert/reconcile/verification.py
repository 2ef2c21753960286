"""Node verification, per pool: when nodes are due, runs against Batch, results to status.

Each turn of a pool with ``spec.verification.enabled`` (after the node reading):
1. nothing at all for a pool this object does not own (``PoolNotOwned``): no job, no task, no
   read, no delete;
2. a run in progress (``reconcile.verification_run``) is polled when a poll is due — every busy
   interval while its tasks run, backing off (``errors.Backoff``, up to ``_WAITING_POLL_CAP``)
   while every task waits for a slot: its proofs are kept per node (the node the task
   *actually* ran on: affinity is soft), and the run's job is deleted once every task has an
   answer;
3. with no run in progress, a new run starts on every node that is due
   (``assess.verification.due_nodes``); busy nodes get their task too (the job's priority puts
   it first when a slot frees; it waits until the job's own limit, ``run_limit``);
4. what each node holds is compared with the certificate's versions in Key Vault (listed once
   per current version, metadata only) into ``status.nodes.verification`` and ``NodesReady``
   (see ``assess.verification``). Nodes that left the pool are forgotten, never counted.

The first turn for an object in this process (after a start or restart) rebuilds the per-node
proofs from the status the last process wrote (``assess.verification.restore_proofs``), so a
verified pool's status, condition and Events stay as they were and no run starts before one is
due; and it deletes this object's jobs left by an earlier process (found by the operator's own
id prefix, each checked as ours; never one that fails the check).

Invariants: never waits on Azure (tasks are polled on later ticks); never blocks or fails the
reconcile — a Batch or Key Vault failure is recorded in ``lastError`` and retried with backoff,
and nothing a task prints, Batch answers or a status holds raises out of here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.assess.verification import (
    CertificateKnowledge,
    NodeProof,
    RecordedCertificate,
    RunPlan,
    assess_proof,
    build_run_plan,
    build_verification_status,
    due_nodes,
    restore_proofs,
    verification_condition,
)
from batchcert.conditions import NODES_READY, ConditionUpdate, get_condition
from batchcert.errors import AzureCallError, Backoff, Classification, classify
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reasons import EventType, NodesReason
from batchcert.reconcile.outcome import Event
from batchcert.reconcile.verification_run import (
    ForeignJobError,
    RunContext,
    VerificationRun,
    add_task,
    poll_run,
    start_run,
    sweep_leftover_jobs,
)
from batchcert.translate.verification_task import (
    UnsafeCommandInputError,
    build_command_line,
    build_targets,
    build_task_body,
    build_task_id,
)

log = logging.getLogger(__name__)

# While every task of a run waits for a busy slot, polls back off up to this: a freed slot is
# still seen (and the proof read) well within a minute, and a busy pool costs a list request
# every half minute or so, not one every busy interval.
_WAITING_POLL_CAP = 30.0


@dataclass
class _PoolProgress:
    run: VerificationRun | None = None
    runs: int = 0
    proofs: dict[str, NodeProof] = field(default_factory=dict)
    attempted: dict[str, datetime] = field(default_factory=dict)  # node → last task start
    last_run_time: datetime | None = None
    poll: Backoff = field(default_factory=Backoff)  # the run's polls (slow while tasks wait)
    schedule: Backoff = field(default_factory=Backoff)  # Batch failures
    last_error: str | None = None
    swept: bool = False  # leftover jobs of an earlier process looked for


@dataclass(frozen=True)
class PoolFacts:
    """What the engine knows about the object and its pool (from its reading this turn)."""

    key: str
    uid: str
    object_name: str
    owned: bool  # the pool exists and carries this object's uid


class Verifier:
    def __init__(
        self,
        tasks: BatchTasksAdapter,
        keyvault: KeyVaultAdapter,
        *,
        poll_seconds: float,
        retry_cap_seconds: float,
    ) -> None:
        self._tasks = tasks
        self._keyvault = keyvault
        self._poll_seconds = poll_seconds
        self._cap = retry_cap_seconds
        self._pools: dict[str, _PoolProgress] = {}
        self._versions: dict[tuple[str, str, str], dict[str, str]] = {}

    def forget(self, key: str) -> None:
        self._pools.pop(key, None)

    def wake_at(self, key: str) -> float | None:
        """Monotonic seconds of the next poll of a run in progress (None: no run)."""
        progress = self._pools.get(key)
        if progress is None or progress.run is None:
            return None
        return max(progress.poll.next_at, progress.schedule.next_at)

    async def step(
        self,
        *,
        pool: PoolFacts,
        spec: BatchCertPoolSpec,
        endpoint: Callable[[], Awaitable[str]],
        cert_items: list[dict[str, Any]],
        nodes_status: dict[str, Any] | None,
        node_states: dict[str, str | None],
        condition: ConditionUpdate,
        old_conditions: list[dict[str, Any]],
        now: datetime,
        mono: float,
        recorded: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any] | None, ConditionUpdate, list[Event]]:
        """``recorded``: ``status.nodes.verification`` as the object holds it (the record a
        restarted process rebuilds its progress from)."""
        if not spec.verification.enabled or nodes_status is None or not pool.owned:
            # Never verify (nor touch jobs for) a pool this object does not own. Verification
            # turned off mid-run: that run's job (ours, created this run) goes now.
            if pool.owned:
                await self.delete_job(pool.key, endpoint)
            self._pools.pop(pool.key, None)
            return nodes_status, condition, []
        plan = build_run_plan(spec, cert_items)
        progress = self._pools.get(pool.key)
        if progress is None:
            progress = _restored(spec, plan, cert_items, recorded, node_states)
            if progress is None:  # the turn lacks the nodes or certificates the record
                # speaks of: keep the record as it is, and restore from it on a later turn
                return dict(nodes_status, verification=dict(recorded or {})), condition, []
            self._pools[pool.key] = progress
            log.info("verification of %s: %d proofs restored", pool.key, len(progress.proofs))
        for gone in set(progress.proofs) - set(node_states):
            progress.proofs.pop(gone)  # a node that left is neither stale nor unverified
            progress.attempted.pop(gone, None)
        await self._act(pool, spec, plan, progress, endpoint, node_states, now, mono)
        knowledge = await self._knowledge(spec, cert_items)
        verdicts = {
            node_id: assess_proof(progress.proofs.get(node_id), knowledge, plan.settled_at)
            for node_id in node_states
        }
        status = build_verification_status(list(node_states), verdicts, progress.last_run_time)
        if progress.last_error:
            status["lastError"] = progress.last_error
        new_condition = verification_condition(
            condition,
            status,
            rotated=plan.settled_at is not None,
            settled_at=plan.settled_at,
            task_timeout=plan.timeout,
            now=now,
            total=len(node_states),
            require_proof=spec.verification.require_proof,
        )
        events = _verified_event(old_conditions, new_condition)
        return dict(nodes_status, verification=status), new_condition, events

    async def _act(
        self,
        pool: PoolFacts,
        spec: BatchCertPoolSpec,
        plan: RunPlan,
        progress: _PoolProgress,
        endpoint: Callable[[], Awaitable[str]],
        node_states: dict[str, str | None],
        now: datetime,
        mono: float,
    ) -> None:
        """This turn's Batch work, when due: leftovers swept, the run polled, or one started."""
        try:
            targets = build_targets(spec)
        except UnsafeCommandInputError as exc:
            progress.last_error = f"verification refused: {exc}"
            return
        if not progress.schedule.is_due(mono):
            return
        try:
            ctx = RunContext(
                account=await endpoint(),
                uid=pool.uid,
                pool_id=spec.resolved_pool_name(pool.object_name),
                certificates=len(targets),
                task_timeout=plan.timeout,
                task_timeout_text=f"PT{int(plan.timeout.total_seconds())}S",
                node_ids=frozenset(node_states),
            )
            if not progress.swept:
                keep = progress.run.job_id if progress.run is not None else None
                left = sweep_leftover_jobs(
                    self._tasks, ctx.account, ctx.uid, ctx.pool_id, keep=keep
                )
                for job_id in await left:
                    log.info("verification of %s: deleted leftover job %s", pool.key, job_id)
                progress.swept = True
            await self._poll(progress, ctx, now, mono)
            if progress.run is None:
                command = build_command_line(spec.resolved_os_type, targets)
                due = due_nodes(progress.proofs, progress.attempted, plan, node_states, now)
                await self._start(progress, spec, ctx, command, due, now, mono)
            progress.schedule, progress.last_error = Backoff(), None
        except AzureCallError as exc:
            verdict = classify(exc)
            self._failed(pool.key, progress, f"{verdict.reason}: {verdict.message}", mono, verdict)
        except ForeignJobError as exc:
            progress.run = None  # never ours: nothing to poll or delete
            self._failed(pool.key, progress, f"VerificationJobNotOwned: {exc}", mono)
        except Exception as exc:  # a Batch answer must never fail the reconcile
            # Adapters turn every Azure failure into AzureCallError; anything else is an
            # answer no one foresaw (a shape, a value): no proof from it, retried calmly.
            log.debug("verification of %s", pool.key, exc_info=True)
            self._failed(pool.key, progress, f"UnexpectedAnswer: {exc!r}", mono)

    def _failed(
        self,
        key: str,
        progress: _PoolProgress,
        message: str,
        mono: float,
        verdict: Classification | None = None,
    ) -> None:
        progress.last_error = message[:300]
        progress.schedule = progress.schedule.after_failure(
            mono, base=self._poll_seconds, cap=self._cap, failure=verdict
        )
        log.warning("verification of %s: %s", key, progress.last_error)

    async def _poll(
        self, progress: _PoolProgress, ctx: RunContext, now: datetime, mono: float
    ) -> None:
        run = progress.run
        if run is None or not progress.poll.is_due(mono):
            return
        result = await poll_run(self._tasks, ctx, run, now)
        for proof in result.proofs:
            progress.proofs[proof.node_id] = proof
        if result.over:
            progress.run = None
        elif result.waiting:
            # Every task still queued for a busy slot: nothing to read soon, look less often
            # (the job's priority starts them the moment a slot frees).
            progress.poll = progress.poll.after_failure(
                mono, base=self._poll_seconds, cap=max(self._poll_seconds, _WAITING_POLL_CAP)
            )
        else:
            progress.poll = progress.poll.after_success(mono, self._poll_seconds)

    async def _start(
        self,
        progress: _PoolProgress,
        spec: BatchCertPoolSpec,
        ctx: RunContext,
        command: str,
        due: list[str],
        now: datetime,
        mono: float,
    ) -> None:
        if not due:
            return
        nodes = {
            str(n.get("id")): n for n in await self._tasks.list_nodes(ctx.account, ctx.pool_id)
        }
        affinity = {
            node_id: str(nodes[node_id]["affinityId"])
            for node_id in due
            if node_id in nodes and nodes[node_id].get("affinityId")
        }
        for node_id in due:
            progress.attempted[node_id] = now
        if not affinity:
            return
        run = await start_run(self._tasks, ctx, command, now)
        progress.run, progress.runs = run, progress.runs + 1
        progress.last_run_time = now
        for node_id, affinity_id in affinity.items():
            task_id = build_task_id(node_id, progress.runs)
            body = build_task_body(
                task_id, command, affinity_id, ctx.task_timeout_text, spec.resolved_os_type
            )
            if not await add_task(self._tasks, ctx, run, body):
                break  # the job is gone or going: what was added is polled, the rest waits
            run.pending[task_id] = node_id
        progress.poll = Backoff().after_success(mono, self._poll_seconds)

    async def _knowledge(
        self, spec: BatchCertPoolSpec, cert_items: list[dict[str, Any]]
    ) -> list[CertificateKnowledge]:
        knowledge = []
        for cert, item in zip(spec.certificates, cert_items, strict=False):
            thumb = str(item.get("thumbprint") or "").upper()
            version = str(item.get("version") or "")
            cache_key = (*cert.key, version)
            versions = self._versions.get(cache_key)
            if versions is None and version:
                try:
                    versions = await self._keyvault.list_version_thumbprints(
                        cert.vault, cert.cert_name
                    )
                    self._versions[cache_key] = versions
                except AzureCallError as exc:
                    log.warning("listing versions of %s: %s", cert.cert_name, exc.message)
            knowledge.append(
                CertificateKnowledge(cert.cert_name, thumb, dict(versions or {thumb: version}))
            )
        return knowledge

    async def delete_job(
        self,
        key: str,
        endpoint: Callable[[], Awaitable[str]],
        *,
        owner: tuple[str, str] | None = None,
    ) -> None:
        """Best effort, with the object (or verification turned off): the job of a run in
        progress, which this operator created; with ``owner`` (uid, pool id) also every job of
        this object an earlier process left (a restart mid-run), each checked as ours."""
        progress = self._pools.pop(key, None)
        run = progress.run if progress is not None else None
        if run is None and owner is None:
            return
        try:
            account = await endpoint()
            if run is not None:
                await self._tasks.begin_delete_job(account, run.job_id)
            if owner is not None:
                await sweep_leftover_jobs(self._tasks, account, *owner, keep=None)
        except AzureCallError as exc:
            log.warning("deleting the verification jobs of %s: %s", key, exc.message)


def _verified_event(old_conditions: list[dict[str, Any]], new: ConditionUpdate) -> list[Event]:
    """``NodesVerified`` when NodesReady turns ``RotationVerified`` (not on every turn, nor on a
    restart that finds it so already)."""
    before = get_condition(old_conditions, NODES_READY) or {}
    if new.reason != NodesReason.ROTATION_VERIFIED or before.get("reason") == new.reason:
        return []
    return [Event(EventType.NORMAL, "NodesVerified", new.message)]


def _restored(
    spec: BatchCertPoolSpec,
    plan: RunPlan,
    cert_items: list[dict[str, Any]],
    recorded: dict[str, Any] | None,
    node_states: dict[str, str | None],
) -> _PoolProgress | None:
    """The first turn in this process: progress as the status the last one wrote records it;
    None while the turn lacks what the record speaks of (the node list, a certificate)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    if not recorded.get("lastRunTime"):
        return _PoolProgress()  # nothing recorded: nothing to restore
    certificates = [
        RecordedCertificate(
            cert.cert_name,
            plan.current[i] if i < len(plan.current) else "",
            parse_rfc3339(item.get("lastRotationTime")),
        )
        for i, (cert, item) in enumerate(zip(spec.certificates, cert_items, strict=False))
    ]
    counts = [recorded.get(k) for k in ("current", "stale", "unverified")]
    nodes_recorded = sum(c for c in counts if isinstance(c, int) and not isinstance(c, bool))
    if len(certificates) != len(spec.certificates) or (nodes_recorded > 0 and not node_states):
        return None
    proofs, last = restore_proofs(recorded, list(node_states), certificates)
    attempted = dict.fromkeys(proofs, last) if last is not None else {}
    return _PoolProgress(proofs=proofs, attempted=attempted, last_run_time=last)
