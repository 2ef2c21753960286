"""Node verification, per pool: when nodes are due, runs against Batch, results to status.

Each tick of a pool with ``spec.verification.enabled`` (after the node reading):
1. nothing at all for a pool this object does not own (``PoolNotOwned``): no job, no task, no
   read, no delete;
2. a run in progress (``reconcile.verification_run``) is polled when a poll is due: its proofs
   are kept per node (the node the task *actually* ran on: affinity is soft), and the run's job
   is deleted once every task has an answer;
3. with no run in progress, a new run starts on every node that is due — no proof yet (new
   node), the last rotation's polling interval has passed since its proof, ``interval`` has
   passed, or its last proof was not current and a polling interval has passed — unless the
   node was tried within ``min(polling interval, interval)``; busy nodes get their task too
   (the job's priority puts it first when a slot frees; a task is given up 2 x ``taskTimeout``
   + 1 minute after it was added, waiting or running);
4. what each node holds is compared with the certificate's versions in Key Vault (listed once
   per current version, metadata only) into ``status.nodes.verification`` and ``NodesReady``
   (see ``assess.verification``). Nodes that left the pool are forgotten, never counted.

Invariants: never waits on Azure (tasks are polled on later ticks); never blocks or fails the
reconcile — a Batch or Key Vault failure is recorded in ``lastError`` and retried with backoff,
and nothing a task prints or Batch answers raises out of here; per-pool progress is in memory
only (after a restart an unfinished run's job ends by its own ``maxWallClockTime``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.assess.verification import (
    CertificateKnowledge,
    NodeProof,
    assess_proof,
    build_verification_status,
    verification_condition,
)
from batchcert.conditions import NODES_READY, ConditionUpdate, get_condition
from batchcert.errors import AzureCallError, Backoff, Classification, classify
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reasons import NodesReason
from batchcert.reconcile.outcome import Event
from batchcert.reconcile.verification_run import (
    ForeignJobError,
    RunContext,
    VerificationRun,
    add_task,
    poll_run,
    start_run,
)
from batchcert.translate.verification_task import (
    UnsafeCommandInputError,
    build_command_line,
    build_targets,
    build_task_body,
    build_task_id,
)

log = logging.getLogger(__name__)

_SCHEDULABLE = frozenset({"idle", "running"})


@dataclass
class _PoolProgress:
    run: VerificationRun | None = None
    runs: int = 0
    proofs: dict[str, NodeProof] = field(default_factory=dict)
    attempted: dict[str, datetime] = field(default_factory=dict)  # node → last task start
    last_run_time: datetime | None = None
    next_poll: float = 0.0
    schedule: Backoff = field(default_factory=Backoff)
    last_error: str | None = None


@dataclass(frozen=True)
class PoolFacts:
    """What the engine knows about the object and its pool (from its reading this tick)."""

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
        self._current: dict[tuple[str, str], str] = {}  # certificate key → current thumbprint

    def forget(self, key: str) -> None:
        self._pools.pop(key, None)

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
    ) -> tuple[dict[str, Any] | None, ConditionUpdate, list[Event]]:
        if not spec.verification.enabled or nodes_status is None or not pool.owned:
            # Never verify (nor touch jobs for) a pool this object does not own. Verification
            # turned off mid-run: that run's job (ours, created this run) goes now.
            if pool.owned:
                await self.delete_job(pool.key, endpoint)
            self._pools.pop(pool.key, None)
            return nodes_status, condition, []
        progress = self._pools.setdefault(pool.key, _PoolProgress())
        for gone in set(progress.proofs) - set(node_states):
            progress.proofs.pop(gone)  # a node that left is neither stale nor unverified
            progress.attempted.pop(gone, None)
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in cert_items]
        settled_at = max((r + polling for r in rotations if r is not None), default=None)
        timeout = timedelta(seconds=spec.verification.task_timeout_seconds)
        try:
            targets = build_targets(spec)
        except UnsafeCommandInputError as exc:
            progress.last_error = f"verification refused: {exc}"
            targets = None
        if targets is not None and progress.schedule.is_due(mono):
            try:
                ctx = RunContext(
                    account=await endpoint(),
                    uid=pool.uid,
                    pool_id=spec.resolved_pool_name(pool.object_name),
                    certificates=len(targets),
                    task_timeout=timeout,
                    task_timeout_text=f"PT{int(timeout.total_seconds())}S",
                    node_ids=frozenset(node_states),
                )
                await self._poll(progress, ctx, now, mono)
                if progress.run is None:
                    command = build_command_line(spec.resolved_os_type, targets)
                    due = self._due_nodes(progress, spec, node_states, settled_at, now)
                    await self._start(progress, spec, ctx, command, due, now, mono)
                progress.schedule, progress.last_error = Backoff(), None
            except AzureCallError as exc:
                verdict = classify(exc)
                self._failed(
                    pool.key, progress, f"{verdict.reason}: {verdict.message}", mono, verdict
                )
            except ForeignJobError as exc:
                progress.run = None  # never ours: nothing to poll or delete
                self._failed(pool.key, progress, f"VerificationJobNotOwned: {exc}", mono)
            except Exception as exc:  # a Batch answer must never fail the reconcile
                # Adapters turn every Azure failure into AzureCallError; anything else is an
                # answer no one foresaw (a shape, a value): no proof from it, retried calmly.
                log.debug("verification of %s", pool.key, exc_info=True)
                self._failed(pool.key, progress, f"UnexpectedAnswer: {exc!r}", mono)
        knowledge = await self._knowledge(spec, cert_items)
        verdicts = {
            node_id: assess_proof(progress.proofs.get(node_id), knowledge, settled_at)
            for node_id in node_states
        }
        status = build_verification_status(list(node_states), verdicts, progress.last_run_time)
        if progress.last_error:
            status["lastError"] = progress.last_error
        new_condition = verification_condition(
            condition,
            status,
            rotated=settled_at is not None,
            settled_at=settled_at,
            task_timeout=timeout,
            now=now,
            total=len(node_states),
            require_proof=spec.verification.require_proof,
        )
        events: list[Event] = []
        before = get_condition(old_conditions, NODES_READY) or {}
        if (
            new_condition.reason == NodesReason.ROTATION_VERIFIED
            and before.get("reason") != NodesReason.ROTATION_VERIFIED
        ):
            events.append(Event("Normal", "NodesVerified", new_condition.message))
        return dict(nodes_status, verification=status), new_condition, events

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
        if run is None or mono < progress.next_poll:
            return
        progress.next_poll = mono + self._poll_seconds
        proofs, over = await poll_run(self._tasks, ctx, run, now)
        for proof in proofs:
            progress.proofs[proof.node_id] = proof
        if over:
            progress.run = None

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
        progress.next_poll = mono + self._poll_seconds

    def _due_nodes(
        self,
        progress: _PoolProgress,
        spec: BatchCertPoolSpec,
        node_states: dict[str, str | None],
        settled_at: datetime | None,
        now: datetime,
    ) -> list[str]:
        interval = timedelta(seconds=spec.verification.interval_seconds)
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        due = []
        for node_id, state in node_states.items():
            if (state or "").lower() not in _SCHEDULABLE:
                continue
            attempted = progress.attempted.get(node_id)
            rotated_since = (
                settled_at is not None and attempted is not None and (attempted < settled_at <= now)
            )
            recently = attempted is not None and now - attempted < min(polling, interval)
            if recently and not rotated_since:
                continue  # tried recently (busy, failed, or proven): give it time
            if self._is_due(progress.proofs.get(node_id), spec, settled_at, now, interval, polling):
                due.append(node_id)
        return due

    def _is_due(
        self,
        proof: NodeProof | None,
        spec: BatchCertPoolSpec,
        settled_at: datetime | None,
        now: datetime,
        interval: timedelta,
        polling: timedelta,
    ) -> bool:
        if proof is None:
            return True  # a new node (or never proven)
        if settled_at is not None and proof.at < settled_at <= now:
            return True  # a rotation settled since its proof
        if now - proof.at >= interval:
            return True
        # Not current last time: look again once its extension has polled again.
        return now - proof.at >= polling and not self._proof_current(proof, spec)

    def _proof_current(self, proof: NodeProof, spec: BatchCertPoolSpec) -> bool:
        # Cheap re-check without Key Vault: the proof's thumbprints against the cached
        # current ones (unknown → not current, so the node is looked at again).
        for index, cert in enumerate(spec.certificates):
            thumb = self._current.get(cert.key)
            if proof.found is None or thumb is None or thumb not in proof.found[index]:
                return False
        return True

    async def _knowledge(
        self, spec: BatchCertPoolSpec, cert_items: list[dict[str, Any]]
    ) -> list[CertificateKnowledge]:
        knowledge = []
        for cert, item in zip(spec.certificates, cert_items, strict=False):
            thumb = str(item.get("thumbprint") or "").upper()
            version = str(item.get("version") or "")
            self._current[cert.key] = thumb
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
    ) -> None:
        """Best effort, with the object: the job of a run in progress, which this operator
        created (a run only exists once its job was created or proven ours)."""
        progress = self._pools.pop(key, None)
        if progress is None or progress.run is None:
            return
        try:
            await self._tasks.begin_delete_job(await endpoint(), progress.run.job_id)
        except AzureCallError as exc:
            log.warning("deleting the verification job of %s: %s", key, exc.message)
