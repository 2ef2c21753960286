"""The one single-flight cache (identities, account endpoints, certificate readings).

Covers: concurrent askers share one read; a value is remembered for the TTL and read again after;
an asker's max_age makes a younger read, never an older one; None (not found) and failures are
never remembered; invalidate forgets at once; the shared vault facts the diagnosis of many pools
asks for cost one read per max_age, not one per pool.
"""

from __future__ import annotations

import asyncio

import pytest

from batchcert.reconcile.lookups import SharedFacts, SingleFlightCache


async def test_single_flight_ttl_and_invalidate() -> None:
    clock = [0.0]
    reads: list[int] = []

    async def load() -> str:
        reads.append(1)
        await asyncio.sleep(0.01)
        return f"v{len(reads)}"

    lookups: SingleFlightCache[str, str] = SingleFlightCache(300, monotonic=lambda: clock[0])
    values = await asyncio.gather(*(lookups.get("k", load) for _ in range(50)))
    assert set(values) == {"v1"} and len(reads) == 1
    clock[0] = 299
    assert await lookups.get("k", load) == "v1"
    clock[0] = 301
    assert await lookups.get("k", load) == "v2"
    lookups.invalidate("k")
    assert await lookups.get("k", load) == "v3"


async def test_not_found_and_failures_are_not_remembered() -> None:
    answers: list[object] = [None, RuntimeError("boom"), "found"]

    async def load() -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    lookups: SingleFlightCache[str, str] = SingleFlightCache(300)
    assert await lookups.get("k", load) is None
    with pytest.raises(RuntimeError):
        await lookups.get("k", load)
    assert await lookups.get("k", load) == "found"


async def test_max_age_asks_for_a_younger_answer_and_never_an_older_one() -> None:
    clock = [0.0]
    reads: list[int] = []

    async def load() -> str:
        reads.append(1)
        return f"v{len(reads)}"

    lookups: SingleFlightCache[str, str] = SingleFlightCache(100, monotonic=lambda: clock[0])
    assert await lookups.get("k", load) == "v1"
    clock[0] = 40
    assert await lookups.get("k", load, max_age=60) == "v1"  # 40 s old: young enough
    assert await lookups.get("k", load, max_age=30) == "v2"  # too old for this asker: read
    clock[0] = 150
    assert await lookups.get("k", load, max_age=1000) == "v3"  # the TTL still bounds it


class _Arm:
    def __init__(self) -> None:
        self.vault_reads = 0
        self.role_reads = 0

    async def get_vault(self, resource_id: str) -> dict[str, object]:
        self.vault_reads += 1
        await asyncio.sleep(0.01)
        return {"properties": {"accessPolicies": []}}

    async def has_secrets_role(self, vault_id: str, principal_id: str) -> bool:
        self.role_reads += 1
        return False  # a remembered "no" is a value, not a miss


async def test_many_pools_diagnosing_one_vault_cost_one_read_per_max_age() -> None:
    clock = [0.0]
    arm = _Arm()
    facts = SharedFacts(arm, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    vault = "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/KV"
    await asyncio.gather(*(facts.vault(vault, max_age=150) for _ in range(1000)))
    roles = [facts.has_secrets_role(vault, "P", max_age=150) for _ in range(1000)]
    assert not any(await asyncio.gather(*roles))
    assert (arm.vault_reads, arm.role_reads) == (1, 1)
    clock[0] = 149
    await facts.vault(vault.lower(), max_age=150)  # the same vault, however it is spelled
    assert arm.vault_reads == 1
    clock[0] = 151
    await facts.vault(vault, max_age=150)
    assert arm.vault_reads == 2


async def test_no_such_vault_is_remembered_for_max_age_too() -> None:
    # The diagnosis guesses a vault's resource group when the spec does not name it: a wrong
    # guess (404) must not cost every pool a read per drift interval.
    clock = [0.0]
    reads: list[str] = []

    class _Missing:
        async def get_vault(self, resource_id: str) -> None:
            reads.append(resource_id)
            return None

    facts = SharedFacts(_Missing(), monotonic=lambda: clock[0])  # type: ignore[arg-type]
    answers = await asyncio.gather(*(facts.vault("/v/KV", max_age=150) for _ in range(100)))
    assert answers == [None] * 100 and len(reads) == 1
    clock[0] = 100
    assert await facts.vault("/v/kv", max_age=150) is None and len(reads) == 1
    clock[0] = 200
    assert await facts.vault("/v/kv", max_age=150) is None and len(reads) == 2


async def test_shutdown_cancels_a_read_its_askers_left_running() -> None:
    # A read outlives a cancelled asker (the others may await it). At shutdown it must end
    # before the clients close: a read still running then fails on a closed session, and
    # kopf's shutdown re-raised that as a traceback out of the process.
    from batchcert.reconcile.lookups import cancel_inflight_reads

    started, finished = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(3600)
        finished.set()
        return "v"

    lookups: SingleFlightCache[str, str] = SingleFlightCache(300)
    asker = asyncio.ensure_future(lookups.get("k", slow))
    await started.wait()
    asker.cancel()
    await asyncio.sleep(0)
    assert lookups._inflight  # the asker is gone, the read is not
    await asyncio.wait_for(cancel_inflight_reads(), 1)
    assert not lookups._inflight and not finished.is_set()
    assert await lookups.get("k", lambda: asyncio.sleep(0, "v2")) == "v2"  # usable again
