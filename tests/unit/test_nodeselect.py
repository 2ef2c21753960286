"""Which nodes' extension a node pass reads (``assess.nodeselect``), pure.

Covers: every node on a first pass; new, changed-state and unhealthy nodes on every pass; none of
the healthy, recently read ones beyond the slow rotation's slice; every node once after a
rotation's window closes; the overdue ones at once; the slice's size follows elapsed time, takes
the oldest first, and over a simulated day re-reads every node within the recheck bound at about
one read per node per recheck.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from batchcert.assess.nodeselect import NodeMemo, NodeSighting, choose_nodes_to_read

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PASS = timedelta(seconds=300)


def _listed(n: int, state: str = "idle") -> list[NodeSighting]:
    return [NodeSighting(f"n{i}", state) for i in range(n)]


def _memos(n: int, read_at: datetime, *, healthy: bool = True) -> dict[str, NodeMemo]:
    return {f"n{i}": NodeMemo("idle", read_at, healthy) for i in range(n)}


def test_a_first_pass_reads_every_node() -> None:
    chosen = choose_nodes_to_read(_listed(3), {}, now=T0, recheck=HOUR, last_pass_at=None)
    assert chosen == {"n0": "new", "n1": "new", "n2": "new"}


def test_healthy_recent_nodes_are_carried_over() -> None:
    chosen = choose_nodes_to_read(
        _listed(3), _memos(3, T0), now=T0 + PASS, recheck=HOUR, last_pass_at=T0
    )
    assert chosen == {}  # 3 × 300/3600 < 1: nothing this pass


def test_new_changed_and_unhealthy_nodes_are_read_every_pass() -> None:
    memos = _memos(3, T0)
    memos["n1"] = NodeMemo("idle", T0, healthy=False)
    listed = [
        NodeSighting("n0", "rebooting"),
        NodeSighting("n1", "idle"),
        NodeSighting("n2", "idle"),
    ]
    listed.append(NodeSighting("n9", "creating"))
    chosen = choose_nodes_to_read(listed, memos, now=T0 + PASS, recheck=HOUR, last_pass_at=T0)
    assert chosen == {"n0": "state", "n1": "unhealthy", "n9": "new"}


def test_state_comparison_ignores_case() -> None:
    memos = {"n0": NodeMemo("Idle", T0, True)}
    chosen = choose_nodes_to_read(
        [NodeSighting("n0", "idle")], memos, now=T0 + PASS, recheck=HOUR, last_pass_at=T0
    )
    assert chosen == {}


def test_a_node_flipping_between_idle_and_running_is_not_a_change() -> None:
    # A busy pool's nodes take and finish tasks all the time: no extension read for that.
    memos = {"n0": NodeMemo("idle", T0, True), "n1": NodeMemo("running", T0, True)}
    listed = [NodeSighting("n0", "running"), NodeSighting("n1", "rebooting")]
    chosen = choose_nodes_to_read(listed, memos, now=T0 + PASS, recheck=HOUR, last_pass_at=T0)
    assert chosen == {"n1": "state"}


def test_every_node_is_read_once_after_the_rotation_window_closes() -> None:
    settled = T0 + timedelta(seconds=200)
    memos = _memos(4, T0)
    memos["n3"] = NodeMemo("idle", settled + timedelta(seconds=1), True)
    chosen = choose_nodes_to_read(
        _listed(4), memos, now=T0 + PASS, recheck=HOUR, last_pass_at=T0, settled_at=settled
    )
    assert chosen == {"n0": "settled", "n1": "settled", "n2": "settled"}
    # A window that has not closed yet reads nothing.
    assert (
        choose_nodes_to_read(
            _listed(4),
            memos,
            now=T0 + PASS,
            recheck=HOUR,
            last_pass_at=T0,
            settled_at=T0 + HOUR,
        )
        == {}
    )


def test_overdue_nodes_are_read_at_once() -> None:
    memos = _memos(2, T0)
    memos["n0"] = NodeMemo("idle", T0 - HOUR, True)
    chosen = choose_nodes_to_read(_listed(2), memos, now=T0 + PASS, recheck=HOUR, last_pass_at=T0)
    assert chosen == {"n0": "overdue"}


def test_the_slice_takes_the_oldest_readings_and_follows_elapsed_time() -> None:
    memos = {f"n{i}": NodeMemo("idle", T0 + timedelta(seconds=i), True) for i in range(120)}
    now = T0 + timedelta(seconds=600)
    chosen = choose_nodes_to_read(
        _listed(120), memos, now=now, recheck=HOUR, last_pass_at=now - PASS
    )
    assert chosen == {f"n{i}": "rotation" for i in range(10)}  # 120 × 300/3600
    doubled = choose_nodes_to_read(
        _listed(120), memos, now=now, recheck=HOUR, last_pass_at=now - 2 * PASS
    )
    assert len(doubled) == 20


def test_a_day_of_passes_rereads_every_node_within_the_bound_at_one_read_per_hour() -> None:
    n = 1000
    memos = _memos(n, T0)
    now, last_pass, reads = T0, T0, 0
    worst_age = timedelta(0)
    for _ in range(24 * 12):
        now += PASS
        chosen = choose_nodes_to_read(
            _listed(n), memos, now=now, recheck=HOUR, last_pass_at=last_pass
        )
        for node_id in chosen:
            worst_age = max(worst_age, now - memos[node_id].read_at)
            memos[node_id] = NodeMemo("idle", now, True)
        reads += len(chosen)
        last_pass = now
        assert all(now - m.read_at <= HOUR + PASS for m in memos.values())
    assert worst_age <= HOUR + PASS
    assert n * 24 * 0.95 <= reads <= n * 24 * 1.01  # about one read per node per hour
