"""The one level-driven reconcile of a BatchCertPool, run on every tick of its timer.

Each tick: parse the spec; reconcile the pool when that is due (spec changed, drift interval
passed, or a change is in flight); read certificates through the shared watcher (no Azure call
unless the cached reading expired); read node extensions when due; then build the whole status
from what was seen and return only what changed.

Invariants: status is a pure function of the spec, the previous status and the latest readings;
a rotation is counted from the durable status (so restarts neither lose nor double-count one);
nothing is written and no Event is emitted when nothing changed; Azure failures become conditions
with backoff, never exceptions out of here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from batchcert.adapters.arm import ArmAdapter
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.assess.certificates import (
    CertificatePolicy,
    CertificateVerdict,
    assess_reading,
    build_certificate_status,
    find_previous,
    is_cloud_vault,
    summarize_certificates,
)
from batchcert.assess.nodes import assess_node, build_nodes_status, summarize_nodes
from batchcert.assess.nodeselect import NodeMemo, choose_nodes_to_read
from batchcert.conditions import (
    COMPONENT_TYPES,
    NODES_READY,
    POOL_READY,
    READY,
    ConditionUpdate,
    apply_conditions,
    apply_refusal,
    get_condition,
)
from batchcert.config import Config
from batchcert.errors import AzureCallError, Backoff, classify
from batchcert.models.azure import CertificateReading, NodesReading
from batchcert.models.names import PAUSED_ANNOTATION
from batchcert.models.spec import BatchCertPoolSpec, parse_spec
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reasons import event_type_of, find_reason
from batchcert.reconcile.access import AccessGranter
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.diagnose import (
    DIAGNOSED_REASONS,
    SILENT_FAILURE_REASONS,
    NodeFailureDiagnoser,
)
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import CreateFailure, ObjectMemory, ObjectView
from batchcert.reconcile.outcome import DeleteOutcome, Event, Outcome
from batchcert.reconcile.pool import PoolReconciler
from batchcert.reconcile.scheduler import outside_place
from batchcert.reconcile.verification import PoolFacts, Verifier
from batchcert.translate.certificate_body import build_create_certificate_body
from batchcert.translate.merge_patch import build_merge_patch
from batchcert.translate.pool_body import owner_uid_of

STATUS_KEYS = ("observedGeneration", "conditions", "pool", "certificates", "nodes")


def _target_nodes(spec: BatchCertPoolSpec) -> int | None:
    fixed = spec.scale.fixed
    if fixed is None:
        return None
    return fixed.target_dedicated_nodes + fixed.target_low_priority_nodes


def _every_node_read_since(memory: ObjectMemory) -> datetime:
    """The oldest extension reading among the listed nodes (each node is read at its own pace)."""
    if memory.nodes is None:
        return datetime.min.replace(tzinfo=UTC)
    times = [
        memory.node_memos[r.node_id].read_at
        for r in memory.nodes.nodes
        if r.node_id in memory.node_memos
    ]
    return min(times, default=memory.nodes.read_at)


def _keep_check_time(
    status: dict[str, Any], old: dict[str, Any] | None, now: datetime, heartbeat: timedelta
) -> dict[str, Any]:
    """``lastCheckTime`` moves only when the node view changed or the last one is a heartbeat
    old: a pool whose nodes are unchanged writes no status between heartbeats."""
    if not old:
        return status
    last = parse_rfc3339(old.get("lastCheckTime"))
    if last is None or now - last >= heartbeat:
        return status
    same = all(old.get(k) == v for k, v in status.items() if k != "lastCheckTime")
    return dict(status, lastCheckTime=old["lastCheckTime"]) if same else status


def _own_status(status: dict[str, Any]) -> dict[str, Any]:
    """The contract part of status (kopf's own bookkeeping is left alone)."""
    return {k: v for k, v in status.items() if k in STATUS_KEYS}


class Reconciler:
    def __init__(
        self,
        *,
        arm: ArmAdapter,
        nodes: BatchNodesAdapter,
        keyvault: KeyVaultAdapter,
        watcher: CertificateWatcher,
        config: Config,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        tasks: BatchTasksAdapter | None = None,
    ) -> None:
        # Identities and account endpoints, shared by every object (single flight).
        self._facts = SharedFacts(arm, monotonic)
        self._pools = PoolReconciler(arm, self._facts)
        self._access = AccessGranter(arm, self._facts)
        # Node verification (spec.verification): only with a Batch tasks adapter.
        self._verifier = (
            Verifier(
                tasks,
                keyvault,
                poll_seconds=config.busy_interval_seconds,
                retry_cap_seconds=config.drift_interval_seconds,
            )
            if tasks is not None
            else None
        )
        self._nodes = nodes
        self._keyvault = keyvault
        self._watcher = watcher
        self._diagnoser = NodeFailureDiagnoser(arm, self._facts, watcher)
        self._config = config
        self._now = now
        self._monotonic = monotonic
        self._cert_policy = CertificatePolicy(
            expiring_soon=timedelta(days=config.expiry_warning_days),
            renewal_grace=timedelta(seconds=config.renewal_grace_seconds),
        )

    async def reconcile(self, obj: ObjectView, memory: ObjectMemory) -> Outcome:
        async with memory.lock:
            return await self._reconcile(obj, memory)

    async def _reconcile(self, obj: ObjectView, memory: ObjectMemory) -> Outcome:
        now, mono = self._now(), self._monotonic()
        old = _own_status(obj.status)
        conditions: list[dict[str, Any]] = list(old.get("conditions") or [])
        spec_or_refusal = self._parse_or_refuse(obj, old, conditions, now)
        if isinstance(spec_or_refusal, Outcome):
            return spec_or_refusal
        spec = spec_or_refusal

        events: list[Event] = []
        if obj.has_finalizer:  # no Azure write before kopf's finalizer guarantees the clean-up
            events += await self._ensure_access(obj, spec, memory, mono)
            events += await self._reconcile_pool_if_due(obj, spec, memory, mono)
        pool_condition = memory.pool_condition or ConditionUpdate(
            POOL_READY, None, "Reconciling", "not checked yet"
        )
        items, cert_condition, cert_events = await self._assess_certificates(
            obj, spec, memory, list(old.get("certificates") or []), now
        )
        events += cert_events
        nodes_status, nodes_condition = await self._assess_nodes(
            obj, spec, memory, items, mono, now, old.get("nodes")
        )
        if self._verifier is not None:
            nodes_status, nodes_condition, verify_events = await self._verify(
                obj, spec, memory, items, conditions, nodes_status, nodes_condition, now, mono
            )
            events += verify_events
        self._follow_node_evidence(spec, memory, nodes_condition, mono)

        new: dict[str, Any] = {"observedGeneration": obj.generation}
        pool_status = self._pool_status(obj, spec, memory, old)
        if pool_status is not None:
            new["pool"] = pool_status
        new["certificates"] = items
        if nodes_status is not None:
            new["nodes"] = nodes_status
        new["conditions"] = apply_conditions(
            conditions,
            [pool_condition, cert_condition, nodes_condition],
            generation=obj.generation,
            now=now,
        )
        events += self._transition_events(conditions, new["conditions"])
        # Without kopf's finalizer no Azure work is done: look again once it has had time to land.
        next_check_in = (
            self._next_check_in(spec, memory, items, mono, now)
            if obj.has_finalizer
            else self._config.tick_seconds
        )
        outcome = self._finish(old, new, events, next_check_in)
        outcome.certificates = tuple(c.key for c in spec.certificates)
        return outcome

    async def _verify(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        cert_items: list[dict[str, Any]],
        conditions: list[dict[str, Any]],
        nodes_status: dict[str, Any] | None,
        nodes_condition: ConditionUpdate,
        now: datetime,
        mono: float,
    ) -> tuple[dict[str, Any] | None, ConditionUpdate, list[Event]]:
        """Node verification (spec.verification): proof from the nodes refines NodesReady."""
        assert self._verifier is not None
        pool = PoolFacts(
            key=obj.key,
            uid=obj.uid,
            object_name=obj.name,
            # Verification only on a pool this object owns (never a PoolNotOwned one's).
            owned=memory.pool is not None and owner_uid_of(memory.pool.properties) == obj.uid,
        )
        return await self._verifier.step(
            pool=pool,
            spec=spec,
            endpoint=lambda: self._facts.account_endpoint(spec.account),
            cert_items=cert_items,
            nodes_status=nodes_status if memory.pool is not None else None,
            node_states={n.node_id: n.node_state for n in memory.nodes.nodes}
            if memory.nodes is not None
            else {},
            condition=nodes_condition,
            old_conditions=conditions,
            now=now,
            mono=mono,
        )

    def _follow_node_evidence(
        self,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        nodes_condition: ConditionUpdate,
        mono: float,
    ) -> None:
        """What the nodes prove wrong on the control plane is looked at again."""
        if nodes_condition.reason == "IdentityNotFound":
            self._facts.forget_identity(spec.identity.resource_id)
        if (
            nodes_condition.reason == "VaultAccessDenied"
            and spec.identity.grant_secrets_access is not None
            and not memory.access_recheck
        ):
            # Someone revoked the grant (or it never reached this vault): look again, calmly.
            memory.access_recheck = True
            memory.access_schedule = Backoff().after_success(
                mono, self._config.busy_interval_seconds
            )

    @staticmethod
    def _pool_status(
        obj: ObjectView, spec: BatchCertPoolSpec, memory: ObjectMemory, old: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``status.pool`` from the last sighting; the old one while no GET has answered yet."""
        pool = memory.pool
        if pool is not None:
            return {
                "name": spec.resolved_pool_name(obj.name),
                "resourceId": pool.resource_id,
                "provisioningState": pool.provisioning_state,
                "allocationState": pool.allocation_state,
                "currentDedicatedNodes": pool.current_dedicated_nodes,
                "currentLowPriorityNodes": pool.current_low_priority_nodes,
            }
        if "pool" in old and not memory.pool_known:
            return dict(old["pool"])
        return None

    def _next_check_in(
        self,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        cert_items: list[dict[str, Any]],
        mono: float,
        now: datetime,
    ) -> float:
        """Seconds until this object's earliest due work: the scheduler wakes it then, or sooner
        when its spec or a certificate it observes changes (certificates are kept fresh by the
        watcher, not by the objects that observe them)."""
        config = self._config
        due = [memory.pool_schedule.next_at]
        if memory.pool is not None:
            due.append(memory.nodes_schedule.next_at)
        if memory.access_recheck:
            due.append(memory.access_schedule.next_at)
        if memory.diagnosis is not None:  # the control-plane check of the nodes' fetch chain
            due.append(memory.diagnosis_schedule.next_at)
        due += [f.schedule.next_at for f in memory.certificate_create_failures.values()]
        if memory.certificates_creating:
            due.append(mono + config.busy_interval_seconds)
        soonest = min(due) - mono
        # The rotation window closing makes the node reading stale (as ``_assess_nodes`` decides).
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in cert_items]
        settles_at = max((r + polling for r in rotations if r is not None), default=None)
        if settles_at is not None and now < settles_at:
            soonest = min(soonest, (settles_at - now).total_seconds())
        if spec.verification.enabled:
            # Verification keeps per-node schedules of its own: poll as its tasks are polled.
            soonest = min(soonest, config.busy_interval_seconds)
        # Time alone changes some verdicts (a certificate nearing expiry): look at least this often.
        resync = min(
            config.drift_interval_seconds,
            config.cert_interval_seconds,
            config.node_interval_seconds,
        )
        return max(0.0, min(soonest, resync))

    def _parse_or_refuse(
        self,
        obj: ObjectView,
        old: dict[str, Any],
        conditions: list[dict[str, Any]],
        now: datetime,
    ) -> BatchCertPoolSpec | Outcome:
        """The parsed spec, or the outcome of a tick that must not touch Azure at all."""

        def refuse(reason: str, message: str, next_in: float) -> Outcome:
            # A verdict on this generation like any other: stamped, so no tool waits for it.
            after = apply_refusal(conditions, reason, message, generation=obj.generation, now=now)
            refused = dict(old, observedGeneration=obj.generation, conditions=after)
            return self._finish(old, refused, self._transition_events(conditions, after), next_in)

        try:
            spec = parse_spec(obj.spec)
        except ValidationError as exc:
            # Admission should have refused this; say what is wrong rather than guess.
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            return refuse("InvalidSpec", f"spec is invalid: {problem}", 60.0)
        suffix = self._config.cloud.keyvault_dns_suffix
        foreign = sorted(
            {c.vault for c in spec.certificates if not is_cloud_vault(c.vault, suffix)}
        )
        if foreign:
            return refuse(
                "VaultNotAllowed",
                f"{', '.join(foreign)} is not a Key Vault of this cloud (*{suffix}): the operator "
                "sends no credential there and creates no pool that would",
                60.0,
            )
        if obj.paused:
            return refuse(
                "ReconcilePaused",
                f"reconciliation is paused by the {PAUSED_ANNOTATION} annotation",
                self._config.tick_seconds,
            )
        if not conditions:
            # First visit: say so at once (kubectl shows Reconciling), then do the Azure work.
            first = [
                ConditionUpdate(t, None, "Reconciling", "first reconcile in progress")
                for t in COMPONENT_TYPES
            ]
            initial = dict(
                old,
                observedGeneration=obj.generation,
                conditions=apply_conditions([], first, generation=obj.generation, now=now),
            )
            return self._finish(old, initial, [], 0.0)
        return spec

    async def _ensure_access(
        self, obj: ObjectView, spec: BatchCertPoolSpec, memory: ObjectMemory, mono: float
    ) -> list[Event]:
        """Vault access for the pool's identity: only when asked for, and only when due."""
        if spec.identity.grant_secrets_access is None or not (
            memory.access_generation != obj.generation
            or (memory.access_recheck and memory.access_schedule.is_due(mono))
        ):
            return []
        granted, events = await self._access.ensure(spec)
        memory.access_generation = obj.generation
        memory.access_recheck = not granted
        memory.access_schedule = (
            Backoff()
            if granted
            else memory.access_schedule.after_failure(
                mono,
                base=self._config.busy_interval_seconds,
                cap=self._config.drift_interval_seconds,
            )
        )
        return events

    async def _reconcile_pool_if_due(
        self, obj: ObjectView, spec: BatchCertPoolSpec, memory: ObjectMemory, mono: float
    ) -> list[Event]:
        if memory.generation_seen == obj.generation and not memory.pool_schedule.is_due(mono):
            return []
        # Once only: if that PUT fails in a way other than 412 (a 409 from real ARM, say), the
        # next attempt reads first, so a pool that exists is judged, never PUT at for ever.
        never_seen = not (memory.pool_known or memory.create_tried or "pool" in obj.status)
        result = await self._pools.reconcile(obj, spec, never_seen=never_seen)
        if never_seen and not result.seen.known:
            memory.create_tried = True
        if result.seen.known:
            seen = result.seen.pool
            memory.pool, memory.pool_known = (seen.kept() if seen else None), True
        schedule = memory.pool_schedule
        # Counted from the answer, not from the turn's start: the SDK's own retries of a 429 can
        # take several Retry-Afters, and "never sooner than Retry-After" means after the last.
        answered = self._monotonic()
        if result.busy:  # Azure is changing the pool for us: follow it closely
            memory.pool_schedule = schedule.after_success(
                answered, self._config.busy_interval_seconds
            )
        elif result.condition.status is True:
            memory.pool_schedule = schedule.after_success(
                answered, self._config.drift_interval_seconds
            )
        else:
            # A failure, or a state only a user can fix: back off as its verdict says (never
            # sooner than Retry-After), from the busy interval up to the drift interval.
            self._facts.forget_identity(spec.identity.resource_id)
            memory.pool_schedule = schedule.after_failure(
                answered,
                base=self._config.busy_interval_seconds,
                cap=self._config.drift_interval_seconds,
                failure=result.failure,
            )
        memory.generation_seen = obj.generation
        memory.pool_condition = result.condition
        return result.events

    async def _assess_certificates(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        previous_items: list[dict[str, Any]],
        now: datetime,
    ) -> tuple[list[dict[str, Any]], ConditionUpdate, list[Event]]:
        """Readings from the shared cache (Azure only when one expired) → items and condition."""
        readings = await asyncio.gather(*(self._watcher.reading(c) for c in spec.certificates))
        events = await self._create_missing(spec, readings, memory) if obj.has_finalizer else []
        items: list[dict[str, Any]] = []
        verdicts = []
        for cert, reading in zip(spec.certificates, readings, strict=True):
            item, rotated_to = build_certificate_status(
                cert, reading, find_previous(previous_items, cert), now
            )
            items.append(item)
            verdict = assess_reading(cert, reading, now, self._cert_policy)
            create_failure = memory.certificate_create_failures.get(cert.key)
            if create_failure is not None and not verdict.ok:
                verdict = CertificateVerdict(False, create_failure.reason, create_failure.message)
            if cert.key in memory.certificates_creating:
                if verdict.ok:
                    memory.certificates_creating.discard(cert.key)
                else:
                    verdict = CertificateVerdict(
                        False,
                        "CertificateCreating",
                        f"certificate {cert.cert_name} in {cert.vault} is being created",
                    )
            verdicts.append(verdict)
            if rotated_to is not None:
                events.append(
                    Event(
                        "Normal",
                        "CertificateRotated",
                        f"certificate {cert.cert_name} in {cert.vault} rotated to version "
                        f"{rotated_to.version} (thumbprint {rotated_to.thumbprint}); nodes "
                        f"pick it up within {spec.key_vault_extension.polling_interval_seconds}s",
                    )
                )
                # No node pass now: nodes fetch only at their polling interval, NodesReady says
                # RotationPropagating meanwhile, and every node is read once the window closes.
        return items, summarize_certificates(verdicts), events

    async def _create_missing(
        self,
        spec: BatchCertPoolSpec,
        readings: list[CertificateReading],
        memory: ObjectMemory,
    ) -> list[Event]:
        """``createIfMissing``: start creating absent certificates, once; never wait for it.

        A refused create (no ``certificates/create`` permission, say) is retried with backoff and
        its reason replaces CertificateNotFound in the condition, so the user sees what to fix.
        """
        events: list[Event] = []
        for cert, reading in zip(spec.certificates, readings, strict=True):
            wanted = cert.create_if_missing
            if wanted is None or reading.error_status != 404:
                continue
            if cert.key in memory.certificates_creating:
                continue
            failed = memory.certificate_create_failures.get(cert.key)
            if failed is not None and not failed.schedule.is_due(self._monotonic()):
                continue  # backing off after a refused create
            label = f"certificate {cert.cert_name} in {cert.vault}"
            try:
                await self._keyvault.begin_create_certificate(
                    cert.vault, cert.cert_name, build_create_certificate_body(wanted)
                )
            except AzureCallError as exc:
                if exc.status != 409:  # 409: another pool sharing it is creating it already
                    verdict = classify(exc)
                    message = f"creating {label} failed: {verdict.message}"
                    schedule = (failed.schedule if failed else Backoff()).after_failure(
                        self._monotonic(),
                        base=self._config.busy_interval_seconds,
                        cap=self._config.drift_interval_seconds,
                        failure=verdict,
                    )
                    memory.certificate_create_failures[cert.key] = CreateFailure(
                        schedule, verdict.reason, message
                    )
                    if failed is None:
                        events.append(Event("Warning", "CertificateCreateFailed", message))
                    continue
            else:
                events.append(
                    Event(
                        "Normal",
                        "CertificateCreated",
                        f"creating {label}: self-signed {wanted.subject}, "
                        f"AutoRenew at {wanted.renew_at_lifetime_percentage}% of its lifetime",
                    )
                )
            memory.certificate_create_failures.pop(cert.key, None)
            memory.certificates_creating.add(cert.key)
            self._watcher.invalidate(cert)
        return events

    async def _assess_nodes(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        cert_items: list[dict[str, Any]],
        mono: float,
        now: datetime,
        old_nodes: dict[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, ConditionUpdate]:
        if memory.pool is None:
            return old_nodes if not memory.pool_known else None, ConditionUpdate(
                NODES_READY, False, "PoolNotReady", "the pool does not exist yet"
            )
        polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
        rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in cert_items]
        settles_at = max((r + polling for r in rotations if r is not None), default=None)
        stale = (
            memory.nodes is not None
            and settles_at is not None
            and now >= settles_at > _every_node_read_since(memory)
        )
        if memory.nodes is None or memory.nodes_schedule.is_due(mono) or stale:
            try:
                endpoint = await self._facts.account_endpoint(spec.account)
                async with outside_place():  # bounded per Batch account, and long at 1000 nodes
                    await self._pass_nodes(obj, spec, memory, endpoint, now, settles_at)
            except AzureCallError as exc:
                verdict = classify(exc)
                memory.nodes_schedule = memory.nodes_schedule.after_failure(
                    mono,
                    base=self._config.busy_interval_seconds,
                    cap=self._config.node_interval_seconds,
                    failure=verdict,
                )
                return old_nodes, ConditionUpdate(
                    NODES_READY, False, verdict.reason, verdict.message
                )
        assert memory.nodes is not None
        status, verdicts = build_nodes_status(memory.nodes, (old_nodes or {}).get("failures"))
        status = _keep_check_time(
            status, old_nodes, now, timedelta(seconds=self._config.node_recheck_seconds)
        )
        read_since = _every_node_read_since(memory)
        pending = settles_at if settles_at and read_since < settles_at else None
        condition = summarize_nodes(
            verdicts, target_nodes=_target_nodes(spec), rotation_pending_until=pending
        )
        condition = await self._diagnose(spec, memory, condition, mono, now)
        if memory.nodes_schedule.is_due(mono):
            unhealthy = sum(1 for v in verdicts if v.state != "ready")
            if unhealthy == 0 and condition.reason != "NodesAllocating":
                # Healthy nodes (whatever else NodesReady waits for: a rotation's window, a
                # control-plane diagnosis) change nothing a closer look would show.
                interval = self._config.node_interval_seconds
            else:
                # Unhealthy nodes cost one extension read each, every pass: while they come up,
                # look every busy interval per 50 of them, up to the healthy interval, so 1,000
                # nodes coming up do not cost 1,000 calls every 15 s.
                per_size = self._config.busy_interval_seconds * max(1.0, unhealthy / 50)
                interval = min(self._config.node_interval_seconds, per_size)
            memory.nodes_schedule = Backoff().after_success(mono, interval)
        return status, condition

    async def _pass_nodes(
        self,
        obj: ObjectView,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        endpoint: str,
        now: datetime,
        settles_at: datetime | None,
    ) -> None:
        """One node pass: list the nodes, read the extensions ``choose_nodes_to_read`` names,
        carry every other node's report over from its last reading."""
        pool_id, extension = spec.resolved_pool_name(obj.name), spec.key_vault_extension.name
        listed = await self._nodes.list_nodes(endpoint, pool_id)
        previous = {r.node_id: r for r in memory.nodes.nodes} if memory.nodes else {}
        memos = {k: m for k, m in memory.node_memos.items() if k in previous}
        chosen = choose_nodes_to_read(
            listed,
            memos,
            now=now,
            recheck=timedelta(seconds=self._config.node_recheck_seconds),
            last_pass_at=memory.nodes_pass_at,
            settled_at=settles_at if settles_at is not None and settles_at <= now else None,
        )
        to_read = [n for n in listed if n.node_id in chosen or n.node_id not in previous]
        fresh = {
            r.node_id: r
            for r in await self._nodes.read_extensions(endpoint, pool_id, to_read, extension)
        }
        new_memos: dict[str, NodeMemo] = {}
        for node in listed:
            report = fresh.get(node.node_id)
            if report is None:
                new_memos[node.node_id] = memos[node.node_id]
            else:
                healthy = assess_node(report).state == "ready"
                new_memos[node.node_id] = NodeMemo(node.state, now, healthy)
        memory.nodes = NodesReading(
            read_at=now,
            nodes=tuple(fresh.get(n.node_id) or previous[n.node_id] for n in listed),
        )
        memory.node_memos, memory.nodes_pass_at = new_memos, now

    async def _diagnose(
        self,
        spec: BatchCertPoolSpec,
        memory: ObjectMemory,
        condition: ConditionUpdate,
        mono: float,
        now: datetime,
    ) -> ConditionUpdate:
        """Nodes fail without saying why: name the cause the control plane proves, if any.

        While nodes look healthy the same chain is checked once per drift interval: a fetch that
        fails after a first success shows nothing on a real node (the extension keeps serving
        what it has), so revoked access would otherwise surface only as a rotation that never
        arrives.
        """
        failing = condition.reason in DIAGNOSED_REASONS
        if memory.pool is None or not (failing or condition.status is True):
            memory.diagnosis, memory.diagnosis_schedule = None, Backoff()
            return condition
        if memory.diagnosis is None or memory.diagnosis_schedule.is_due(mono):
            every = min(
                self._config.busy_interval_seconds * 4
                if failing
                else self._config.drift_interval_seconds,
                self._config.drift_interval_seconds,
            )
            # Shared vault answers up to half the cadence old: a revoked grant is proven within
            # 1.5 cadences (1.5 drift intervals while healthy), at 2 reads per vault per cadence
            # however many pools share it.
            memory.diagnosis = await self._diagnoser.diagnose(
                spec, memory.pool, now, max_age=every / 2
            )
            memory.diagnosis_schedule = Backoff().after_success(mono, every)
        diagnosis = memory.diagnosis
        if failing:
            counted = condition.message.split(";", 1)[0]  # "n/m nodes failed"
            return ConditionUpdate(
                NODES_READY, False, diagnosis.reason, f"{counted}; {diagnosis.message}"
            )
        if diagnosis.reason not in SILENT_FAILURE_REASONS:
            return condition
        return ConditionUpdate(
            NODES_READY,
            False,
            diagnosis.reason,
            "the nodes still report the extension healthy (a failed fetch after a first "
            "success is invisible on a node), but they will miss every rotation: "
            + diagnosis.message.removeprefix("nodes cannot fetch certificates: "),
        )

    @staticmethod
    def _transition_events(
        before: list[dict[str, Any]], after: list[dict[str, Any]]
    ) -> list[Event]:
        """An Event when a condition's reason changes, of the type the reason registry names.

        Ready's own Events: "Ready" when it turns True, and the verdicts on the whole object
        (refusals); a component reason copied onto Ready has its Event from the component.
        Reconciling and Stalled only restate the others, so they post nothing.
        """
        events: list[Event] = []
        for condition in after:
            type_, reason = condition["type"], condition["reason"]
            previous = get_condition(before, type_)
            if previous is not None and previous.get("reason") == reason:
                continue
            if type_ == READY:
                entry = find_reason(READY, reason)
                if entry is None or entry.event is None:
                    continue
            elif type_ not in COMPONENT_TYPES or condition["status"] == "True":
                continue
            kind = event_type_of(type_, reason)
            if kind is not None:
                events.append(Event(kind.value, reason, condition["message"]))
        return events

    @staticmethod
    def _finish(
        old: dict[str, Any], new: dict[str, Any], events: list[Event], next_check_in: float
    ) -> Outcome:
        return Outcome(build_merge_patch(old, new), events, next_check_in)

    async def delete(self, obj: ObjectView, memory: ObjectMemory) -> DeleteOutcome:
        async with memory.lock:
            try:
                spec = parse_spec(obj.spec)
            except ValidationError:
                return DeleteOutcome(
                    True,
                    [
                        Event(
                            "Warning",
                            "InvalidSpec",
                            "spec is invalid: nothing in Azure can be identified",
                        )
                    ],
                )
            if self._verifier is not None and spec.deletion_policy.value == "Delete":
                await self._verifier.delete_job(
                    obj.key, lambda: self._facts.account_endpoint(spec.account)
                )
            return await self._pools.delete(obj, spec)
