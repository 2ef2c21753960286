"""The one level-driven reconcile of a BatchCertPool: a turn as a pipeline of steps.

A turn (``docs/architecture.md``, "One BatchCertPool through one turn"): admit the spec
(``admission.py``: refusals and the first visit touch no Azure); the certificates' shared readings
gathered and the rotation window computed, once, into the ``Turn``; then the steps, one per
concern (``steps/``), each given the ``Turn``: access, pool (no pool created while a certificate
is known missing), certificates, nodes (with diagnosis), verification. Each returns its condition, its part of
status, its Events and when it next wants to run; the engine builds one status patch from them
(empty when nothing changed: no write) and the time of the object's next turn.

Invariants: status is a pure function of the spec, the previous status and the latest readings;
a rotation is counted from the durable status (so restarts neither lose nor double-count one);
nothing is written and no Event is emitted when nothing changed; no Azure write before kopf's
finalizer is on the object; Azure failures become conditions with backoff, never exceptions out
of here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from batchcert.adapters.arm import ArmAdapter
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.adapters.batchtasks import BatchTasksAdapter
from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.conditions import apply_conditions, apply_refusal
from batchcert.config import Config
from batchcert.models.spec import parse_spec
from batchcert.reasons import ReadyReason
from batchcert.reconcile.access import AccessGranter
from batchcert.reconcile.admission import Stop, admit
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.diagnose import NodeFailureDiagnoser
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import ObjectMemory, ObjectView
from batchcert.reconcile.outcome import DeleteOutcome, Event, Outcome
from batchcert.reconcile.pool import PoolReconciler
from batchcert.reconcile.settle import SettleMemory, decide, unposted
from batchcert.reconcile.steps.access import AccessStep
from batchcert.reconcile.steps.certificates import CertificatesStep, gather_certificates
from batchcert.reconcile.steps.nodes import NodesStep
from batchcert.reconcile.steps.pool import PoolStep
from batchcert.reconcile.steps.turn import RotationWindow, StepResult, Turn
from batchcert.reconcile.steps.verification import VerificationStep
from batchcert.reconcile.transitions import transition_events
from batchcert.reconcile.verification import Verifier
from batchcert.translate.merge_patch import build_merge_patch

STATUS_KEYS = ("observedGeneration", "conditions", "pool", "certificates", "nodes")
_WRITE_ORDER = ("observedGeneration", "pool", "certificates", "nodes", "conditions")


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
        facts = SharedFacts(arm, monotonic)
        self._pools = PoolReconciler(arm, facts)
        granter = AccessGranter(
            arm, facts, propagation=timedelta(seconds=config.role_propagation_seconds), now=now
        )
        self._access = AccessStep(granter, config)
        self._pool = PoolStep(self._pools, facts, config, monotonic)
        self._certificates = CertificatesStep(keyvault, watcher, config, monotonic)
        self._nodes = NodesStep(nodes, facts, NodeFailureDiagnoser(arm, facts, watcher), config)
        # Node verification (spec.verification): only with a Batch tasks adapter.
        self._verification = (
            VerificationStep(
                Verifier(
                    tasks,
                    keyvault,
                    poll_seconds=config.busy_interval_seconds,
                    retry_cap_seconds=config.drift_interval_seconds,
                ),
                facts,
                config,
            )
            if tasks is not None
            else None
        )
        self._watcher = watcher
        self._config = config
        self._now = now
        self._monotonic = monotonic

    def refuse(self, obj: ObjectView, reason: str, message: str) -> Outcome:
        """A turn refused before any Azure call (the tenancy policy): Ready=False with
        ``reason``, stamped for this generation; looked at again after the drift interval (a
        policy or ServiceAccount change is a restart or a spec/ServiceAccount edit away)."""
        old = _own_status(obj.status)
        conditions = list(old.get("conditions") or [])
        after = apply_refusal(
            conditions, reason, message, generation=obj.generation, now=self._now()
        )
        status = dict(old, observedGeneration=obj.generation, conditions=after)
        return self._stopped(old, Stop(status, min(60.0, self._config.drift_interval_seconds)))

    async def reconcile(self, obj: ObjectView, memory: ObjectMemory) -> Outcome:
        async with memory.lock:
            return await self._reconcile(obj, memory)

    async def _reconcile(self, obj: ObjectView, memory: ObjectMemory) -> Outcome:
        now, mono = self._now(), self._monotonic()
        old = _own_status(obj.status)
        admitted = admit(obj, old, self._config, now)
        if isinstance(admitted, Stop):
            return self._stopped(old, admitted)
        if not obj.has_finalizer:
            # No Azure work before kopf's finalizer guarantees the clean-up, and no status write
            # either (the first visit's Reconciling says it all): look again once it has landed.
            keys = tuple(c.key for c in admitted.certificates)
            return Outcome({}, [], self._config.tick_seconds, keys)
        # The certificates first: the pool step creates no pool while one is known missing.
        turn = await self._gather(Turn(obj, admitted, old, now, mono))
        results: list[StepResult] = [await self._access.run(turn, memory.access)]
        pool = await self._pool.run(turn, memory.pool, hold=memory.access.waiting)
        turn = replace(turn, pool=memory.pool.seen, pool_known=memory.pool.known)
        certificates = await self._certificates.run(turn, memory.certificates)
        nodes = await self._nodes.run(turn, memory.nodes)
        if self._verification is not None:
            nodes = await self._verification.run(turn, nodes, self._node_states(memory))
        self._nodes.heed(turn, nodes.condition)
        self._access.heed(turn, memory.access, nodes.condition)
        results += [pool, certificates, nodes]
        outcome, settle_at = self._compose(turn, results, memory.settle)
        waits = [
            StepResult(wake_at=self._access.wake_at(memory.access)),
            StepResult(wake_at=settle_at),
        ]
        outcome.next_check_in = self._next_check_in(turn, [*results, *waits])
        return outcome

    async def _gather(self, turn: Turn) -> Turn:
        """The facts the steps share, gathered once: the certificates (from the shared watcher)
        and the rotation window."""
        spec = turn.spec
        certificates = await gather_certificates(self._watcher, spec, turn.old, turn.now)
        window = RotationWindow.of(
            [s.item for s in certificates], spec.key_vault_extension.polling_interval_seconds
        )
        return replace(turn, certificates=certificates, window=window)

    @staticmethod
    def _node_states(memory: ObjectMemory) -> dict[str, str | None]:
        reading = memory.nodes.reading
        return {n.node_id: n.node_state for n in reading.nodes} if reading is not None else {}

    def _compose(
        self, turn: Turn, results: list[StepResult], settling: SettleMemory
    ) -> tuple[Outcome, float | None]:
        """One status from every step's part, the conditions set at once, one merge patch: sent
        now, or once it settles (``settle.py``; then also when it must go out)."""
        obj, old = turn.obj, turn.old
        new: dict[str, Any] = {"observedGeneration": obj.generation}
        for result in results:
            new.update(result.status)
        conditions = turn.conditions
        new["conditions"] = apply_conditions(
            conditions,
            [r.condition for r in results if r.condition is not None],
            generation=obj.generation,
            now=turn.now,
        )
        events: list[Event] = unposted(settling, [e for r in results for e in r.events])
        patch = build_merge_patch(old, _ordered(new))
        decision = decide(
            settling,
            old,
            new,
            changed=bool(patch),
            mono=turn.mono,
            settle_seconds=self._config.status_settle_seconds,
        )
        if decision.write:
            events += transition_events(conditions, new["conditions"])
        else:
            patch = {}  # the next turn recomputes it, whole, against the written status
        outcome = Outcome(patch, events, 0.0)
        outcome.certificates = tuple(c.key for c in turn.spec.certificates)
        return outcome, decision.wake_at

    def _next_check_in(self, turn: Turn, results: list[StepResult]) -> float:
        """Seconds until this object's earliest due work: the scheduler wakes it then, or sooner
        when its spec or a certificate it observes changes (certificates are kept fresh by the
        watcher, not by the objects that observe them)."""
        config = self._config
        due = [r.wake_at for r in results if r.wake_at is not None]
        soonest = min(due, default=float("inf")) - turn.mono
        # Time alone changes some verdicts (a certificate nearing expiry): look at least this often.
        resync = min(
            config.drift_interval_seconds,
            config.cert_interval_seconds,
            config.node_interval_seconds,
        )
        return max(0.0, min(soonest, resync))

    @staticmethod
    def _stopped(old: dict[str, Any], stop: Stop) -> Outcome:
        before = list(old.get("conditions") or [])
        after = stop.status.get("conditions") or []
        events = transition_events(before, after) if stop.post_transitions else []
        return Outcome(build_merge_patch(old, stop.status), events, stop.next_check_in)

    async def delete(self, obj: ObjectView, memory: ObjectMemory) -> DeleteOutcome:
        async with memory.lock:
            try:
                spec = parse_spec(obj.spec)
            except ValidationError:
                invalid = Event(
                    "Warning",
                    ReadyReason.INVALID_SPEC,
                    "spec is invalid: nothing in Azure can be identified",
                )
                return DeleteOutcome(True, [invalid])
            if self._verification is not None:
                await self._verification.delete(obj, spec)
            return await self._pools.delete(obj, spec)


def _ordered(new: dict[str, Any]) -> dict[str, Any]:
    """Status keys in the contract's order (the order a first write shows them in)."""
    return {k: new[k] for k in _WRITE_ORDER if k in new}
