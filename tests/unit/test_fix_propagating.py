"""No false alarm after a fix (reconcile/steps/nodes.py ``after_a_fix``), through the engine with
fakes and an injected clock.

Covers: failing nodes whose proven cause (no vault access) is fixed by a spec change (the
operator's grant) are re-diagnosed in that very turn and read ``FixPropagating`` (in progress,
never Stalled) — for one polling interval plus the extension's retry, then
``CertificateFetchFailing`` if they still fail; a cause fixed behind the operator's back is found
at the next diagnosis and gets the same window; nodes that recover inside it make the pool Ready;
a new proven cause ends the window at once; a restart inside the window (no memory) neither
flaps to Stalled nor makes the window endless; a role assignment the operator made that is still
propagating (PoolReady says so) keeps the window open until one window after it is effective.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_engine import World, converge

from batchcert.conditions import ConditionUpdate
from batchcert.models.spec import parse_spec
from batchcert.reconcile.memory import NodesMemory, ObjectMemory, ObjectView
from batchcert.reconcile.steps.nodes import EXTENSION_RETRY, after_a_fix
from batchcert.reconcile.steps.turn import Turn
from support.builders import base_spec

pytestmark = pytest.mark.unit
GRANTED = [{"objectId": "principal", "permissions": {"secrets": ["get", "list"]}}]
POLLING = 300  # the spec's default pollingIntervalSeconds
WINDOW = POLLING + EXTENSION_RETRY.total_seconds()


async def _denied(world: World) -> None:
    """Ready, then the vault access is gone and the nodes fail: the cause proven, Stalled."""
    await converge(world)
    world.arm.vault_policies = []
    world.nodes.states = {"n2": "idle"}  # a new node (read at once) that cannot fetch
    world.nodes.failing.add("n2")
    world.advance(301)
    await converge(world, 3)
    nodes = world.condition("NodesReady")
    assert (nodes["status"], nodes["reason"]) == ("False", "VaultAccessDenied"), world.status
    assert world.condition("Stalled")["status"] == "True"


async def _granted_after_denial(world: World) -> None:
    """Denied and Stalled, then the access granted: the next diagnosis opens the window."""
    await _denied(world)
    world.arm.vault_policies = GRANTED
    world.advance(60)  # the failing cadence of the diagnosis (4 busy intervals)
    await world.tick()
    assert _reason(world) == "FixPropagating", world.status


def _reason(world: World, type_: str = "NodesReady") -> str:
    return str(world.condition(type_)["reason"])


async def test_a_fix_by_spec_change_is_fix_propagating_from_that_turn() -> None:
    world = World()
    await _denied(world)
    world.advance(40)
    await world.tick()  # diagnosed again just now: the vault's answer is young
    world.arm.vault_policies = GRANTED  # the grant the changed spec asked for
    world.spec["identity"]["clientId"] = "looked-up-client-id"  # any spec change
    world.generation += 1
    await world.tick()  # the turn of the change: re-diagnosed at once
    assert _reason(world) == "FixPropagating", world.status
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Reconciling")["status"] == "True"
    assert "VaultAccessDenied" in world.condition("NodesReady")["message"]
    stalled_during = []
    for _ in range(int(WINDOW // 30) - 1):
        world.advance(30)
        await world.tick()
        stalled_during.append(world.condition("Stalled")["status"])
    assert set(stalled_during) == {"False"}, world.status
    world.advance(60)
    await world.tick()
    # Still failing after a polling interval and a retry: the cause is on the node, said so.
    assert _reason(world) == "CertificateFetchFailing"
    assert world.condition("Stalled")["status"] == "True"
    world.advance(30)
    await world.tick()
    assert _reason(world) == "CertificateFetchFailing"  # no second window


async def test_nodes_that_fetch_inside_the_window_make_the_pool_ready() -> None:
    world = World()
    await _denied(world)
    world.arm.vault_policies = GRANTED  # fixed behind the operator's back
    world.advance(60)  # the failing cadence of the diagnosis (4 busy intervals)
    await world.tick()
    assert _reason(world) == "FixPropagating", world.status
    world.nodes.failing.clear()  # the extension's next retry succeeds
    world.advance(15)
    await converge(world, 2)
    assert world.condition("Ready")["status"] == "True", world.status


async def test_a_new_proven_cause_ends_the_window() -> None:
    world = World()
    await _granted_after_denial(world)
    world.arm.vault_policies = []  # revoked again
    world.advance(60)
    await world.tick()
    assert _reason(world) == "VaultAccessDenied"


async def test_a_restart_in_the_window_gives_a_fresh_window_not_an_alarm() -> None:
    world = World()
    await _granted_after_denial(world)
    world.memory = ObjectMemory()  # the operator restarts
    world.advance(30)
    await world.tick()
    assert _reason(world) == "FixPropagating", world.status
    world.advance(WINDOW)
    await world.tick()
    assert _reason(world) == "CertificateFetchFailing"


def test_a_propagating_role_assignment_holds_the_window_open_until_it_is_effective() -> None:
    t0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    window = timedelta(seconds=WINDOW)
    spec = base_spec()
    failing = ConditionUpdate("NodesReady", False, "CertificateFetchFailing", "on the node")
    memory = NodesMemory()

    def turn_at(now: datetime, pool_reason: str) -> str:
        old = {
            "conditions": [
                {"type": "PoolReady", "status": "False", "reason": pool_reason},
                {"type": "NodesReady", "status": "False", "reason": "CertificateFetchFailing"},
            ]
        }
        view = ObjectView("team-a", "render-pool", "uid", 1, spec, old)
        turn = Turn(view, parse_spec(spec), old, now, 0.0)
        return str(after_a_fix(turn, memory, failing).reason)

    # The nodes failed without a proven cause, then the operator's role assignment propagates.
    assert turn_at(t0, "RoleAssignmentPropagating") == "FixPropagating"
    later = t0 + window + timedelta(minutes=5)  # still propagating past one window
    assert turn_at(later, "RoleAssignmentPropagating") == "FixPropagating"
    effective = later + timedelta(seconds=1)  # effective now: one window from the last sight
    assert turn_at(effective, "PoolReady") == "FixPropagating"
    assert turn_at(later + window, "PoolReady") == "CertificateFetchFailing"
