"""Simulated pool nodes: allocation, resizing, boot, the extensions they run, and their state.

Role: move every pool forward to "now" on the simulated clock. Called by the simulation's tick
(before any request is answered and from a background ticker), never by handlers directly.

Invariants:
* a resize (create, scale change) sets ``allocationState`` Resizing and completes after
  ``arrival_delay_s`` (growing) or ``removal_delay_s`` (shrinking) of simulated time, at once
  for all nodes; ``capacity`` caps what a resize can get and reports a resize error;
* a new node snapshots the pool's identities (resolved to clientId/principalId) and extensions,
  then boots for ``boot_s`` (state ``starting``) before its extensions run;
* node state: ``creating`` for the first half of the boot (a recorded node list shows
  ``creating`` at the moment the pool turns steady: batch-dataplane-nodes-extensions.json [1],
  [4]; later ``starting`` → ``idle``), then ``starting`` until booted and, with ``requireInitialSync``, until every Key Vault
  extension succeeded; ``unusable`` if one failed for good; otherwise ``idle``; a state forced
  through the control API (``take a node down``) wins;
* node ids look like Batch's (``tvmps_<64 hex>_d`` / ``_p``) and are stable per pool and serial.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable

from batchsim.arm.poolspec import scale_targets
from batchsim.batch import kvextension
from batchsim.world import ExtensionRuntime, Identity, Node, NodeBehaviour, Pool


def start_resize(pool: Pool, now: float, behaviour: NodeBehaviour) -> None:
    """Begin moving the pool towards the targets its scale settings ask for."""
    dedicated, low = scale_targets(pool.spec)
    pool.target_dedicated, pool.target_low_priority = dedicated, low
    current_d, current_l = pool.current_counts()
    growing = dedicated > current_d or low > current_l
    delay = behaviour.arrival_delay_s if growing else behaviour.removal_delay_s
    if (
        (dedicated, low) == (current_d, current_l)
        and pool.resize_due is None
        and pool.allocation_state == "Steady"
    ):
        return
    pool.allocation_state = "Resizing"
    pool.allocation_state_transition_time = now
    pool.resize_due = now + (delay if (dedicated, low) != (current_d, current_l) else 0.0)
    pool.resize_errors = []


def stop_resize(pool: Pool, now: float) -> None:
    """``stopResize``: the pool keeps the nodes it has and becomes Steady.

    Unconfirmed: Azure passes through ``Stopping``; the simulator settles at once.
    """
    if pool.allocation_state != "Resizing":
        return
    pool.resize_due = None
    pool.allocation_state = "Steady"
    pool.allocation_state_transition_time = now


def _node_id(pool: Pool, serial: int, dedicated: bool) -> str:
    digest = hashlib.sha256(f"{pool.arm_id.lower()}#{serial}".encode()).hexdigest()
    return f"tvmps_{digest}_{'d' if dedicated else 'p'}"


def _new_node(
    pool: Pool,
    dedicated: bool,
    at: float,
    behaviour: NodeBehaviour,
    identity_lookup: Callable[[str], Identity | None],
) -> Node:
    pool.node_serial += 1
    serial = pool.node_serial
    identities: dict[str, dict[str, str]] = {}
    for arm_id in (pool.spec.get("identity") or {}).get("userAssignedIdentities") or {}:
        found = identity_lookup(arm_id)
        if found is not None:
            identities[found.arm_id] = {
                "clientId": found.client_id,
                "principalId": found.principal_id,
            }
    vmc = (
        pool.spec["properties"]
        .get("deploymentConfiguration", {})
        .get("virtualMachineConfiguration", {})
    )
    extensions = copy.deepcopy(vmc.get("extensions") or [])
    node = Node(
        node_id=_node_id(pool, serial, dedicated),
        dedicated=dedicated,
        state="creating",
        state_transition_time=at,
        allocation_time=at,
        ready_at=at + behaviour.boot_s,
        ip_address=f"10.{(serial >> 16) & 255}.{(serial >> 8) & 255}.{(serial & 255) or 4}",
        vm_size=str(pool.spec["properties"].get("vmSize", "")).lower(),
        identities=identities,
        extensions=extensions,
    )
    for ext in extensions:
        if kvextension.is_kv_extension(ext):
            node.extension_runtime[str(ext["name"])] = ExtensionRuntime(
                name=str(ext["name"]), next_attempt=node.ready_at
            )
    return node


def _apply_resize(
    pool: Pool,
    at: float,
    behaviour: NodeBehaviour,
    identity_lookup: Callable[[str], Identity | None],
) -> None:
    want_d, want_l = pool.target_dedicated, pool.target_low_priority
    errors = []
    if behaviour.capacity is not None and want_d + want_l > behaviour.capacity:
        # Unconfirmed: the exact resize error Batch reports when capacity is short.
        errors.append(
            {
                "code": "AllocationFailed",
                "message": f"Desired number of nodes ({want_d + want_l}) could not be allocated: "
                f"only {behaviour.capacity} are available.",
            }
        )
        want_d = min(want_d, behaviour.capacity)
        want_l = min(want_l, behaviour.capacity - want_d)
    for dedicated, want in ((True, want_d), (False, want_l)):
        mine = [n for n in pool.nodes.values() if n.dedicated == dedicated]
        for node in mine[want:]:  # newest last: shrink removes the newest nodes
            del pool.nodes[node.node_id]
        for _ in range(want - len(mine)):
            node = _new_node(pool, dedicated, at, behaviour, identity_lookup)
            pool.nodes[node.node_id] = node
    pool.resize_due = None
    pool.resize_errors = errors
    pool.allocation_state = "Steady"
    pool.allocation_state_transition_time = at


def advance_pool(
    pool: Pool,
    now: float,
    behaviour: NodeBehaviour,
    identity_lookup: Callable[[str], Identity | None],
    vault_lookup: kvextension.VaultLookup,
    resolve: kvextension.Resolver,
    tenant_id: str = "",
    authorize: kvextension.Authorize | None = None,
) -> None:
    if pool.provisioning_state == "Deleting":
        return
    if pool.resize_due is not None and now >= pool.resize_due:
        _apply_resize(pool, pool.resize_due, behaviour, identity_lookup)
    for node in pool.nodes.values():
        _advance_node(node, now, behaviour, vault_lookup, resolve, tenant_id, authorize)


def _advance_node(
    node: Node,
    now: float,
    behaviour: NodeBehaviour,
    vault_lookup: kvextension.VaultLookup,
    resolve: kvextension.Resolver,
    tenant_id: str,
    authorize: kvextension.Authorize | None = None,
) -> None:
    blocking = False
    failed = False
    for ext in node.extensions:
        if not kvextension.is_kv_extension(ext):
            continue
        settings = kvextension.parse_kv_extension(ext)
        rt = node.extension_runtime.setdefault(
            settings.name, ExtensionRuntime(name=settings.name, next_attempt=node.ready_at)
        )

        def do_fetch(settings: kvextension.KvSettings = settings) -> kvextension.FetchOutcome:
            return kvextension.fetch(settings, node, vault_lookup, resolve, tenant_id, authorize)

        kvextension.step(rt, settings, node, now, behaviour, do_fetch)
        if settings.require_initial_sync and not rt.succeeded_once:
            blocking = True
            failed = failed or rt.provisioning_state == "Failed"
    if node.forced_state is not None:
        state = node.forced_state
    elif now < node.ready_at - behaviour.boot_s / 2:
        state = "creating"
    elif now < node.ready_at:
        state = "starting"
    elif failed:
        # Unconfirmed: how Batch reports a node whose required initial sync failed for good.
        state = "unusable"
    elif blocking:
        state = "starting"
    else:
        state = "idle"
    if state != node.state:
        node.state = state
        node.state_transition_time = now
