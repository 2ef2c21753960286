"""Which BatchCertPools this operator process owns when the fleet is split into N shards.

An object belongs to shard ``hash(uid) mod N``. The uid, not the namespace or a label: it is
fixed for the object's life and uniformly spread, so shares stay even whatever the tenants'
namespace sizes, and no user has to label anything (a namespace split follows tenant sizes; a
label split depends on every writer labelling correctly). The hash is SHA-256, not Python's
``hash`` (randomised per process: two processes must agree).

Changing the shard count from M to N is done in two rolls; in the first, every shard runs with
``previous_count = M`` and owns an object only if it owns it under **both** assignments. Two
processes that may run at the same time then never both own one object unless they have the same
shard *index*, and each index has its own kopf peering (``--peering batchcert-shard-<index>``),
so only one of those acts:

* old (M) shard j and transitional (N, M) shard i both own uid u only if ``u mod M`` is both j
  and i, so i = j;
* transitional (N, M) shard i and new (N) shard k both own u only if ``u mod N`` is both i and
  k, so i = k.

Objects whose shard changes are owned by nobody during the first roll (they wait, never doubly
written); the second roll (``previous_count`` dropped) hands them to their new shard. The second
roll must start only when no process with the old count is left. ``tests/unit/test_sharding.py``
checks these claims over many uids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def shard_of(uid: str, count: int) -> int:
    """The shard that owns ``uid`` among ``count`` shards (stable across processes)."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class ShardAssignment:
    index: int = 0
    count: int = 1
    previous_count: int | None = None  # during a change of shard count (the first roll)

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= index < count")
        if self.previous_count is not None and self.previous_count < 1:
            raise ValueError(f"previous shard count {self.previous_count} must be positive")

    @property
    def is_whole(self) -> bool:
        """One shard owning everything (the default): no filtering at all."""
        return self.count == 1 and self.previous_count in (None, 1)

    def owns(self, uid: str) -> bool:
        if self.is_whole:
            return True
        if shard_of(uid, self.count) != self.index:
            return False
        return self.previous_count is None or shard_of(uid, self.previous_count) == self.index


def peering_name(base: str, shard: ShardAssignment) -> str:
    """The kopf peering of a shard's replicas: one per shard *index*, whatever the count, so
    processes that may own the same object during a change of count always share one. Index 0
    keeps the unsharded name, so going from one operator to N shards is covered too."""
    return base if shard.index == 0 else f"{base}-shard-{shard.index}"
