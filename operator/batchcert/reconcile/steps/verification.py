"""Step 5, verification (``spec.verification``): proof from the nodes refines ``NodesReady``.

The adaptation of ``reconcile/verification.py``'s ``Verifier`` (issue 21 owns it) to a step, kept
here so it is easy to re-port: its public ``step`` and ``delete_job``, nothing else. It keeps its
own per-object progress (its memory slice lives inside the ``Verifier``).

Invariants: without a Batch tasks adapter, or with verification off, NodesReady is the nodes
step's; while enabled, the object wakes when the verifier's run is next polled (slowly while its
tasks wait for a slot), and at least every busy interval otherwise (a node becoming due). The
verifier is given the object's recorded ``status.nodes.verification``: after a restart it
rebuilds its progress from it.
"""

from __future__ import annotations

from batchcert.config import Config
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.steps.turn import StepResult, Turn
from batchcert.reconcile.verification import PoolFacts, Verifier
from batchcert.translate.pool_body import owner_uid_of


class VerificationStep:
    def __init__(self, verifier: Verifier, facts: SharedFacts, config: Config) -> None:
        self._verifier = verifier
        self._facts = facts
        self._config = config

    async def run(
        self, turn: Turn, nodes: StepResult, node_states: dict[str, str | None]
    ) -> StepResult:
        """``nodes``: the nodes step's result, refined here (its status and condition)."""
        spec = turn.spec
        assert nodes.condition is not None
        pool = PoolFacts(
            key=turn.obj.key,
            uid=turn.obj.uid,
            object_name=turn.obj.name,
            # Verification only on a pool this object owns (never a PoolNotOwned one's).
            owned=turn.pool is not None and owner_uid_of(turn.pool.properties) == turn.obj.uid,
        )
        status, condition, events = await self._verifier.step(
            pool=pool,
            spec=spec,
            endpoint=lambda: self._facts.account_endpoint(spec.account),
            cert_items=turn.certificate_items,
            nodes_status=nodes.status.get("nodes") if turn.pool is not None else None,
            node_states=node_states,
            condition=nodes.condition,
            old_conditions=turn.conditions,
            now=turn.now,
            mono=turn.mono,
            recorded=(turn.old.get("nodes") or {}).get("verification"),
        )
        wake = nodes.wake_at
        if spec.verification.enabled:
            # Verification keeps per-node schedules of its own: wake for the run's next poll,
            # or after a busy interval when no run is in progress.
            due = self._verifier.wake_at(turn.obj.key)
            if due is None:
                due = turn.mono + self._config.busy_interval_seconds
            wake = due if wake is None else min(wake, due)
        return StepResult(
            condition,
            {"nodes": status} if status is not None else {},
            nodes.events + events,
            wake,
        )

    async def delete(self, obj: ObjectView, spec: BatchCertPoolSpec) -> None:
        """The job of a run in progress goes with the object whatever its deletionPolicy: it is
        this operator's own, never the user's (Retain keeps the pool, not our jobs)."""
        # Jobs an earlier process left (a restart mid-run) go too: looked for by the operator's
        # own prefix only when this object verifies (else it never made any).
        owner = (obj.uid, spec.resolved_pool_name(obj.name)) if spec.verification.enabled else None
        await self._verifier.delete_job(
            obj.key, lambda: self._facts.account_endpoint(spec.account), owner=owner
        )
