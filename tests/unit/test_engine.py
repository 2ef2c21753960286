"""The level-driven reconcile against in-memory fakes of the adapters, with an injected clock.

Covers: the first visit writes Reconciling at once and calls no Azure; the finalizer guard;
creation with the owner uid, adoption of our own pool after a 412 and refusal of a foreign one;
a second tick with nothing new writes nothing and calls no ARM; Report leaves a disruptive change
unapplied; ScaleToZero scales down, applies at zero, scales back, each step chosen from the level
it sees; a failure backs off instead of hot-looping; a rotation is counted once; a foreign vault
is refused before any call, as is verification the install forbids.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchcert.assess.nodeselect import NodeSighting
from batchcert.config import Config
from batchcert.errors import AzureCallError
from batchcert.models.azure import (
    CertificateFacts,
    CertificateReading,
    ExtensionStatus,
    IdentityInfo,
    LifetimeAction,
    NodeExtensionReport,
    PoolState,
)
from batchcert.models.names import UID_METADATA
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.engine import Reconciler
from batchcert.reconcile.memory import ObjectMemory, ObjectView
from batchcert.translate.pool_diff import extension_client_id
from support.builders import IDENTITY, base_spec

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
UID = "uid-1"


class FakeArm:
    def __init__(self) -> None:
        self.pool: dict[str, Any] | None = None
        self.calls: list[str] = []
        self.fail_next: AzureCallError | None = None
        self.down = False  # every call fails with 503 while True
        self.steady_after_patch = True
        self.vault_policies: list[dict[str, Any]] = [
            {"objectId": "principal", "permissions": {"secrets": ["get", "list"]}}
        ]

    def _maybe_fail(self) -> None:
        if self.down:
            raise AzureCallError(
                service="arm",
                operation="pools.get",
                status=503,
                code="ServiceUnavailable",
                message="down",
            )
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def _state(self) -> PoolState:
        assert self.pool is not None
        body = copy.deepcopy(self.pool)
        # ARM fills each user-assigned identity with its ids (azure-behaviour.md).
        for ids in ((body.get("identity") or {}).get("userAssignedIdentities") or {}).values():
            ids.update(clientId="looked-up-client-id", principalId="principal")
        return PoolState("/subscriptions/s/pools/render-pool", body, '"e1"')

    async def get_identity(self, resource_id: str) -> IdentityInfo | None:
        self.calls.append("identities.get")
        return IdentityInfo(resource_id, "looked-up-client-id", "principal")

    async def get_vault(self, resource_id: str) -> dict[str, Any] | None:
        # The healthy-path access check: this fake vault grants the pool's principal.
        self.calls.append("vaults.get")
        return {"properties": {"accessPolicies": self.vault_policies}}

    async def get_account_endpoint(self, account: Any) -> str:
        self.calls.append("batchAccounts.get")
        return "acct.region.batch.example"

    async def get_pool(self, account: Any, name: str) -> PoolState | None:
        self.calls.append("pools.get")
        self._maybe_fail()
        return self._state() if self.pool is not None else None

    async def create_pool(self, account: Any, name: str, body: dict[str, Any]) -> PoolState:
        self.calls.append("pools.create")
        self._maybe_fail()
        if self.pool is not None:
            raise AzureCallError(
                service="arm",
                operation="pools.create",
                status=412,
                code="ConditionNotMet",
                message="exists",
            )
        self.pool = copy.deepcopy(body)
        self.pool["name"] = name
        self.pool["properties"].update(
            provisioningState="Succeeded", allocationState="Steady", currentDedicatedNodes=1
        )
        return self._state()

    async def update_pool(
        self, account: Any, name: str, patch: dict[str, Any], *, etag: str | None
    ) -> PoolState:
        self.calls.append("pools.update")
        assert self.pool is not None
        if "identity" in patch:
            self.pool["identity"] = patch["identity"]
        self.pool["properties"].update(patch.get("properties", {}))
        scale = self.pool["properties"]["scaleSettings"]["fixedScale"]
        self.pool["properties"]["currentDedicatedNodes"] = scale["targetDedicatedNodes"]
        return self._state()

    async def begin_delete_pool(self, account: Any, name: str) -> None:
        self.calls.append("pools.delete")
        self.pool = None


class FakeNodes:
    """Batch's node list and per-node extension reads; ``calls`` counts node passes (lists)."""

    def __init__(self) -> None:
        self.calls = 0
        self.extension_reads: list[str] = []
        self.states = {"n1": "idle"}
        self.failing: set[str] = set()

    async def list_nodes(self, endpoint: str, pool: str) -> tuple[NodeSighting, ...]:
        self.calls += 1
        return tuple(NodeSighting(k, v) for k, v in self.states.items())

    async def read_extensions(
        self, endpoint: str, pool: str, nodes: Sequence[NodeSighting], ext: str
    ) -> list[NodeExtensionReport]:
        reports = []
        for node in nodes:
            self.extension_reads.append(node.node_id)
            if node.node_id in self.failing:
                bad = ExtensionStatus(code="ProvisioningState/failed", level="Error", message="x")
                reports.append(
                    NodeExtensionReport(node.node_id, node.state, True, "Failed", (bad,))
                )
            else:
                ok = ExtensionStatus(code="ProvisioningState/succeeded", level="Info", message="ok")
                reports.append(
                    NodeExtensionReport(node.node_id, node.state, True, "Succeeded", (ok,))
                )
        return reports


