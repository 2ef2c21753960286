"""Step 2, pool: the Batch pool exists and matches the spec (``PoolReady``, ``status.pool``).

Reconciled when the spec changed, the drift interval passed, or a change is in flight; otherwise
the last verdict stands and no Azure call is made. The sighting it keeps (small:
``PoolState.kept``) travels to the later steps in the ``Turn``.

No pool is created while a certificate without ``createIfMissing`` is known missing, or a
certificate's vault does not resolve (``assess/creation.py``): from this turn's readings (the
engine gathers the certificates before this step runs), else from the previous turn's durable
verdict.

Invariants: no Azure write before kopf's finalizer is on the object (the engine runs no step
before); a failed create without a read is followed by a read; the schedule is counted from
Azure's answer, never sooner than Retry-After; only creation is gated, never an existing pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchcert.assess.creation import creation_gate
from batchcert.conditions import POOL_READY, ConditionUpdate
from batchcert.config import Config
from batchcert.errors import Backoff
from batchcert.reasons import PoolReason
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import PoolMemory
from batchcert.reconcile.pool import PoolReconciler
from batchcert.reconcile.steps.turn import StepResult, Turn

NOT_CHECKED = ConditionUpdate(POOL_READY, None, PoolReason.RECONCILING, "not checked yet")


class PoolStep:
    def __init__(
        self,
        pools: PoolReconciler,
        facts: SharedFacts,
        config: Config,
        monotonic: Callable[[], float],
    ) -> None:
        self._pools = pools
        self._facts = facts
        self._config = config
        self._monotonic = monotonic

    async def run(
        self, turn: Turn, memory: PoolMemory, hold: ConditionUpdate | None = None
    ) -> StepResult:
        """``hold``: why the pool must wait this turn (a vault grant propagating), if it must."""
        if hold is not None:
            memory.condition = hold
            events: list[Any] = []
        else:
            events = await self._reconcile_if_due(turn, memory)
        status = pool_status(turn, memory)
        return StepResult(
            condition=memory.condition or NOT_CHECKED,
            status={"pool": status} if status is not None else {},
            events=events,
            wake_at=memory.schedule.next_at,
        )

    async def _reconcile_if_due(self, turn: Turn, memory: PoolMemory) -> list[Any]:
        obj, spec = turn.obj, turn.spec
        # Once only: if that PUT fails in a way other than 412 (a 409 from real ARM, say), the
        # next attempt reads first, so a pool that exists is judged, never PUT at for ever.
        never_seen = not (memory.known or memory.create_tried or "pool" in obj.status)
        readings = [(s.cert, s.reading) for s in turn.certificates]
        gate = creation_gate(spec, turn.old, readings)
        if gate is not None and (never_seen or (memory.known and memory.seen is None)):
            self._wait_to_create(turn, memory, gate)  # no pool to look at: no Azure call
            return []
        if memory.generation_seen == obj.generation and not memory.schedule.is_due(turn.mono):
            return []
        result = await self._pools.reconcile(obj, spec, never_seen=never_seen, create_gate=gate)
        if never_seen and not result.seen.known:
            memory.create_tried = True
        if result.seen.known:
            seen = result.seen.pool
            memory.seen, memory.known = (seen.kept() if seen else None), True
        # Counted from the answer, not from the turn's start: the SDK's own retries of a 429 can
        # take several Retry-Afters, and "never sooner than Retry-After" means after the last.
        answered = self._monotonic()
        config = self._config
        if result.busy:  # Azure is changing the pool for us: follow it closely
            memory.schedule = memory.schedule.after_success(answered, config.busy_interval_seconds)
        elif result.condition.status is True:
            memory.schedule = memory.schedule.after_success(answered, config.drift_interval_seconds)
        elif result.condition == gate:  # found absent, not created: waits without Azure calls
            memory.schedule = memory.schedule.after_success(answered, config.busy_interval_seconds)
        else:
            # A failure, or a state only a user can fix: back off as its verdict says (never
            # sooner than Retry-After), from the busy interval up to the drift interval.
            self._facts.forget_identity(spec.identity.resource_id)
            memory.schedule = memory.schedule.after_failure(
                answered,
                base=config.busy_interval_seconds,
                cap=config.drift_interval_seconds,
                failure=result.failure,
            )
        memory.generation_seen = obj.generation
        memory.condition = result.condition
        return result.events

    def _wait_to_create(self, turn: Turn, memory: PoolMemory, gate: ConditionUpdate) -> None:
        """No pool, and none may be created yet (``assess/creation.py``): say why, with no Azure
        call; look again every busy interval (the certificate's appearance reaches status
        through the watcher first), and at once when the gate lifts."""
        memory.condition = gate
        memory.generation_seen = None  # due the moment the gate lifts
        memory.schedule = Backoff().after_success(turn.mono, self._config.busy_interval_seconds)


def pool_status(turn: Turn, memory: PoolMemory) -> dict[str, Any] | None:
    """``status.pool`` from the last sighting; the old one while no GET has answered yet."""
    pool = memory.seen
    if pool is not None:
        return {
            "name": turn.spec.resolved_pool_name(turn.obj.name),
            "resourceId": pool.resource_id,
            "provisioningState": pool.provisioning_state,
            "allocationState": pool.allocation_state,
            "currentDedicatedNodes": pool.current_dedicated_nodes,
            "currentLowPriorityNodes": pool.current_low_priority_nodes,
            # What runs, as Azure reports it: during a refused change it is not the spec.
            **{
                k: v
                for k, v in (
                    ("vmSize", pool.vm_size),
                    ("image", pool.image),
                    ("nodeAgentSkuId", pool.node_agent_sku_id),
                )
                if v
            },
        }
    if "pool" in turn.old and not memory.known:
        return dict(turn.old["pool"])
    return None
