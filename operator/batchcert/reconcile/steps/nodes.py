"""Step 4, nodes: every node's Key Vault extension is healthy (``NodesReady``, ``status.nodes``).

A node pass lists the nodes and reads the extensions ``choose_nodes_to_read`` names (every node
once the rotation window closes); the pure ``assess/nodes.py`` judges them. When nodes fail to
fetch without saying why, or look healthy (a failure after a first success is invisible on a
node), ``NodeFailureDiagnoser`` gathers the control-plane facts and ``assess/diagnosis.py`` names
the broken link.

Invariants: a node pass that changed nothing writes nothing (``lastCheckTime`` moves only with
the view or on the heartbeat); Azure failures become the condition with backoff, never
exceptions; counts and causes travel as fields, never parsed back out of a message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.assess.diagnosis import Diagnosis
from batchcert.assess.nodes import NodeVerdict, assess_node, build_nodes_status, summarize_nodes
from batchcert.assess.nodeselect import NodeMemo, choose_nodes_to_read
from batchcert.conditions import NODES_READY, POOL_READY, ConditionUpdate, get_condition
from batchcert.config import Config
from batchcert.errors import AzureCallError, Backoff, classify
from batchcert.models.azure import NodesReading
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.models.timestamps import format_rfc3339, parse_rfc3339
from batchcert.reasons import NodesReason, PoolReason
from batchcert.reconcile.diagnose import (
    DIAGNOSED_REASONS,
    SILENT_FAILURE_REASONS,
    NodeFailureDiagnoser,
)
from batchcert.reconcile.lookups import SharedFacts
from batchcert.reconcile.memory import NodesMemory
from batchcert.reconcile.scheduler import outside_place
from batchcert.reconcile.steps.turn import StepResult, Turn


def _target_nodes(spec: BatchCertPoolSpec) -> int | None:
    fixed = spec.scale.fixed
    if fixed is None:
        return None
    return fixed.target_dedicated_nodes + fixed.target_low_priority_nodes


def _every_node_read_since(memory: NodesMemory) -> datetime:
    """The oldest extension reading among the listed nodes (each node is read at its own pace)."""
    if memory.reading is None:
        return datetime.min.replace(tzinfo=UTC)
    times = [
        memory.memos[r.node_id].read_at for r in memory.reading.nodes if r.node_id in memory.memos
    ]
    return min(times, default=memory.reading.read_at)


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


def explain(
    condition: ConditionUpdate, failed: int, total: int, diagnosis: Diagnosis
) -> ConditionUpdate:
    """NodesReady with the diagnosed cause, if it changes what the nodes say."""
    if condition.reason in DIAGNOSED_REASONS:
        return ConditionUpdate(
            NODES_READY,
            False,
            diagnosis.reason,
            f"{failed}/{total} nodes failed; {diagnosis.message}",
        )
    if diagnosis.reason not in SILENT_FAILURE_REASONS:
        return condition
    return ConditionUpdate(
        NODES_READY,
        False,
        diagnosis.reason,
        "the nodes still report the extension healthy (a failed fetch after a first "
        "success is invisible on a node), but they will miss every rotation: " + diagnosis.cause,
    )


# The extension's retry after a failed fetch. Its initial-sync backoff curve has no evidence
# (azure-behaviour.md: "retrying up to 25 times"); after a first success it fetches again at its
# next poll. One minute more than the polling interval: the shortest interval it polls at.
EXTENSION_RETRY = timedelta(seconds=60)
# Causes the control plane proved; when one is gone, the nodes are given time to fetch again.
_PROVEN_CAUSES = frozenset(
    {
        NodesReason.IDENTITY_NOT_FOUND,
        NodesReason.IDENTITY_NOT_ON_POOL,
        NodesReason.VAULT_ACCESS_DENIED,
        NodesReason.CERTIFICATE_NOT_FOUND,
        NodesReason.CERTIFICATE_DISABLED,
        NodesReason.CERTIFICATE_EXPIRED,
    }
)


def after_a_fix(turn: Turn, memory: NodesMemory, condition: ConditionUpdate) -> ConditionUpdate:
    """No false alarm after a fix: when a cause the control plane proved is gone (the operator
    granted access, someone fixed the identity or the certificate) and the nodes still fail
    without saying why, they have one polling interval plus the extension's retry to fetch again
    (``FixPropagating``, transient) before ``CertificateFetchFailing`` says the cause is on the
    node. The cause is known gone from the previous verdict (status, so a restart in the window
    gives a fresh window rather than a false alarm)."""
    if condition.status is True or condition.reason in _PROVEN_CAUSES:
        memory.fix_propagating_until = None  # the next fix gets its own window
        return condition
    if condition.reason != NodesReason.CERTIFICATE_FETCH_FAILING:
        return condition
    before = get_condition(turn.conditions, NODES_READY) or {}
    was = before.get("reason")
    polling = timedelta(seconds=turn.spec.key_vault_extension.polling_interval_seconds)
    window_end = turn.now + polling + EXTENSION_RETRY
    if memory.fix_propagating_until is None and (
        was in _PROVEN_CAUSES or was == NodesReason.FIX_PROPAGATING
    ):
        memory.fix_propagating_until = window_end
    pool = get_condition(turn.conditions, POOL_READY) or {}
    propagating = pool.get("reason") == PoolReason.ROLE_ASSIGNMENT_PROPAGATING
    if propagating:
        # A role assignment the operator made is not effective yet (Azure RBAC: minutes): the
        # nodes' window starts once it is, not when the chain first looked whole.
        memory.fix_propagating_until = max(memory.fix_propagating_until or window_end, window_end)
    until = memory.fix_propagating_until
    if until is None or turn.now >= until:
        return condition
    why = (
        "while the pool identity's new Key Vault role assignment propagates (Azure RBAC)"
        if propagating
        else f"but the earlier cause ({was}) is gone on the control plane"
        if was in _PROVEN_CAUSES
        else "but a cause the control plane proved is gone"
    )
    return ConditionUpdate(
        NODES_READY,
        False,
        NodesReason.FIX_PROPAGATING,
        f"nodes still fail to fetch {why}: they fetch again at their next poll or retry, by "
        f"{format_rfc3339(until)}; if they still fail then, the cause is on the node",
    )


class NodesStep:
    def __init__(
        self,
        nodes: BatchNodesAdapter,
        facts: SharedFacts,
        diagnoser: NodeFailureDiagnoser,
        config: Config,
    ) -> None:
        self._nodes = nodes
        self._facts = facts
        self._diagnoser = diagnoser
        self._config = config

    async def run(self, turn: Turn, memory: NodesMemory) -> StepResult:
        old_nodes = turn.old.get("nodes")
        if turn.pool is None:
            kept = old_nodes if not turn.pool_known else None
            return StepResult(
                ConditionUpdate(
                    NODES_READY, False, NodesReason.POOL_NOT_READY, "the pool does not exist yet"
                ),
                {"nodes": kept} if kept is not None else {},
                wake_at=self._wake(turn, memory, listing=False),
            )
        failure = await self._pass_if_due(turn, memory)
        if failure is not None:
            return StepResult(
                failure,
                {"nodes": old_nodes} if old_nodes is not None else {},
                [],
                self._wake(turn, memory),
            )
        assert memory.reading is not None
        status, verdicts = build_nodes_status(memory.reading, (old_nodes or {}).get("failures"))
        status = _keep_check_time(
            status, old_nodes, turn.now, timedelta(seconds=self._config.node_recheck_seconds)
        )
        settles_at = turn.window.settles_at
        pending = settles_at if settles_at and _every_node_read_since(memory) < settles_at else None
        condition = summarize_nodes(
            verdicts, target_nodes=_target_nodes(turn.spec), rotation_pending_until=pending
        )
        condition = await self._diagnose(turn, memory, condition, verdicts)
        condition = after_a_fix(turn, memory, condition)
        if memory.schedule.is_due(turn.mono):
            memory.schedule = Backoff().after_success(
                turn.mono, self._interval(verdicts, condition)
            )
        return StepResult(condition, {"nodes": status}, [], self._wake(turn, memory))

    def _interval(self, verdicts: list[NodeVerdict], condition: ConditionUpdate) -> float:
        unhealthy = sum(1 for v in verdicts if v.state != "ready")
        if unhealthy == 0 and condition.reason != NodesReason.NODES_ALLOCATING:
            # Healthy nodes (whatever else NodesReady waits for: a rotation's window, a
            # control-plane diagnosis) change nothing a closer look would show.
            return self._config.node_interval_seconds
        # Unhealthy nodes cost one extension read each, every pass: while they come up, look
        # every busy interval per 50 of them, up to the healthy interval, so 1,000 nodes coming
        # up do not cost 1,000 calls every 15 s.
        per_size = self._config.busy_interval_seconds * max(1.0, unhealthy / 50)
        return min(self._config.node_interval_seconds, per_size)

    def heed(self, turn: Turn, condition: ConditionUpdate | None) -> None:
        """NodesReady as the turn ends (verification included) proves the identity wrong: look
        it up again."""
        if condition is not None and condition.reason == NodesReason.IDENTITY_NOT_FOUND:
            self._facts.forget_identity(turn.spec.identity.resource_id)

    @staticmethod
    def _wake(turn: Turn, memory: NodesMemory, *, listing: bool = True) -> float | None:
        due = [memory.schedule.next_at] if listing else []
        if memory.diagnosis is not None:  # the control-plane check of the nodes' fetch chain
            due.append(memory.diagnosis_schedule.next_at)
        until = memory.fix_propagating_until
        if until is not None and until > turn.now:  # the verdict changes when the window ends
            due.append(turn.mono + (until - turn.now).total_seconds())
        if turn.window.is_open(turn.now):  # the window closing makes the node reading stale
            assert turn.window.settles_at is not None
            due.append(turn.mono + (turn.window.settles_at - turn.now).total_seconds())
        return min(due, default=None)

    async def _pass_if_due(self, turn: Turn, memory: NodesMemory) -> ConditionUpdate | None:
        """A node pass when due (or stale after the rotation window); the failure, if any."""
        settles_at = turn.window.settles_at
        stale = (
            memory.reading is not None
            and settles_at is not None
            and turn.now >= settles_at > _every_node_read_since(memory)
        )
        if not (memory.reading is None or memory.schedule.is_due(turn.mono) or stale):
            return None
        try:
            endpoint = await self._facts.account_endpoint(turn.spec.account)
            async with outside_place():  # bounded per Batch account, and long at 1000 nodes
                await self._pass_nodes(turn, memory, endpoint)
        except AzureCallError as exc:
            verdict = classify(exc)
            memory.schedule = memory.schedule.after_failure(
                turn.mono,
                base=self._config.busy_interval_seconds,
                cap=self._config.node_interval_seconds,
                failure=verdict,
            )
            return ConditionUpdate(NODES_READY, False, verdict.reason, verdict.message)
        return None

    async def _pass_nodes(self, turn: Turn, memory: NodesMemory, endpoint: str) -> None:
        """One node pass: list the nodes, read the extensions ``choose_nodes_to_read`` names,
        carry every other node's report over from its last reading."""
        spec, now = turn.spec, turn.now
        pool_id, extension = spec.resolved_pool_name(turn.obj.name), spec.key_vault_extension.name
        listed = await self._nodes.list_nodes(endpoint, pool_id)
        previous = {r.node_id: r for r in memory.reading.nodes} if memory.reading else {}
        memos = {k: m for k, m in memory.memos.items() if k in previous}
        chosen = choose_nodes_to_read(
            listed,
            memos,
            now=now,
            recheck=timedelta(seconds=self._config.node_recheck_seconds),
            last_pass_at=memory.pass_at,
            settled_at=turn.window.closed_by(now),
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
        memory.reading = NodesReading(
            read_at=now,
            nodes=tuple(fresh.get(n.node_id) or previous[n.node_id] for n in listed),
        )
        memory.memos, memory.pass_at = new_memos, now

    async def _diagnose(
        self,
        turn: Turn,
        memory: NodesMemory,
        condition: ConditionUpdate,
        verdicts: list[NodeVerdict],
    ) -> ConditionUpdate:
        """Nodes fail without saying why: name the cause the control plane proves, if any.

        While nodes look healthy the same chain is checked once per drift interval: a fetch that
        fails after a first success shows nothing on a real node (the extension keeps serving
        what it has), so revoked access would otherwise surface only as a rotation that never
        arrives.
        """
        failing = condition.reason in DIAGNOSED_REASONS
        if turn.pool is None or not (failing or condition.status is True):
            memory.diagnosis, memory.diagnosis_schedule = None, Backoff()
            return condition
        # A spec change may have fixed a link (a grant made this turn, a clientId): look again
        # now, not at the next cadence, so the old cause is not shown after its fix.
        spec_changed = turn.old.get("observedGeneration") != turn.obj.generation
        if memory.diagnosis is None or spec_changed or memory.diagnosis_schedule.is_due(turn.mono):
            drift = self._config.drift_interval_seconds
            every = min(self._config.busy_interval_seconds * 4 if failing else drift, drift)
            # Shared vault answers up to half the cadence old: a revoked grant is proven within
            # 1.5 cadences (1.5 drift intervals while healthy), at 2 reads per vault per cadence
            # however many pools share it.
            memory.diagnosis = await self._diagnoser.diagnose(
                turn.spec,
                turn.pool,
                turn.now,
                # After a spec change, fresh answers: a grant made this turn must be seen.
                max_age=0.0 if spec_changed else every / 2,
            )
            memory.diagnosis_schedule = Backoff().after_success(turn.mono, every)
        failed = sum(1 for v in verdicts if v.state == "failed")
        return explain(condition, failed, len(verdicts), memory.diagnosis)