class FakeKeyVault:
    def __init__(self, world: World) -> None:
        self.world = world
        self.created: list[tuple[str, dict[str, Any]]] = []

    async def begin_create_certificate(self, vault: str, name: str, body: dict[str, Any]) -> None:
        self.created.append((name, body))
        self.world.exists = True


class World:
    def __init__(self, *, verification_allowed: bool = True, settle_seconds: float = 0.0) -> None:
        self.now = T0
        self.mono = 0.0
        self.version = "v1"
        self.kv_reads = 0
        self.exists = True
        self.keyvault = FakeKeyVault(self)
        self.arm = FakeArm()
        self.nodes = FakeNodes()
        config = Config(
            busy_interval_seconds=10,
            drift_interval_seconds=300,
            cert_interval_seconds=300,
            node_interval_seconds=300,
            verification_allowed=verification_allowed,
            # 0: every change is written in the turn that makes it (these tests are about what is
            # decided); when status waits to settle is test_settle's, and the tests below it.
            status_settle_seconds=settle_seconds,
        )

        async def read(
            key: tuple[str, str], vault: str, name: str, now: datetime
        ) -> CertificateReading:
            self.kv_reads += 1
            if not self.exists:
                return CertificateReading(key, now, error_status=404, error_message="missing")
            facts = CertificateFacts(
                vault,
                name,
                self.version,
                "AB",
                T0 - timedelta(days=1),
                T0 + timedelta(days=364),
                True,
                (LifetimeAction("AutoRenew", lifetime_percentage=80),),
            )
            return CertificateReading(key, now, facts=facts)

        self.watcher = CertificateWatcher(
            read, interval=300, retry_interval=10, now=lambda: self.now, monotonic=lambda: self.mono
        )
        self.reconciler = Reconciler(
            keyvault=self.keyvault,  # type: ignore[arg-type]
            arm=self.arm,
            nodes=self.nodes,
            watcher=self.watcher,  # type: ignore[arg-type]
            config=config,
            now=lambda: self.now,
            monotonic=lambda: self.mono,
        )
        self.memory = ObjectMemory()
        self.status: dict[str, Any] = {}
        self.spec = base_spec(identity={"resourceId": IDENTITY})
        self.generation = 1
        self.paused = False
        self.events: list[str] = []

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def view(self, *, finalizer: bool = True) -> ObjectView:
        return ObjectView(
            "team-a",
            "render-pool",
            UID,
            self.generation,
            copy.deepcopy(self.spec),
            copy.deepcopy(self.status),
            has_finalizer=finalizer,
            paused=self.paused,
        )

    async def tick(self, *, finalizer: bool = True) -> dict[str, Any]:
        view = self.view(finalizer=finalizer)
        outcome = await self.reconciler.reconcile(view, self.memory)
        _merge(self.status, outcome.status_patch)
        self.events += [e.reason for e in outcome.events]
        return outcome.status_patch

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


