"""Shards: a stable, disjoint split of the fleet by a hash of the uid, and a safe change of count.

Covers: every uid has exactly one owner among N shards, the same in every process (SHA-256, not
Python's randomised ``hash``), with even shares; during a change of shard count (the first roll,
``previous_count``), any two processes that can run at the same time own a uid only if they have
the same shard index (and so the same peering: one of them acts); nobody owning a moving object
during the first roll; invalid assignments refused.
"""

from __future__ import annotations

import uuid

import pytest

from batchcert.reconcile.sharding import ShardAssignment, peering_name, shard_of

UIDS = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(4000)]


def test_one_owner_per_uid_and_even_shares() -> None:
    shards = [ShardAssignment(i, 4) for i in range(4)]
    counts = [0] * 4
    for uid in UIDS:
        owners = [s.index for s in shards if s.owns(uid)]
        assert len(owners) == 1
        counts[owners[0]] += 1
    assert min(counts) > 0.8 * len(UIDS) / 4
    assert shard_of("2b7c9b8e-0000-4000-8000-000000000001", 4) == shard_of(
        "2b7c9b8e-0000-4000-8000-000000000001", 4
    )
    assert ShardAssignment().owns("anything") and ShardAssignment().is_whole
    assert peering_name("batchcert", ShardAssignment(0, 3)) == "batchcert"  # as unsharded
    assert peering_name("batchcert", ShardAssignment(2, 3, 2)) == "batchcert-shard-2"


@pytest.mark.parametrize(("old", "new"), [(2, 3), (3, 2), (1, 4), (4, 1), (2, 5)])
def test_a_change_of_count_never_gives_one_uid_two_indices(old: int, new: int) -> None:
    before = [ShardAssignment(i, old) for i in range(old)]
    during = [ShardAssignment(i, new, previous_count=old) for i in range(new)]
    after = [ShardAssignment(i, new) for i in range(new)]
    moving = 0
    for uid in UIDS:
        # Processes that can run at once: old with transitional, transitional with new.
        for together in (before + during, during + after):
            indices = {s.index for s in together if s.owns(uid)}
            assert len(indices) <= 1, (uid, indices)
        if not any(s.owns(uid) for s in during):
            moving += 1
            assert shard_of(uid, old) != shard_of(uid, new)  # only moving objects wait
        assert sum(s.owns(uid) for s in after) == 1
    assert moving > 0


def test_invalid_assignments_are_refused() -> None:
    for index, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="need 0 <= index < count"):
            ShardAssignment(index, count)
    with pytest.raises(ValueError, match="must be positive"):
        ShardAssignment(0, 2, previous_count=0)
