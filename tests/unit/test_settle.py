"""When status is written (reconcile/settle.py): verdicts at once, progress once it settles.

Covers: what counts as a verdict (the first status, a new generation, a summary condition's
status, a reason that needs a person, a rotation); progress waits, then goes out by the deadline
with what came after it; a status back where the written one is waits for nothing; a step Event
is posted once however many turns status waits.
"""

from __future__ import annotations

from typing import Any

import pytest

from batchcert.reconcile.outcome import Event
from batchcert.reconcile.settle import SettleMemory, decide, is_verdict_change, unposted

pytestmark = pytest.mark.unit


def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": reason}


def status(
    *, ready: str = "False", reason: str = "PoolCreated", generation: int = 1, version: str = "v1"
) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": [
            cond("Ready", ready, reason),
            cond("Reconciling", "True" if ready == "False" else "False", reason),
            cond("Stalled", "False", "Reconciling"),
            cond("PoolReady", ready, reason),
        ],
        "certificates": [{"secretId": "https://kv/secrets/c", "version": version, "rotations": 0}],
    }


def test_progress_is_not_a_verdict() -> None:
    assert not is_verdict_change(status(reason="PoolCreated"), status(reason="NodesAllocating"))


@pytest.mark.parametrize(
    "new",
    [
        status(ready="True", reason="Ready"),  # Ready's status
        status(generation=2),  # a spec change acknowledged
        status(reason="IdentityNotFound"),  # a reason that needs a person
        status(version="v2"),  # a rotation
    ],
)
def test_verdicts(new: dict[str, Any]) -> None:
    assert is_verdict_change(status(), new)


def test_the_first_status_and_the_first_certificates_seen() -> None:
    assert is_verdict_change({}, status())
    first = status()
    first["certificates"] = []
    assert not is_verdict_change(first, status())  # a first sighting is no rotation


def test_progress_waits_then_goes_out_by_the_deadline() -> None:
    memory = SettleMemory()
    old, new = status(), status(reason="NodesAllocating")
    first = decide(memory, old, new, changed=True, mono=100.0, settle_seconds=30)
    assert not first.write and first.wake_at == 130.0
    later = decide(memory, old, new, changed=True, mono=120.0, settle_seconds=30)
    assert not later.write and later.wake_at == 130.0  # the first unwritten change sets it
    assert decide(memory, old, new, changed=True, mono=130.0, settle_seconds=30).write
    assert memory.since is None


def test_a_verdict_goes_out_at_once_with_the_progress_before_it() -> None:
    memory = SettleMemory()
    assert not decide(
        memory, status(), status(reason="NodesAllocating"), changed=True, mono=0, settle_seconds=30
    ).write
    ready = status(ready="True", reason="Ready")
    assert decide(memory, status(), ready, changed=True, mono=1, settle_seconds=30).write


def test_back_where_the_written_status_is_waits_for_nothing() -> None:
    memory = SettleMemory()
    decide(
        memory, status(), status(reason="NodesAllocating"), changed=True, mono=0, settle_seconds=30
    )
    assert not decide(memory, status(), status(), changed=False, mono=5, settle_seconds=30).write
    assert memory.since is None  # a later change starts a new window


def test_a_step_event_is_posted_once_while_status_waits() -> None:
    memory = SettleMemory()
    rotated = Event("Normal", "NodesVerified", "3/3 nodes proven")
    assert unposted(memory, [rotated]) == [rotated]
    assert unposted(memory, [rotated]) == []
    decide(
        memory,
        status(),
        status(ready="True", reason="Ready"),
        changed=True,
        mono=0,
        settle_seconds=30,
    )
    assert unposted(memory, [rotated]) == [rotated]  # written: a new occurrence is news again
