"""The simulator's control API: ``https://management.sim.test:PORT/_sim/...`` (JSON).

Role: everything a test, the demo or a developer does to the simulated world that is not an
Azure call: seed resources, move and scale the clock, force renewals, shape node behaviour,
take nodes down, change pools behind the operator's back (drift), read the request log and
counters, inject faults, tune throttling, reset. Documented endpoint by endpoint in README.md;
``client.SimControl`` wraps it. This module holds seeding, the clock, certificates and
lifecycle; ``control_world`` the pools, nodes and drift; ``control_observe`` the request log,
faults and throttling; ``control_http`` the shared plumbing.

Invariants: no authentication (loopback-only developer tooling); every handler answers JSON;
bad input is a 400 ``{"error": "..."}``, unknown things a 404; mutations tick the simulation
afterwards so the next Azure call sees their consequences; requests here are not logged in the
request log (it records what clients did to "Azure", not to the simulator).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchsim import seed
from batchsim.control import observe as control_observe
from batchsim.control import world as control_world
from batchsim.control.http import ControlError, Route, need, ok, optional, read_body
from batchsim.entra.service import FederatedCredential
from batchsim.keyvault.policy import KeyVaultError

if TYPE_CHECKING:
    from batchsim.core import Simulation

log = logging.getLogger(__name__)


def build_control_app(
    sim: Simulation,
    *,
    reset: Callable[[str], dict[str, Any]],
    save: Callable[[], None],
    info: Callable[[], dict[str, Any]],
) -> web.Application:
    app = web.Application(middlewares=[_errors(sim)])
    r = app.router

    async def get_info(_: web.Request) -> web.Response:
        return ok(info())

    async def post_reset(request: web.Request) -> web.Response:
        data = await read_body(request)
        return ok(reset(str(data.get("seed", "none"))))

    async def post_save(_: web.Request) -> web.Response:
        save()
        return ok()

    async def get_state(_: web.Request) -> web.Response:
        return ok({"world": sim.world.snapshot(), "clock": sim.clock.now().isoformat()})

    async def put_resource_group(request: web.Request) -> web.Response:
        d = await read_body(request)
        seed.add_resource_group(
            sim,
            need(d, "subscriptionId"),
            need(d, "name"),
            optional(d, "location", str, "westeurope"),
        )
        return ok()

    async def put_account(request: web.Request) -> web.Response:
        d = await read_body(request)
        account = seed.add_batch_account(
            sim,
            need(d, "subscriptionId"),
            need(d, "resourceGroup"),
            need(d, "name"),
            optional(d, "location", str, "westeurope"),
        )
        quota = optional(d, "activeJobAndJobScheduleQuota", int, None)
        if quota is not None:
            account.active_job_quota = quota
        return ok({"id": account.arm_id, "accountEndpoint": sim.account_endpoint(account)})

    async def put_identity(request: web.Request) -> web.Response:
        d = await read_body(request)
        ident = seed.add_identity(
            sim,
            need(d, "subscriptionId"),
            need(d, "resourceGroup"),
            need(d, "name"),
            optional(d, "location", str, "westeurope"),
            client_id=optional(d, "clientId", str),
            principal_id=optional(d, "principalId", str),
        )
        return ok(
            {
                "id": ident.arm_id,
                "clientId": ident.client_id,
                "principalId": ident.principal_id,
                "tenantId": ident.tenant_id,
            }
        )

    async def put_vault(request: web.Request) -> web.Response:
        d = await read_body(request)
        vault = seed.add_vault(
            sim,
            need(d, "subscriptionId"),
            need(d, "resourceGroup"),
            need(d, "name"),
            optional(d, "location", str, "westeurope"),
        )
        if "enableRbacAuthorization" in d:
            vault.enable_rbac_authorization = bool(d["enableRbacAuthorization"])
        return ok(
            {
                "id": vault.arm_id,
                "vaultUri": sim.vault_uri(vault.name),
                "enableRbacAuthorization": vault.enable_rbac_authorization,
            }
        )

    async def post_access_policy(request: web.Request) -> web.Response:
        d = await read_body(request)
        perms = need(d, "permissions", dict)
        vault = seed.grant(
            sim,
            request.match_info["vault"],
            need(d, "objectId"),
            perms,
            operation=optional(d, "operation", str, "add"),
        )
        return ok({"accessPolicies": [asdict(p) for p in vault.access_policies]})

    async def put_certificate(request: web.Request) -> web.Response:
        d = await read_body(request)
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
            subject=optional(d, "subject", str),
            validity_months=optional(d, "validityMonths", int, 12),
            lifetime_action=action,
            enabled=optional(d, "enabled", bool, True),
        )
        return ok({"version": version, **sim.kv.certificate_info(m["vault"], m["name"])})

    async def get_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        return ok(sim.kv.certificate_info(m["vault"], m["name"]))

    async def renew_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        return ok({"version": sim.kv.renew_certificate(m["vault"], m["name"])})

    async def patch_certificate(request: web.Request) -> web.Response:
        d = await read_body(request)
        m = request.match_info
        if "enabled" in d:
            sim.kv.set_certificate_enabled(m["vault"], m["name"], bool(d["enabled"]))
        if "lifetimeActions" in d:
            sim.kv.set_policy_lifetime_actions(
                m["vault"], m["name"], need(d, "lifetimeActions", list)
            )
        return ok(sim.kv.certificate_info(m["vault"], m["name"]))

    async def delete_certificate(request: web.Request) -> web.Response:
        m = request.match_info
        sim.kv.delete_certificate(m["vault"], m["name"])
        return ok()

    async def post_principal(request: web.Request) -> web.Response:
        d = await read_body(request)
        federated = []
        for entry in optional(d, "federated", list, []):
            if not isinstance(entry, dict):
                raise ControlError(400, "'federated' is a list of {issuer, subject, audiences?}")
            audiences = optional(entry, "audiences", list, ["api://AzureADTokenExchange"])
            federated.append(
                FederatedCredential(
                    need(entry, "issuer"), need(entry, "subject"), [str(a) for a in audiences]
                )
            )
        app_reg = sim.directory.register(
            need(d, "name"),
            client_id=optional(d, "clientId", str),
            object_id=optional(d, "objectId", str),
            client_secret=optional(d, "clientSecret", str),
            federated=federated,
        )
        return ok(
            {"name": app_reg.name, "clientId": app_reg.client_id, "objectId": app_reg.object_id}
        )

    async def get_clock(_: web.Request) -> web.Response:
        return ok({"now": sim.clock.now().isoformat(), "scale": sim.clock.scale})

    async def advance_clock(request: web.Request) -> web.Response:
        d = await read_body(request)
        seconds = need(d, "seconds", (int, float))
        if seconds < 0:
            raise ControlError(400, "the clock only moves forward")
        sim.clock.advance(float(seconds))
        return await get_clock(request)

    async def put_clock(request: web.Request) -> web.Response:
        d = await read_body(request)
        scale = need(d, "scale", (int, float))
        if scale < 0:
            raise ControlError(400, "scale must be >= 0")
        sim.clock.set_scale(float(scale))
        return await get_clock(request)

    async def post_tick(_: web.Request) -> web.Response:
        return ok()

    routes: list[Route] = [
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
    ]
    routes += control_world.routes(sim) + control_observe.routes(sim)
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
        except Exception as exc:  # a simulator bug: answer JSON, keep the traceback server-side
            log.exception("control API failed on %s %s", request.method, request.path)
            return web.json_response({"error": f"internal simulator error: {exc!r}"}, status=500)
        if request.method != "GET":
            sim.mark_dirty()
            sim.tick()
        return response

    return middleware
