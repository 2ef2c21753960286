"""Which nodes' Key Vault extension to read this pass: the decision that makes a node pass cost
what changed, not what exists.

Every pass lists the pool's nodes (one request per 1000, ``$select``ed to id and state), so node
states are always fresh. A node's extension (one request per node) is read only when:

* ``new``: the node is new to us (no reading yet);
* ``state``: its state changed since its last reading (reboot, reimage, unusable, ...; idle ⇄
  running is not a change: a busy node flips between them with every task);
* ``unhealthy``: its last verdict was not *ready* (transitioning and failed nodes are followed on
  every pass, as the busy cadence always has);
* ``settled``: a rotation's polling window closed after its last reading (every node is read once
  after ``lastRotationTime + pollingInterval``: the one reading that proves the rotation arrived);
* ``overdue``: its last reading is ``recheck`` old or older;
* ``rotation``: otherwise, a slow rotation through the healthy nodes, oldest reading first, sized
  ``floor(healthy × elapsed / recheck)`` so the pool costs about one extension read per node per
  ``recheck`` whatever the pass cadence.

Bound: a node that turns failed while its state stays the same (a fetch that starts failing
behind a healthy-looking node) is found within ``recheck + pass interval``; a node whose state
changes is read within one pass interval.

Verification (``spec.verification``) needs only node ids and states, which every pass's list
gives; it adds no extension read.

Invariants: pure (no clock, no I/O); every listed node is either selected or has a previous
reading to carry over; the choice is deterministic for the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class NodeSighting:
    """One node as the node list shows it."""

    node_id: str
    state: str | None


@dataclass(frozen=True, slots=True)
class NodeMemo:
    """What we last learnt from one node's extension."""

    state: str | None  # the node's state when its extension was read
    read_at: datetime
    healthy: bool  # its verdict then was *ready*


def choose_nodes_to_read(
    listed: Sequence[NodeSighting],
    previous: Mapping[str, NodeMemo],
    *,
    now: datetime,
    recheck: timedelta,
    last_pass_at: datetime | None,
    settled_at: datetime | None = None,
) -> dict[str, str]:
    """Node id → why its extension is read this pass (nodes not named keep their last reading).

    ``settled_at`` is the end of the latest rotation's polling window, when it has passed.
    """
    chosen: dict[str, str] = {}
    healthy: list[tuple[datetime, str]] = []
    for sighting in listed:
        memo = previous.get(sighting.node_id)
        if memo is None:
            chosen[sighting.node_id] = "new"
        elif _state_kind(memo.state) != _state_kind(sighting.state):
            chosen[sighting.node_id] = "state"
        elif not memo.healthy:
            chosen[sighting.node_id] = "unhealthy"
        elif settled_at is not None and settled_at <= now and memo.read_at < settled_at:
            chosen[sighting.node_id] = "settled"
        elif now - memo.read_at >= recheck:
            chosen[sighting.node_id] = "overdue"
        else:
            healthy.append((memo.read_at, sighting.node_id))
    overdue = sum(1 for why in chosen.values() if why == "overdue")
    budget = _rotation_budget(len(healthy) + overdue, now, recheck, last_pass_at) - overdue
    for _, node_id in sorted(healthy)[: max(0, budget)]:
        chosen[node_id] = "rotation"
    return chosen


def _rotation_budget(
    healthy: int, now: datetime, recheck: timedelta, last_pass_at: datetime | None
) -> int:
    """Healthy nodes to re-read this pass: their share of one full round per ``recheck``."""
    if healthy == 0 or last_pass_at is None or recheck <= timedelta(0):
        return 0
    elapsed = min(max(now - last_pass_at, timedelta(0)), recheck)
    return int(healthy * (elapsed / recheck))


# A node taking and finishing tasks flips between idle and running all the time; that says
# nothing about its extension, and reading it at every flip would read a busy pool's every node
# every pass. Any other change (rebooting, reimaging, starting, unusable, ...) is a change.
_SAME_FOR_THE_EXTENSION = {"idle": "available", "running": "available"}


def _state_kind(state: str | None) -> str:
    text = (state or "").lower()
    return _SAME_FOR_THE_EXTENSION.get(text, text)
