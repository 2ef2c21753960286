"""When a turn's status is written: verdicts at once, progress detail once it settles.

A pool on its way to Ready passes through several in-progress reasons (``PoolCreated``,
``NodesAllocating``, ``ExtensionTransitioning``); writing each one cost an object write (and a
watch event to every watcher, and etcd's work) per pool per step. What GitOps tools, kstatus and
``kubectl wait`` act on is the verdict, so:

* written **at once**: the first status; a new ``observedGeneration`` (a spec change is
  acknowledged without delay: kstatus reads "current" from it); any change of Ready, Reconciling
  or Stalled's status; a condition turning to a reason that needs a person; a rotation (a new
  version or count in ``status.certificates``: a durable fact, counted from status);
* **settled**: anything else (a reason or message that moves while the verdict stands, node
  counts, the pool's allocation) waits until ``settle_seconds`` after the first such change
  unwritten, then goes out with whatever came after it in one write. So status shows progress
  at most ``settle_seconds`` late, and a pool that converges within that window costs three writes
  (kopf's finalizer, the first status, Ready) instead of one per step.

Events follow the writes: a transition's Event is posted with the status that shows it (the
transitions since the last write, computed against the written status), never from a turn whose
status waits (it would be posted again by the next one). A step's own Events (an Azure action
taken, a rotation seen) go out when they happen, once: while status waits, a level-derived one
the next turn would repeat is held back by ``posted``.

Invariants: pure but for the object's ``SettleMemory`` (lost on restart without harm: the first
turn after a start compares against the status the API server holds, as ever); a patch that
is not sent now is recomputed, whole, by the next turn (status is level-driven), so nothing is
lost by waiting; the wait is bounded (the object's next turn is due by the deadline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batchcert.conditions import get_condition
from batchcert.reasons import SUMMARY_TYPES, is_user_action
from batchcert.reconcile.outcome import Event


@dataclass(slots=True)
class SettleMemory:
    # When the oldest unwritten progress change was first seen (monotonic); None: nothing waits.
    since: float | None = None
    # Step Events posted while status waits (a level-derived one would come again each turn).
    posted: set[Event] = field(default_factory=set)


@dataclass(frozen=True)
class SettleDecision:
    write: bool
    wake_at: float | None = None  # when the waiting status must go out (monotonic)


def is_verdict_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A change consumers act on: it is written at once (see the module docstring)."""
    before = list(old.get("conditions") or [])
    if not before or old.get("observedGeneration") != new.get("observedGeneration"):
        return True
    after = list(new.get("conditions") or [])
    for condition in after:
        type_ = condition.get("type")
        previous = get_condition(before, str(type_))
        if previous is None:
            return True
        if type_ in SUMMARY_TYPES and previous.get("status") != condition.get("status"):
            return True
        reason = str(condition.get("reason", ""))
        if reason != previous.get("reason") and is_user_action(reason):
            return True
    seen = _versions(old)
    return any(
        key in seen and seen[key] != value for key, value in _versions(new).items()
    )  # a certificate seen before with another version or count: a rotation


def _versions(status: dict[str, Any]) -> dict[Any, tuple[Any, Any]]:
    return {
        c.get("secretId"): (c.get("version"), c.get("rotations"))
        for c in status.get("certificates") or []
        if c.get("version")
    }


def decide(
    memory: SettleMemory,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    changed: bool,
    mono: float,
    settle_seconds: float,
) -> SettleDecision:
    """Whether this turn's status goes out now; ``changed``: it differs from the written one."""
    if not changed:
        memory.since = None  # back where the written status is: nothing waits
        memory.posted.clear()
        return SettleDecision(write=False)
    if memory.since is None:
        memory.since = mono
    deadline = memory.since + settle_seconds
    if is_verdict_change(old, new) or mono >= deadline:
        memory.since = None
        memory.posted.clear()
        return SettleDecision(write=True)
    return SettleDecision(write=False, wake_at=deadline)


def unposted(memory: SettleMemory, events: Sequence[Event]) -> list[Event]:
    """The step Events of a turn whose status waits that were not posted already."""
    fresh = [e for e in events if e not in memory.posted]
    memory.posted.update(fresh)
    return fresh
