"""Status while an object waits for its pool's deletion (reconcile/pool.py, daemon.py).

Covers: a Delete-policy deletion that starts Azure's long-running delete, or finds it under way,
says ``PoolDeleting`` on PoolReady (besides the Event once); a failed delete call gives the
classifier's verdict; the status patch sets PoolReady, derives Ready/Reconciling/Stalled the way
every turn does, keeps the other components, and is empty when nothing changed (no write).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchcert.conditions import (
    CERTIFICATE_READY,
    COMPONENT_TYPES,
    NODES_READY,
    POOL_READY,
    ConditionUpdate,
    apply_conditions,
    get_condition,
)
from batchcert.daemon import deletion_status_patch
from batchcert.errors import AzureCallError
from batchcert.models.azure import PoolState
from batchcert.models.names import UID_METADATA
from batchcert.models.spec import parse_spec
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.pool import PoolReconciler
from support.builders import base_spec

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
UID = "uid-1"


class DeletingArm:
    def __init__(self, state: str | None) -> None:
        self.state = state  # None: no pool
        self.deletes = 0
        self.fail: AzureCallError | None = None

    async def get_pool(self, account: Any, name: str) -> PoolState | None:
        if self.fail is not None:
            raise self.fail
        if self.state is None:
            return None
        properties = {
            "provisioningState": self.state,
            "metadata": [{"name": UID_METADATA, "value": UID}],
        }
        return PoolState("/pools/p", {"properties": properties}, None)

    async def begin_delete_pool(self, account: Any, name: str) -> None:
        self.deletes += 1
        self.state = "Deleting"


def _view() -> ObjectView:
    spec = base_spec(deletionPolicy="Delete")
    return ObjectView("team-a", "p", UID, 3, spec, {}, deleting=True)


async def test_azure_deleting_the_pool_is_pool_deleting_until_it_is_gone() -> None:
    arm = DeletingArm("Succeeded")
    pools = PoolReconciler(arm, facts=None)  # type: ignore[arg-type]
    view = _view()
    spec = parse_spec(view.spec)
    started = await pools.delete(view, spec)
    assert (started.done, [e.reason for e in started.events]) == (False, ["PoolDeleting"])
    assert started.condition is not None
    assert (started.condition.type, started.condition.status) == (POOL_READY, False)
    assert started.condition.reason == "PoolDeleting"
    assert "being deleted in Azure" in started.condition.message
    waiting = await pools.delete(view, spec)  # Azure's long-running delete, still under way
    assert (waiting.done, waiting.events, arm.deletes) == (False, [], 1)
    assert waiting.condition == started.condition
    arm.state = None
    gone = await pools.delete(view, spec)
    assert (gone.done, gone.condition) == (True, None)


async def test_a_failed_delete_call_is_the_classifiers_verdict() -> None:
    arm = DeletingArm("Succeeded")
    arm.fail = AzureCallError(
        service="arm", operation="pools.get", status=403, code="AuthorizationFailed", message="no"
    )
    view = _view()
    outcome = await PoolReconciler(arm, facts=None).delete(view, parse_spec(view.spec))  # type: ignore[arg-type]
    assert outcome.done is False and outcome.condition is not None
    assert (outcome.condition.type, outcome.condition.reason) == (POOL_READY, "AuthorizationFailed")


def _ready_status() -> dict[str, Any]:
    ok = {
        POOL_READY: ConditionUpdate(POOL_READY, True, "PoolReady", "ok"),
        CERTIFICATE_READY: ConditionUpdate(CERTIFICATE_READY, True, "CertificatesReady", "ok"),
        NODES_READY: ConditionUpdate(NODES_READY, False, "ExtensionTransitioning", "1/1 coming"),
    }
    assert set(ok) == set(COMPONENT_TYPES)
    return {"conditions": apply_conditions([], ok.values(), generation=3, now=T0)}


def test_the_deletion_patch_sets_pool_ready_and_derives_the_summaries() -> None:
    status = _ready_status()
    deleting = ConditionUpdate(POOL_READY, False, "PoolDeleting", "pool p is being deleted")
    later = T0 + timedelta(minutes=1)
    patch = deletion_status_patch(status, deleting, generation=3, now=later)
    after = patch["conditions"]
    pool = get_condition(after, POOL_READY)
    assert pool is not None
    assert (pool["status"], pool["reason"]) == ("False", "PoolDeleting")
    ready = get_condition(after, "Ready")
    assert ready is not None
    # PoolDeleting is in progress (the registry): Reconciling, not Stalled.
    assert (ready["status"], get_condition(after, "Stalled")["status"]) == ("False", "False")  # type: ignore[index]
    assert get_condition(after, "Reconciling")["status"] == "True"  # type: ignore[index]
    kept = get_condition(after, NODES_READY)
    assert kept == get_condition(status["conditions"], NODES_READY)  # the others as they were
    written = {"conditions": after}
    assert deletion_status_patch(written, deleting, generation=3, now=later) == {}  # no rewrite