async def converge(world: World, ticks: int = 4) -> None:
    for _ in range(ticks):
        await world.tick()
        world.advance(11)


async def test_first_visit_says_reconciling_and_calls_nothing() -> None:
    world = World()
    await world.tick()
    assert world.condition("Ready")["reason"] == "Reconciling"
    assert world.arm.calls == [] and world.kv_reads == 0


async def test_no_azure_write_before_the_finalizer() -> None:
    world = World()
    await world.tick()
    assert await world.tick(finalizer=False) == {}  # nor a status write: Reconciling says it
    assert world.arm.calls == []
    await world.tick()
    assert "pools.create" in world.arm.calls


async def test_create_then_ready_then_quiet() -> None:
    world = World()
    await converge(world)
    assert world.condition("Ready")["status"] == "True", world.status
    assert world.arm.pool is not None
    meta = {m["name"]: m["value"] for m in world.arm.pool["properties"]["metadata"]}
    assert meta[UID_METADATA] == UID
    ext = world.arm.pool["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
        "extensions"
    ][0]
    assert ext["settings"]["authenticationSettings"]["msiClientId"] == "looked-up-client-id"
    assert world.events.count("PoolCreated") == 1
    calls_before, kv_before = len(world.arm.calls), world.kv_reads
    world.advance(60)
    assert await world.tick() == {}  # nothing new: no write, no ARM call, no Key Vault read
    assert len(world.arm.calls) == calls_before and world.kv_reads == kv_before


async def test_our_pool_is_adopted_after_a_crash_and_a_foreign_one_is_refused() -> None:
    world = World()
    await world.tick()
    await world.tick()  # creates
    world.memory = ObjectMemory()  # the operator restarted; status was never written
    await world.tick()
    assert world.arm.calls.count("pools.create") == 1
    assert world.condition("PoolReady")["reason"] == "PoolReady"

    foreign = World()
    foreign.arm.pool = copy.deepcopy(world.arm.pool)
    assert foreign.arm.pool is not None
    foreign.arm.pool["properties"]["metadata"] = [{"name": UID_METADATA, "value": "someone-else"}]
    await converge(foreign, 2)
    assert foreign.condition("PoolReady")["reason"] == "PoolNotOwned"
    assert "pools.update" not in foreign.arm.calls and "pools.delete" not in foreign.arm.calls


