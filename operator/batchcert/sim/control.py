"""The simulator's control API: ``https://management.sim.test:PORT/_sim/...`` (JSON).

Role: everything a test, the demo or a developer does to the simulated world that is not an
Azure call: seed resources, move and scale the clock, force renewals, shape node behaviour,
take nodes down, change pools behind the operator's back (drift), read the request log and
counters, inject faults, tune throttling, reset. Documented endpoint by endpoint in README.md;
``client.SimControl`` wraps it.

Invariants: no authentication (loopback-only developer tooling); every handler answers JSON;
bad input is a 400 ``{"error": "..."}``, unknown things a 404; mutations tick the simulation
afterwards so the next Azure call sees their consequences; requests here are not logged in the
request log (it records what clients did to "Azure", not to the simulator).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchcert.sim import nodes, seed
from batchcert.sim.armerrors import ArmError
from batchcert.sim.entra import FederatedCredential
from batchcert.sim.faults import FaultSpecError
from batchcert.sim.keyvault_policy import KeyVaultError
from batchcert.sim.poolspec import merge_patch, next_etag, validate_pool_body
from batchcert.sim.requestlog import RequestFilter
from batchcert.sim.throttle import BucketSpec
from batchcert.sim.world import NodeBehaviour, Pool

if TYPE_CHECKING:
    from batchcert.sim.core import Simulation

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
}


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ok(body: Any = None, status: int = 200) -> web.Response:
    return web.json_response(body if body is not None else {"ok": True}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    value = data.get(key)
    if value is None or not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlError(400, f"'{key}' is required ({getattr(kind, '__name__', kind)})")
    return value


def behaviour_to_json(b: NodeBehaviour) -> dict[str, Any]:
    raw = asdict(b)
    return {k: raw[v] for k, v in _BEHAVIOUR_KEYS.items()}


def _apply_behaviour(target: NodeBehaviour, data: dict[str, Any]) -> None:
    for key, value in data.items():
        attr = _BEHAVIOUR_KEYS.get(key)
        if attr is None:
            if key == "pool":
                continue
            raise ControlError(400, f"unknown node behaviour '{key}'")
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


def build_control_app(
    sim: Simulation,
    *,
    reset: Callable[[str], dict[str, Any]],
    save: Callable[[], None],
    info: Callable[[], dict[str, Any]],
) -> web.Application:
    app = web.Application(middlewares=[_errors(sim)])
    r = app.router

    def pool_of(request: web.Request) -> Pool:
        m = request.match_info
        account = sim.world.account(m["sub"], m["rg"], m["account"])
        pool = account.pools.get(m["pool"].lower()) if account else None
        if pool is None:
            raise ControlError(404, "no such pool")
        return pool

    async def get_info(_: web.Request) -> web.Response:
        return _ok(info())

    async def post_reset(request: web.Request) -> web.Response:
        data = await _body(request)
        return _ok(reset(str(data.get("seed", "none"))))

    async def post_save(_: web.Request) -> web.Response:
        save()
        return _ok()

    async def get_state(_: web.Request) -> web.Response:
        return _ok({"world": sim.world.snapshot(), "clock": sim.clock.now().isoformat()})

    async def put_resource_group(request: web.Request) -> web.Response:
        d = await _body(request)
        seed.add_resource_group(
            sim, _need(d, "subscriptionId"), _need(d, "name"), d.get("location", "westeurope")
        )
        return _ok()

    async def put_account(request: web.Request) -> web.Response:
        d = await _body(request)
        account = seed.add_batch_account(
            sim,
            _need(d, "subscriptionId"),
            _need(d, "resourceGroup"),
            _need(d, "name"),
            d.get("location", "westeurope"),
        )
        return _ok({"id": account.arm_id, "accountEndpoint": sim.account_endpoint(account)})

    async def put_identity(request: web.Request) -> web.Response:
        d = await _body(request)
        ident = seed.add_identity(
            sim,
            _need(d, "subscriptionId"),
            _need(d, "resourceGroup"),
            _need(d, "name"),
            d.get("location", "westeurope"),
            client_id=d.get("clientId"),
            principal_id=d.get("principalId"),
        )
        return _ok(
            {
                "id": ident.arm_id,
                "clientId": ident.client_id,
                "principalId": ident.principal_id,
                "tenantId": ident.tenant_id,
            }
        )

    async def put_vault(request: web.Request) -> web.Response:
        d = await _body(request)
        vault = seed.add_vault(
            sim,
            _need(d, "subscriptionId"),
            _need(d, "resourceGroup"),
            _need(d, "name"),
            d.get("location", "westeurope"),
        )
        return _ok({"id": vault.arm_id, "vaultUri": sim.vault_uri(vault.name)})

    async def post_access_policy(request: web.Request) -> web.Response:
        d = await _body(request)
        perms = _need(d, "permissions", dict)
        vault = seed.grant(
            sim,
            request.match_info["vault"],
            _need(d, "objectId"),
            perms,
            operation=d.get("operation", "add"),
        )
        return _ok({"accessPolicies": [asdict(p) for p in vault.access_policies]})

    async def put_certificate(request: web.Request) -> web.Response:
        d = await _body(request)
        m = request.match_info
        action = d.get("lifetimeAction", seed.AUTO_RENEW_80)
        if "autoRenewAtPercentage" in d:
            action = {
                "trigger": {"lifetime_percentage": d["autoRenewAtPercentage"]},
                "action": {"action_type": "AutoRenew"},
            }
        version = seed.add_certificate(
            sim,
            m["vault"],
            m["name"],
            subject=d.get("subject"),
            validity_months=int(d.get("validityMonths", 12)),
            lifetime_action=action,
            enabled=bool(d.get("enabled", True)),
        )
        return _ok({"version": version, **sim.kv.certificate_info(m["vault"], m["name"])})

    async def get_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        return _ok(sim.kv.certificate_info(m["vault"], m["name"]))

    async def renew_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        return _ok({"version": sim.kv.renew_certificate(m["vault"], m["name"])})

    async def patch_certificate(request: web.Request) -> web.Response:
        d = await _body(request)
        m = request.match_info
        if "enabled" in d:
            sim.kv.set_certificate_enabled(m["vault"], m["name"], bool(d["enabled"]))
        if "lifetimeActions" in d:
            sim.kv.set_policy_lifetime_actions(
                m["vault"], m["name"], _need(d, "lifetimeActions", list)
            )
        return _ok(sim.kv.certificate_info(m["vault"], m["name"]))

    async def delete_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        sim.kv.delete_certificate(m["vault"], m["name"])
        return _ok()

    async def post_principal(request: web.Request) -> web.Response:
        d = await _body(request)
        federated = [
            FederatedCredential(
                _need(f, "issuer"),
                _need(f, "subject"),
                list(f.get("audiences") or ["api://AzureADTokenExchange"]),
            )
            for f in d.get("federated") or []
        ]
        app_reg = sim.directory.register(
            _need(d, "name"),
            client_id=d.get("clientId"),
            object_id=d.get("objectId"),
            client_secret=d.get("clientSecret"),
            federated=federated,
        )
        return _ok(
            {"name": app_reg.name, "clientId": app_reg.client_id, "objectId": app_reg.object_id}
        )

    async def get_clock(_: web.Request) -> web.Response:
        return _ok({"now": sim.clock.now().isoformat(), "scale": sim.clock.scale})

    async def advance_clock(request: web.Request) -> web.Response:
        d = await _body(request)
        seconds = _need(d, "seconds", (int, float))
        if seconds < 0:
            raise ControlError(400, "the clock only moves forward")
        sim.clock.advance(float(seconds))
        return await get_clock(request)

    async def put_clock(request: web.Request) -> web.Response:
        d = await _body(request)
        scale = _need(d, "scale", (int, float))
        if scale < 0:
            raise ControlError(400, "scale must be >= 0")
        sim.clock.set_scale(float(scale))
        return await get_clock(request)

    async def get_behaviour(_: web.Request) -> web.Response:
        return _ok(behaviour_to_json(sim.world.behaviour))

    async def put_behaviour(request: web.Request) -> web.Response:
        _apply_behaviour(sim.world.behaviour, await _body(request))
        return _ok(behaviour_to_json(sim.world.behaviour))

    async def put_pool_behaviour(request: web.Request) -> web.Response:
        pool = pool_of(request)
        key = pool.arm_id.lower()
        current = sim.world.pool_behaviour.get(key) or NodeBehaviour(**asdict(sim.world.behaviour))
        _apply_behaviour(current, await _body(request))
        sim.world.pool_behaviour[key] = current
        return _ok(behaviour_to_json(current))

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
        return _ok({"pools": [pool_json(p) for p in sim.world.all_pools()]})

    async def get_pool(request: web.Request) -> web.Response:
        return _ok(pool_json(pool_of(request)))

    async def drift_pool(request: web.Request) -> web.Response:
        pool = pool_of(request)
        d = await _body(request)
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
        return _ok(pool_json(pool))

    async def delete_pool(request: web.Request) -> web.Response:
        pool = pool_of(request)
        account = sim.world.account(pool.subscription_id, pool.resource_group, pool.account)
        assert account is not None
        account.pools.pop(pool.name.lower(), None)
        return _ok()

    async def set_node_state(request: web.Request) -> web.Response:
        pool = pool_of(request)
        node = pool.nodes.get(request.match_info["node"])
        if node is None:
            raise ControlError(404, "no such node")
        d = await _body(request)
        state = d.get("state")
        if state is not None and not isinstance(state, str):
            raise ControlError(400, "'state' is a Batch node state or null")
        node.forced_state = state
        return _ok(pool_json(pool))

    async def get_requests(request: web.Request) -> web.Response:
        q = request.query
        try:
            flt = RequestFilter(
                service=q.get("service"),
                operation=q.get("operation"),
                method=q.get("method"),
                path_regex=q.get("pathRegex"),
                status=int(q["status"]) if "status" in q else None,
                principal=q.get("principal"),
                secret_read={"true": True, "false": False}.get(q.get("secretRead", "").lower()),
                since_seq=int(q["sinceSeq"]) if "sinceSeq" in q else None,
                limit=int(q["limit"]) if "limit" in q else None,
            )
        except ValueError as exc:
            raise ControlError(400, f"bad filter: {exc}") from None
        return _ok(
            {"lastSeq": sim.log.last_seq, "requests": [r.to_json() for r in sim.log.query(flt)]}
        )

    async def clear_requests(_: web.Request) -> web.Response:
        sim.log.clear()
        return _ok()

    async def get_counters(_: web.Request) -> web.Response:
        return _ok({"counters": sim.log.counters(), "secretReads": sim.log.secret_reads})

    async def post_fault(request: web.Request) -> web.Response:
        try:
            rule = sim.faults.add_from_json(await _body(request))
        except FaultSpecError as exc:
            raise ControlError(400, str(exc)) from None
        return _ok(rule.to_json(), status=201)

    async def list_faults(_: web.Request) -> web.Response:
        return _ok({"faults": [r.to_json() for r in sim.faults.list()]})

    async def clear_faults(_: web.Request) -> web.Response:
        sim.faults.clear()
        return _ok()

    async def delete_fault(request: web.Request) -> web.Response:
        if not sim.faults.remove(request.match_info["id"]):
            raise ControlError(404, "no such fault")
        return _ok()

    def throttle_json() -> dict[str, Any]:
        arm, kv = sim.arm_throttle, sim.kv_throttle
        return {
            "arm": {
                "enabled": arm.enabled,
                "clock": "sim" if arm.time.use_sim_clock else "real",
                **{
                    k: {"burst": s.burst, "refillPerSecond": s.refill_per_s}
                    for k, s in arm.specs.items()
                },
            },
            "keyvault": {
                "enabled": kv.enabled,
                "limit": kv.limit,
                "windowSeconds": kv.window_s,
                "clock": "sim" if kv.use_sim_clock else "real",
            },
        }

    async def get_throttle(_: web.Request) -> web.Response:
        return _ok(throttle_json())

    async def put_throttle(request: web.Request) -> web.Response:
        d = await _body(request)
        arm = d.get("arm") or {}
        specs = {}
        for kind in ("reads", "writes", "deletes"):
            if kind in arm:
                spec = _need(arm, kind, dict)
                specs[kind] = BucketSpec(
                    int(_need(spec, "burst", int)),
                    float(_need(spec, "refillPerSecond", (int, float))),
                )
        clock = arm.get("clock")
        sim.arm_throttle.configure(
            specs=specs,
            enabled=arm.get("enabled"),
            use_sim_clock=None if clock is None else clock == "sim",
        )
        kv = d.get("keyvault") or {}
        if "limit" in kv:
            sim.kv_throttle.limit = int(_need(kv, "limit", int))
        if "windowSeconds" in kv:
            sim.kv_throttle.window_s = float(_need(kv, "windowSeconds", (int, float)))
        if "enabled" in kv:
            sim.kv_throttle.enabled = bool(kv["enabled"])
        if "clock" in kv:
            sim.kv_throttle.use_sim_clock = kv["clock"] == "sim"
        return _ok(throttle_json())

    async def put_settings(request: web.Request) -> web.Response:
        d = await _body(request)
        if "armListPageSize" in d:
            sim.world.list_page_size = int(_need(d, "armListPageSize", int))
        return _ok({"armListPageSize": sim.world.list_page_size})

    async def post_tick(_: web.Request) -> web.Response:
        return _ok()

    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
        ("GET", "/info", get_info),
        ("POST", "/reset", post_reset),
        ("POST", "/save", post_save),
        ("GET", "/state", get_state),
        ("POST", "/tick", post_tick),
        ("PUT", "/resourceGroups", put_resource_group),
        ("PUT", "/batchAccounts", put_account),
        ("PUT", "/identities", put_identity),
        ("PUT", "/vaults", put_vault),
        ("POST", "/vaults/{vault}/accessPolicies", post_access_policy),
        ("PUT", "/vaults/{vault}/certificates/{name}", put_certificate),
        ("GET", "/vaults/{vault}/certificates/{name}", get_certificate),
        ("PATCH", "/vaults/{vault}/certificates/{name}", patch_certificate),
        ("DELETE", "/vaults/{vault}/certificates/{name}", delete_certificate),
        ("POST", "/vaults/{vault}/certificates/{name}/renew", renew_certificate),
        ("POST", "/principals", post_principal),
        ("GET", "/clock", get_clock),
        ("PUT", "/clock", put_clock),
        ("POST", "/clock/advance", advance_clock),
        ("GET", "/nodeBehaviour", get_behaviour),
        ("PUT", "/nodeBehaviour", put_behaviour),
        ("GET", "/pools", list_pools),
        ("GET", POOL_PATH, get_pool),
        ("PATCH", POOL_PATH, drift_pool),
        ("DELETE", POOL_PATH, delete_pool),
        ("PUT", POOL_PATH + "/nodeBehaviour", put_pool_behaviour),
        ("PUT", POOL_PATH + "/nodes/{node}/state", set_node_state),
        ("GET", "/requests", get_requests),
        ("DELETE", "/requests", clear_requests),
        ("GET", "/counters", get_counters),
        ("POST", "/faults", post_fault),
        ("GET", "/faults", list_faults),
        ("DELETE", "/faults", clear_faults),
        ("DELETE", "/faults/{id}", delete_fault),
        ("GET", "/throttle", get_throttle),
        ("PUT", "/throttle", put_throttle),
        ("PUT", "/settings", put_settings),
    ]
    for method, path, handler in routes:
        r.add_route(method, path, handler)
    return app


def _errors(sim: Simulation) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ControlError as err:
            return web.json_response({"error": str(err)}, status=err.status)
        except (seed.SeedError, KeyVaultError, ValueError, TypeError) as err:
            message = getattr(err, "message", None) or str(err)
            status = getattr(err, "status", 400)
            return web.json_response({"error": message}, status=status if status >= 400 else 400)
        except web.HTTPException as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        if request.method != "GET":
            sim.mark_dirty()
            sim.tick()
        return response

    return middleware
