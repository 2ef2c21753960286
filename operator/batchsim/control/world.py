"""Control API, the world's moving parts: node behaviour, pools, drift, nodes taken down.

Role: shape how simulated nodes come and go (globally or per pool), look at pools and their
nodes' extension runtime, change or delete a pool behind the operator's back (drift, applied
without ARM's update refusals, as a portal user with other tools might), force a node state.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchsim.arm.errors import ArmError
from batchsim.arm.poolspec import merge_patch, next_etag, validate_pool_body
from batchsim.batch import nodes
from batchsim.control.http import ControlError, Route, ok, read_body
from batchsim.world import NodeBehaviour, Pool

if TYPE_CHECKING:
    from batchsim.core import Simulation

POOL_PATH = "/subscriptions/{sub}/resourceGroups/{rg}/batchAccounts/{account}/pools/{pool}"
_BEHAVIOUR_KEYS = {
    "arrivalDelaySeconds": "arrival_delay_s",
    "bootSeconds": "boot_s",
    "removalDelaySeconds": "removal_delay_s",
    "deleteDurationSeconds": "delete_duration_s",
    "extensionRetryIntervalSeconds": "extension_retry_interval_s",
    "extensionMaxAttempts": "extension_max_attempts",
    "capacity": "capacity",
    "lroRetryAfterSeconds": "lro_retry_after_s",
    "talkativeExtension": "talkative_extension",
}


def behaviour_to_json(b: NodeBehaviour) -> dict[str, Any]:
    raw = asdict(b)
    return {k: raw[v] for k, v in _BEHAVIOUR_KEYS.items()}


def apply_behaviour(target: NodeBehaviour, data: dict[str, Any]) -> None:
    for key, value in data.items():
        attr = _BEHAVIOUR_KEYS.get(key)
        if attr is None:
            if key == "pool":
                continue
            raise ControlError(400, f"unknown node behaviour '{key}'")
        if attr == "talkative_extension":
            if not isinstance(value, bool):
                raise ControlError(400, f"'{key}' must be true or false")
            target.talkative_extension = value
            continue
        if attr == "capacity" and value is None:
            target.capacity = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ControlError(400, f"'{key}' must be a non-negative number")
        current = getattr(target, attr)
        setattr(
            target,
            attr,
            int(value) if isinstance(current, int) or attr == "capacity" else float(value),
        )


def routes(sim: Simulation) -> list[Route]:
    def pool_of(request: web.Request) -> Pool:
        m = request.match_info
        account = sim.world.account(m["sub"], m["rg"], m["account"])
        pool = account.pools.get(m["pool"].lower()) if account else None
        if pool is None:
            raise ControlError(404, "no such pool")
        return pool

    async def get_behaviour(_: web.Request) -> web.Response:
        return ok(behaviour_to_json(sim.world.behaviour))

    async def put_behaviour(request: web.Request) -> web.Response:
        apply_behaviour(sim.world.behaviour, await read_body(request))
        return ok(behaviour_to_json(sim.world.behaviour))

    async def put_pool_behaviour(request: web.Request) -> web.Response:
        pool = pool_of(request)
        key = pool.arm_id.lower()
        current = sim.world.pool_behaviour.get(key) or NodeBehaviour(**asdict(sim.world.behaviour))
        apply_behaviour(current, await read_body(request))
        sim.world.pool_behaviour[key] = current
        return ok(behaviour_to_json(current))

    def pool_json(pool: Pool) -> dict[str, Any]:
        return {
            "id": pool.arm_id,
            "provisioningState": pool.provisioning_state,
            "allocationState": pool.allocation_state,
            "etag": pool.etag,
            "targetDedicatedNodes": pool.target_dedicated,
            "targetLowPriorityNodes": pool.target_low_priority,
            "nodes": [
                {
                    "id": n.node_id,
                    "state": n.state,
                    "dedicated": n.dedicated,
                    "fetchBlocked": n.fetch_blocked,
                    "busySlots": n.busy_slots,
                    "taskHang": n.task_hang,
                    "extensions": {
                        name: {
                            "provisioningState": rt.provisioning_state,
                            "attempts": rt.attempts,
                            "versions": rt.versions,
                            "error": rt.error_message,
                        }
                        for name, rt in n.extension_runtime.items()
                    },
                }
                for n in pool.nodes.values()
            ],
        }

    async def list_pools(_: web.Request) -> web.Response:
        return ok({"pools": [pool_json(p) for p in sim.world.all_pools()]})

    async def get_pool(request: web.Request) -> web.Response:
        return ok(pool_json(pool_of(request)))

    async def drift_pool(request: web.Request) -> web.Response:
        pool = pool_of(request)
        d = await read_body(request)
        try:
            patch = validate_pool_body(d, partial=True)
        except ArmError as err:
            raise ControlError(400, f"{err.code}: {err.message} {err.details}") from None
        before = pool.spec["properties"].get("scaleSettings")
        pool.spec = merge_patch(pool.spec, patch)
        now = sim.clock.timestamp()
        pool.etag, pool.last_modified = next_etag(pool.etag, now), now
        if pool.spec["properties"].get("scaleSettings") != before:
            nodes.start_resize(pool, now, sim.world.behaviour_for(pool))
        return ok(pool_json(pool))

    async def delete_pool(request: web.Request) -> web.Response:
        pool = pool_of(request)
        account = sim.world.account(pool.subscription_id, pool.resource_group, pool.account)
        assert account is not None
        account.pools.pop(pool.name.lower(), None)
        return ok()

    async def set_node_state(request: web.Request) -> web.Response:
        pool = pool_of(request)
        node = pool.nodes.get(request.match_info["node"])
        if node is None:
            raise ControlError(404, "no such node")
        d = await read_body(request)
        state = d.get("state")
        if state is not None and not isinstance(state, str):
            raise ControlError(400, "'state' is a Batch node state or null")
        node.forced_state = state
        return ok(pool_json(pool))

    async def patch_node(request: web.Request) -> web.Response:
        """A node's own faults: ``fetchBlocked`` (its Key Vault extension cannot reach the
        vault and keeps what it has), ``busySlots`` (task slots held by the user's work),
        ``taskHang`` (tasks started on it never finish by themselves), ``taskOutput`` (what
        every task on it prints instead of its command's output: a broken or hostile node;
        null clears it)."""
        pool = pool_of(request)
        node = pool.nodes.get(request.match_info["node"])
        if node is None:
            raise ControlError(404, "no such node")
        d = await read_body(request)
        for key, attr, kind in (
            ("fetchBlocked", "fetch_blocked", bool),
            ("busySlots", "busy_slots", int),
            ("taskHang", "task_hang", bool),
        ):
            if key not in d:
                continue
            value = d[key]
            if not isinstance(value, kind) or (
                kind is int and (isinstance(value, bool) or value < 0)
            ):
                raise ControlError(400, f"'{key}' must be a {kind.__name__}")
            setattr(node, attr, value)
        if "taskOutput" in d:
            output = d["taskOutput"]
            if output is not None and not isinstance(output, str):
                raise ControlError(400, "'taskOutput' must be a string or null")
            node.task_output = output
        unknown = set(d) - {"fetchBlocked", "busySlots", "taskHang", "taskOutput"}
        if unknown:
            raise ControlError(400, f"unknown node fields {sorted(unknown)}")
        return ok(pool_json(pool))

    return [
        ("PATCH", POOL_PATH + "/nodes/{node}", patch_node),
        ("GET", "/nodeBehaviour", get_behaviour),
        ("PUT", "/nodeBehaviour", put_behaviour),
        ("GET", "/pools", list_pools),
        ("GET", POOL_PATH, get_pool),
        ("PATCH", POOL_PATH, drift_pool),
        ("DELETE", POOL_PATH, delete_pool),
        ("PUT", POOL_PATH + "/nodeBehaviour", put_pool_behaviour),
        ("PUT", POOL_PATH + "/nodes/{node}/state", set_node_state),
    ]