async def test_report_leaves_disruptive_changes_and_scale_to_zero_applies_them() -> None:
    world = World()
    await converge(world)
    world.spec["vmSize"] = "STANDARD_D4S_V3"
    world.generation = 2
    await converge(world, 2)
    assert world.condition("PoolReady")["reason"] == "UpdateRequiresDisruption"
    assert world.condition("Ready")["status"] == "False"
    assert world.arm.pool is not None
    assert world.arm.pool["properties"]["vmSize"] == "STANDARD_DS2_V2"

    world.spec["disruptiveUpdatePolicy"] = "ScaleToZero"
    world.generation = 3
    await converge(world, 6)
    props = world.arm.pool["properties"]
    assert props["vmSize"] == "STANDARD_D4S_V3"
    assert props["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == 1
    assert world.condition("Ready")["status"] == "True"
    assert world.events.index("PoolScalingToZero") < world.events.index("PoolUpdated")


async def test_failures_back_off_instead_of_hot_looping() -> None:
    world = World()
    await converge(world)
    world.arm.down = True
    world.advance(301)
    before = world.arm.calls.count("pools.get")
    for _ in range(300):  # ten minutes of 2-second ticks during an outage
        await world.tick()
        world.advance(2)
    attempts = world.arm.calls.count("pools.get") - before
    assert 4 <= attempts <= 15, attempts  # jittered exponential backoff, not 300 calls
    assert world.condition("PoolReady")["reason"] == "AzureUnavailable"
    assert world.events.count("AzureUnavailable") == 1  # the Warning once, not per retry
    world.arm.down = False
    for _ in range(200):
        await world.tick()
        world.advance(2)
    assert world.condition("Ready")["status"] == "True"


async def test_rotation_is_counted_once_and_propagates() -> None:
    world = World()
    await converge(world)
    world.version = "v2"
    world.advance(301)
    await world.tick()
    item = world.status["certificates"][0]
    assert (item["version"], item["rotations"]) == ("v2", 1)
    assert world.condition("NodesReady")["reason"] == "RotationPropagating"
    for _ in range(40):
        world.advance(10)
        await world.tick()
    assert world.status["certificates"][0]["rotations"] == 1
    assert world.events.count("CertificateRotated") == 1
    assert world.condition("Ready")["status"] == "True"


async def test_a_foreign_vault_is_refused_before_any_call() -> None:
    world = World()
    world.spec["certificates"] = [{"vaultUrl": "https://collector.example.net", "name": "x"}]
    await converge(world, 3)
    assert world.condition("Ready")["reason"] == "VaultNotAllowed"
    assert world.arm.calls == [] and world.kv_reads == 0


async def test_verification_forbidden_by_the_install_is_refused_before_any_call() -> None:
    world = World(verification_allowed=False)
    world.spec["verification"] = {"enabled": True}
    await converge(world, 3)
    assert world.condition("Ready")["reason"] == "VerificationNotAllowed"
    assert world.condition("Stalled")["status"] == "True"
    assert world.arm.calls == [] and world.kv_reads == 0
    world.spec["verification"] = {"enabled": False}
    world.generation += 1
    await converge(world)
    assert world.condition("Ready")["reason"] != "VerificationNotAllowed"


async def test_a_spec_refused_after_an_edit_is_a_verdict_on_the_new_generation() -> None:
    world = World()
    await converge(world)
    assert world.condition("Ready")["status"] == "True"
    world.generation = 2
    world.spec["certificates"] = [{"vaultUrl": "https://collector.example.net", "name": "x"}]
    await world.tick()
    assert world.status["observedGeneration"] == 2  # no tool waits for a verdict it has
    stalled = world.condition("Stalled")
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == (
        "True",
        "VaultNotAllowed",
        2,
    )
    assert world.condition("Reconciling")["status"] == "False"
    assert world.events.count("VaultNotAllowed") == 1  # a Warning, once
    await world.tick()
    assert world.events.count("VaultNotAllowed") == 1


async def test_a_pause_is_stamped_and_neither_stalls_nor_reconciles() -> None:
    world = World()
    await converge(world)
    world.generation = 2
    world.spec["vmSize"] = "STANDARD_D4S_V3"
    world.paused = True
    await world.tick()
    assert world.status["observedGeneration"] == 2
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReconcilePaused")
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Reconciling")["status"] == "False"


async def test_create_if_missing_creates_once_with_auto_renew() -> None:
    world = World()
    world.exists = False
    cert = world.spec["certificates"][0]
    cert["createIfMissing"] = {"subject": "CN=render.example.com"}
    await world.tick()
    world.advance(11)
    await world.tick()
    assert len(world.keyvault.created) == 1
    name, body = world.keyvault.created[0]
    assert name == "mycert"
    assert body["policy"]["issuer"] == {"name": "Self"}
    assert body["policy"]["lifetime_actions"] == [
        {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
    ]
    assert "CertificateCreated" in world.events
    await converge(world)
    assert len(world.keyvault.created) == 1
    assert world.condition("CertificateReady")["status"] == "True"


async def test_a_missing_certificate_without_create_if_missing_is_reported() -> None:
    world = World()
    world.exists = False
    await converge(world)
    assert world.keyvault.created == []
    assert world.condition("CertificateReady")["reason"] == "CertificateNotFound"


async def test_a_refused_create_names_the_cause_and_backs_off() -> None:
    world = World()
    world.exists = False
    world.spec["certificates"][0]["createIfMissing"] = {"subject": "CN=render.example.com"}
    attempts = []

    async def refuse(vault: str, name: str, body: dict[str, Any]) -> None:
        attempts.append(name)
        raise AzureCallError(
            service="keyvault",
            operation="certificates.create",
            status=403,
            code="Forbidden",
            message="no certificates create permission",
        )

    world.keyvault.begin_create_certificate = refuse  # type: ignore[method-assign]
    for _ in range(150):  # five minutes of 2-second ticks
        await world.tick()
        world.advance(2)
    condition = world.condition("CertificateReady")
    assert condition["reason"] == "AuthorizationFailed"
    assert "create permission" in condition["message"]
    assert 2 <= len(attempts) <= 10, attempts
    assert world.events.count("CertificateCreateFailed") == 1


async def test_one_identity_read_for_many_pools() -> None:
    world = World()
    views = [
        ObjectView("team-a", f"pool-{i}", f"uid-{i}", 1, copy.deepcopy(world.spec), {})
        for i in range(20)  # twenty objects sharing one identity, ticking together
    ]
    memories = [ObjectMemory() for _ in views]
    pairs = list(zip(views, memories, strict=True))
    first = await asyncio.gather(*(world.reconciler.reconcile(v, m) for v, m in pairs))
    again = [
        (ObjectView(v.namespace, v.name, v.uid, 1, v.spec, o.status_patch), m)
        for (v, m), o in zip(pairs, first, strict=True)
    ]
    await asyncio.gather(*(world.reconciler.reconcile(v, m) for v, m in again))
    assert world.arm.calls.count("identities.get") == 1
    # Every object did reconcile its pool (never-seen pools start with the guarded PUT).
    assert world.arm.calls.count("pools.get") + world.arm.calls.count("pools.create") >= 20


async def test_a_never_seen_pool_is_created_without_a_read_first() -> None:
    # The PUT carries If-None-Match: *, so the GET before it is not needed for safety: a fleet's
    # first convergence costs one ARM read per pool fewer (ARM's read bucket bounds it).
    world = World()
    await world.tick()
    await world.tick()
    assert world.arm.calls[:2] == ["identities.get", "pools.create"], world.arm.calls
    assert world.arm.calls.count("pools.get") == 0
    # Once status carries the pool, a reconcile reads before it writes (a restart included).
    world.memory = ObjectMemory()
    world.advance(400)
    await world.tick()
    assert world.arm.calls.count("pools.get") == 1
    assert world.arm.calls.count("pools.create") == 1


async def test_a_never_seen_name_taken_by_a_foreign_pool_is_refused_after_the_412() -> None:
    world = World()
    world.arm.pool = {
        "name": "render-pool",
        "properties": {"metadata": [{"name": UID_METADATA, "value": "someone-else"}]},
    }
    await world.tick()
    await world.tick()
    assert world.arm.calls.count("pools.create") == 1  # answered 412
    assert world.arm.calls.count("pools.get") == 1  # the read that judges what is there
    assert world.condition("PoolReady")["reason"] == "PoolNotOwned"
    assert "pools.update" not in world.arm.calls and "pools.delete" not in world.arm.calls


async def test_scale_to_zero_says_a_certificate_change_needs_recreate() -> None:
    # Adding a certificate changes the Key Vault extension's settings; Azure Batch changes the
    # extensions of no existing pool (Batch extensions doc), so scaling to 0 would not help.
    world = World()
    await converge(world)
    extra = dict(world.spec["certificates"][0])
    extra["name"] = "another"
    extra.pop("secretId", None)
    world.spec["certificates"] = [*world.spec["certificates"], extra]
    world.spec["disruptiveUpdatePolicy"] = "ScaleToZero"
    world.generation = 2
    await converge(world, 2)
    assert world.condition("PoolReady")["reason"] == "UpdateRequiresRecreate"
    assert "Recreate" in world.condition("PoolReady")["message"]
    assert "PoolScalingToZero" not in world.events
    assert world.arm.pool is not None
    assert world.arm.pool["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == 1


async def test_revoked_access_under_healthy_nodes_is_named_from_the_control_plane() -> None:
    # A fetch failing after a first success is invisible on real nodes: the operator checks the
    # chain itself once per drift interval while the nodes look healthy.
    world = World()
    await converge(world)
    assert world.condition("NodesReady")["status"] == "True"
    world.arm.vault_policies = []
    world.advance(301)
    await converge(world, 2)
    condition = world.condition("NodesReady")
    assert (condition["status"], condition["reason"]) == ("False", "VaultAccessDenied")
    assert "still report the extension healthy" in condition["message"]
    assert "principal principal has no secrets get" in condition["message"]
    world.arm.vault_policies = [{"objectId": "principal", "permissions": {"secrets": ["get"]}}]
    world.advance(301)
    await converge(world, 2)
    assert world.condition("NodesReady")["status"] == "True"


async def test_next_check_in_is_when_work_is_due_not_a_tick() -> None:
    """The scheduler wakes an object when the reconcile says: the first visit at once, a pool
    being created at the busy interval, a quiet one when its drift/node check is due."""
    world = World()

    async def next_check_in() -> float:
        view = ObjectView(
            "team-a",
            "render-pool",
            UID,
            world.generation,
            copy.deepcopy(world.spec),
            copy.deepcopy(world.status),
        )
        outcome = await world.reconciler.reconcile(view, world.memory)
        _merge(world.status, outcome.status_patch)
        # Observed certificates (a change to one wakes the object), once past the first visit.
        assert (
            len(outcome.certificates) == len(world.spec["certificates"])
            or not world.memory.pool.seen
        )
        return outcome.next_check_in

    assert await next_check_in() == 0.0  # first visit: Reconciling written, the work is due now
    assert await next_check_in() == 10.0  # pool created: follow it at the busy interval
    await converge(world)
    assert world.condition("Ready")["status"] == "True"
    world.advance(60)
    due = await next_check_in()
    assert 150 < due <= 300  # the drift and node checks, minutes away; no tick in between


async def test_a_node_pass_reads_only_new_changed_and_unhealthy_nodes() -> None:
    world = World()
    world.nodes.states = {f"n{i}": "idle" for i in range(5)}
    await converge(world)
    assert sorted(set(world.nodes.extension_reads)) == [f"n{i}" for i in range(5)]
    world.nodes.extension_reads.clear()
    world.nodes.states["n1"] = "rebooting"
    world.nodes.states["n5"] = "idle"
    world.advance(301)
    await world.tick()
    assert sorted(world.nodes.extension_reads) == ["n1", "n5"]  # the others carried over
    assert world.status["nodes"]["total"] == 6
    assert world.status["nodes"]["transitioning"] == 1
    world.nodes.extension_reads.clear()
    world.nodes.states["n1"] = "idle"
    world.nodes.failing.add("n2")  # fails behind an unchanged state: found by the slow rotation
    for _ in range(13):
        world.advance(301)
        await world.tick()
        if world.status["nodes"]["failed"]:
            break
    assert world.status["nodes"]["failed"] == 1
    assert world.condition("NodesReady")["status"] == "False"


async def test_a_rotation_reads_no_node_until_its_window_closes_then_every_node_once() -> None:
    world = World()
    world.nodes.states = {f"n{i}": "idle" for i in range(3)}
    await converge(world)
    lists = world.nodes.calls
    world.nodes.extension_reads.clear()
    world.version = "v2"
    world.advance(301)  # the certificate re-read finds v2; the node pass is due as well
    await world.tick()
    assert world.condition("NodesReady")["reason"] == "RotationPropagating"
    passes_at_rotation = world.nodes.calls - lists
    assert passes_at_rotation <= 1  # the interval's pass, never an extra one for the rotation
    world.nodes.extension_reads.clear()
    polling = world.spec.get("keyVaultExtension", {}).get("pollingIntervalSeconds", 300)
    world.advance(polling + 1)
    await world.tick()
    assert sorted(world.nodes.extension_reads) == ["n0", "n1", "n2"]
    assert world.condition("NodesReady")["status"] == "True"


async def test_last_check_time_moves_only_on_change_or_heartbeat() -> None:
    world = World()
    await converge(world)
    first = world.status["nodes"]["lastCheckTime"]
    for _ in range(5):
        world.advance(301)
        patch = await world.tick()
        assert "nodes" not in patch  # a node pass that changed nothing writes nothing
    assert world.status["nodes"]["lastCheckTime"] == first
    world.nodes.states["n2"] = "idle"
    world.advance(301)
    patch = await world.tick()
    assert patch["nodes"]["total"] == 2 and patch["nodes"]["lastCheckTime"] != first
    moved = world.status["nodes"]["lastCheckTime"]
    for _ in range(13):
        world.advance(301)
        await world.tick()
    assert world.status["nodes"]["lastCheckTime"] != moved  # the hourly heartbeat


async def test_a_kept_sighting_holds_what_later_turns_read_and_no_more() -> None:
    world = World()
    await converge(world)
    kept = world.memory.pool.seen
    assert kept is not None
    assert set(kept.body) == {"properties", "identity"}
    assert set(kept.properties) == {
        "vmSize",
        "provisioningState",
        "allocationState",
        "currentDedicatedNodes",
        "deploymentConfiguration",
        "metadata",  # the owner's uid (verification acts only on an owned pool)
    }
    # The diagnosis reads the identities ARM filled in and our extension's client id from it.
    assert extension_client_id(kept.body, "KVExtensions") == "looked-up-client-id"
    assert world.condition("NodesReady")["status"] == "True"


async def test_a_failed_create_without_a_read_is_followed_by_a_read() -> None:
    # If the guarded PUT fails with something other than 412, the pool may exist all the same
    # (real ARM's answer to If-None-Match on an existing pool is unconfirmed): read next time.
    world = World()
    await world.tick()
    world.arm.fail_next = AzureCallError(
        service="arm", operation="pools.create", status=409, code="Conflict", message="exists?"
    )
    await world.tick()
    assert world.arm.calls.count("pools.create") == 1
    assert world.arm.calls.count("pools.get") == 0
    world.advance(60)
    await world.tick()
    assert world.arm.calls.count("pools.get") == 1  # read first this time
    assert world.arm.calls.count("pools.create") == 2  # absent, so created


async def test_progress_waits_to_settle_while_verdicts_are_written_at_once() -> None:
    # A pool that converges within the settle window costs two status writes: the first visit's
    # and Ready's, which carries every step in between (reconcile/settle.py).
    world = World(settle_seconds=30)
    writes: list[dict[str, Any]] = []
    for _ in range(20):
        patch = await world.tick()
        if patch:
            writes.append(patch)
        if world.condition("Ready")["status"] == "True":
            break
        world.advance(1)
    assert world.condition("Ready")["status"] == "True", world.status
    assert len(writes) == 2, writes
    assert writes[1]["pool"]["resourceId"] and writes[1]["nodes"]["total"] == 1
    assert world.events.count("PoolCreated") == 1  # an action's Event, once, when it happens
    # A rotation is a durable fact, written at once; the nodes' catching up is a verdict (Ready).
    world.version = "v2"
    world.advance(301)
    assert (await world.tick())["certificates"][0]["rotations"] == 1
    assert world.events.count("CertificateRotated") == 1


async def test_progress_unwritten_goes_out_by_the_settle_deadline() -> None:
    world = World(settle_seconds=30)
    await world.tick()  # the first visit: written
    world.advance(1)
    created = await world.tick()  # the pool is created: progress, not a verdict
    assert created == {} and world.arm.pool is not None
    outcome = await world.reconciler.reconcile(world.view(), world.memory)
    assert outcome.status_patch == {} and outcome.next_check_in <= 30
    world.advance(30)
    assert (await world.tick())["pool"]["resourceId"]
