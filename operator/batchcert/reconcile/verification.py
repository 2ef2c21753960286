"""Node verification, run: one Batch job per pool, one short task per node, results to status.

Each tick of a pool with ``spec.verification.enabled`` (after the node reading):
1. if tasks are outstanding and a poll is due, list the job's tasks (one request): a completed
   task is attributed to the node it *actually* ran on (``nodeInfo.nodeId``; affinity is soft),
   its ``stdout.txt`` read and the task deleted; a task still waiting for a slot after
   ``taskTimeout`` is deleted and its node stays unverified (busy);
2. start a task on every node that is due — no proof yet (new node), the last rotation's
   polling interval has passed since its proof, ``interval`` has passed, or its last proof was
   not current and a polling interval has passed — skipping nodes that already have a task of
   ours (never more than one per node) and nodes whose slots are full (busy: retried later);
3. compare what each node holds with the certificate's versions in Key Vault (listed once per
   current version, metadata only) and build ``status.nodes.verification`` and ``NodesReady``
   (see ``assess.verification``).

Invariants: never waits on Azure (tasks are polled on later ticks); never blocks or fails the
reconcile — a Batch or Key Vault failure is recorded in ``lastError`` and retried with backoff;
per-pool progress is in memory only (a restart lists the job and adopts or cleans what it finds).
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
    parse_task_output,
    verification_condition,
)
from batchcert.conditions import NODES_READY, ConditionUpdate, get_condition
from batchcert.errors import AzureCallError, backoff_delay, classify
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reconcile.outcome import Event
from batchcert.translate.durations import parse_duration_seconds
from batchcert.translate.verification_task import (
    TASK_ID_PREFIX,
    UnsafeCommandInputError,
    build_command_line,
    build_job_body,
    build_job_id,
    build_targets,
    build_task_body,
    build_task_id,
)

log = logging.getLogger(__name__)

_SCHEDULABLE = frozenset({"idle", "running"})


@dataclass
class _PoolProgress:
    job_id: str = ""
    job_ready: bool = False
    run: int = 0
    pending: dict[str, str | None] = field(default_factory=dict)  # task id → target node
    proofs: dict[str, NodeProof] = field(default_factory=dict)
    attempted: dict[str, datetime] = field(default_factory=dict)  # node → last task start/skip
    last_run_time: datetime | None = None
    next_poll: float = 0.0
    failures: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None
    adopted: bool = False  # the job's tasks were listed once (leftovers from a restart)


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
        self._poll = poll_seconds
        self._cap = retry_cap_seconds
        self._pools: dict[str, _PoolProgress] = {}
        self._versions: dict[tuple[str, str, str], dict[str, str]] = {}
        self._current: dict[tuple[str, str], str] = {}  # certificate key → current thumbprint

    def forget(self, key: str) -> None:
        self._pools.pop(key, None)

    async def step(
        self,
        *,
        key: str,
        object_name: str,
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
        if not spec.verification.enabled or nodes_status is None:
            self._pools.pop(key, None)
            return nodes_status, condition, []
        progress = self._pools.setdefault(key, _PoolProgress())
        progress.job_id = build_job_id(spec, object_name)
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in cert_items]
        settled_at = max((r + polling for r in rotations if r is not None), default=None)
        timeout = timedelta(seconds=parse_duration_seconds(spec.verification.task_timeout))
        try:
            targets = build_targets(spec)
        except UnsafeCommandInputError as exc:
            progress.last_error = f"verification refused: {exc}"
            targets = None
        if targets is not None and mono >= progress.next_attempt:
            try:
                pool_id = spec.resolved_pool_name(object_name)
                account = await endpoint()
                await self._poll_tasks(progress, account, len(targets), now, mono, timeout)
                await self._start_due(
                    progress, spec, account, pool_id, targets, node_states, settled_at, now, mono
                )
                progress.failures, progress.last_error = 0, None
            except AzureCallError as exc:
                verdict = classify(exc)
                progress.failures += 1
                progress.last_error = f"{verdict.reason}: {verdict.message}"[:300]
                progress.next_attempt = mono + backoff_delay(
                    progress.failures,
                    retry_after=verdict.retry_after,
                    base=self._poll,
                    cap=self._cap,
                )
                log.warning("verification of %s: %s", key, progress.last_error)
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
        )
        events: list[Event] = []
        before = get_condition(old_conditions, NODES_READY) or {}
        if (
            new_condition.reason == "RotationVerified"
            and before.get("reason") != "RotationVerified"
        ):
            events.append(Event("Normal", "NodesVerified", new_condition.message))
        return dict(nodes_status, verification=status), new_condition, events

    async def _poll_tasks(
        self,
        progress: _PoolProgress,
        account: str,
        certificates: int,
        now: datetime,
        mono: float,
        task_timeout: timedelta,
    ) -> None:
        if (not progress.pending and progress.adopted) or mono < progress.next_poll:
            return
        progress.next_poll = mono + self._poll
        if not progress.job_ready and not progress.pending:
            # After a restart: the job may hold our earlier tasks; look once.
            progress.adopted = True
        try:
            tasks = await self._tasks.list_tasks(account, progress.job_id)
        except AzureCallError as exc:
            if exc.code == "JobNotFound":
                progress.job_ready, progress.pending, progress.adopted = False, {}, True
                return
            raise
        progress.adopted = True
        progress.job_ready = True
        for task in tasks:
            task_id = str(task.get("id", ""))
            if not task_id.startswith(TASK_ID_PREFIX):
                continue
            state = str(task.get("state", "")).lower()
            target = progress.pending.get(task_id)
            if state == "completed":
                await self._take_result(progress, account, task, certificates, now)
                await self._tasks.delete_task(account, progress.job_id, task_id)
                progress.pending.pop(task_id, None)
            elif state == "active":
                created = parse_rfc3339(task.get("creationTime"))
                if created is not None and now - created > task_timeout:
                    # Never scheduled: the node stayed busy. Unverified, not a failure.
                    await self._tasks.delete_task(account, progress.job_id, task_id)
                    progress.pending.pop(task_id, None)
                else:
                    progress.pending.setdefault(task_id, target)
            else:
                progress.pending.setdefault(task_id, target)

    async def _take_result(
        self,
        progress: _PoolProgress,
        account: str,
        task: dict[str, Any],
        certificates: int,
        now: datetime,
    ) -> None:
        ran_on = (task.get("nodeInfo") or {}).get("nodeId")
        execution = task.get("executionInfo") or {}
        if not ran_on:
            return
        ended = parse_rfc3339(execution.get("endTime")) or now
        if execution.get("failureInfo") or execution.get("exitCode") not in (0, None):
            return  # timed out or failed: no proof (an earlier proof still stands)
        stdout = await self._tasks.read_stdout(account, progress.job_id, str(task["id"]))
        found = parse_task_output(stdout, certificates)
        if found is not None:
            progress.proofs[str(ran_on)] = NodeProof(str(ran_on), ended, found)

    async def _start_due(
        self,
        progress: _PoolProgress,
        spec: BatchCertPoolSpec,
        account: str,
        pool_id: str,
        targets: Any,
        node_states: dict[str, str | None],
        settled_at: datetime | None,
        now: datetime,
        mono: float,
    ) -> None:
        interval = timedelta(seconds=parse_duration_seconds(spec.verification.interval))
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        busy_nodes = {n for n in progress.pending.values() if n}
        due = []
        for node_id, state in node_states.items():
            if (state or "").lower() not in _SCHEDULABLE or node_id in busy_nodes:
                continue
            proof = progress.proofs.get(node_id)
            attempted = progress.attempted.get(node_id)
            rotated_since = (
                settled_at is not None and attempted is not None and (attempted < settled_at <= now)
            )
            recently = attempted is not None and now - attempted < min(polling, interval)
            if recently and not rotated_since:
                continue  # tried recently (busy, failed, or proven): give it time
            if self._is_due(proof, spec, settled_at, now, interval, polling):
                due.append(node_id)
        if not due:
            return
        nodes = {str(n.get("id")): n for n in await self._tasks.list_nodes(account, pool_id)}
        command = build_command_line(spec.resolved_os_type, targets)
        progress.run += 1
        for node_id in due:
            node = nodes.get(node_id)
            progress.attempted[node_id] = now
            if node is None or not node.get("affinityId"):
                continue
            if int(node.get("runningTaskSlotsCount") or 0) >= 1:
                continue  # busy: its slots are full; retried after a polling interval
            task_id = build_task_id(node_id, progress.run)
            body = build_task_body(
                task_id, command, str(node["affinityId"]), spec.verification.task_timeout
            )
            if not progress.job_ready:
                await self._tasks.create_job(account, build_job_body(progress.job_id, pool_id))
                progress.job_ready = True
            try:
                await self._tasks.add_task(account, progress.job_id, body)
            except AzureCallError as exc:
                if exc.code != "JobNotFound":
                    raise
                await self._tasks.create_job(account, build_job_body(progress.job_id, pool_id))
                await self._tasks.add_task(account, progress.job_id, body)
            progress.pending[task_id] = node_id
            progress.last_run_time = now
        progress.next_poll = min(progress.next_poll, mono + self._poll)

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
        spec: BatchCertPoolSpec,
        object_name: str,
        endpoint: Callable[[], Awaitable[str]],
    ) -> None:
        """Best effort, with the pool: the job goes when the resource goes."""
        self._pools.pop(key, None)
        if not spec.verification.enabled:
            return
        try:
            await self._tasks.begin_delete_job(await endpoint(), build_job_id(spec, object_name))
        except AzureCallError as exc:
            log.warning("deleting the verification job of %s: %s", key, exc.message)
