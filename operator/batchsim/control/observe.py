"""Control API, observation and disturbance: request log, counters, faults, throttling.

Role: read what clients did to "Azure" (filtered request log, counters per service/operation/
status, secret reads), inject faults, tune the ARM token buckets and the Key Vault window, and
the ARM list page size.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchsim.control.http import ControlError, Route, need, ok, optional, read_body
from batchsim.faults import FaultSpecError
from batchsim.requestlog import RequestFilter
from batchsim.throttle import BucketSpec

if TYPE_CHECKING:
    from batchsim.core import Simulation


def routes(sim: Simulation) -> list[Route]:
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
                user_agent_regex=q.get("userAgentRegex"),
                since_seq=int(q["sinceSeq"]) if "sinceSeq" in q else None,
                limit=int(q["limit"]) if "limit" in q else None,
            )
        except ValueError as exc:
            raise ControlError(400, f"bad filter: {exc}") from None
        return ok(
            {"lastSeq": sim.log.last_seq, "requests": [r.to_json() for r in sim.log.query(flt)]}
        )

    async def clear_requests(_: web.Request) -> web.Response:
        sim.log.clear()
        return ok()

    async def get_counters(_: web.Request) -> web.Response:
        return ok(
            {
                "counters": sim.log.counters(),
                "byUserAgent": sim.log.counters_by_user_agent(),
                "secretReads": sim.log.secret_reads,
            }
        )

    async def post_fault(request: web.Request) -> web.Response:
        try:
            rule = sim.faults.add_from_json(await read_body(request))
        except FaultSpecError as exc:
            raise ControlError(400, str(exc)) from None
        return ok(rule.to_json(), status=201)

    async def list_faults(_: web.Request) -> web.Response:
        return ok({"faults": [r.to_json() for r in sim.faults.list()]})

    async def clear_faults(_: web.Request) -> web.Response:
        sim.faults.clear()
        return ok()

    async def delete_fault(request: web.Request) -> web.Response:
        if not sim.faults.remove(request.match_info["id"]):
            raise ControlError(404, "no such fault")
        return ok()

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
        return ok(throttle_json())

    async def put_throttle(request: web.Request) -> web.Response:
        d = await read_body(request)
        arm = optional(d, "arm", dict, {})
        kv = optional(d, "keyvault", dict, {})
        for section in (arm, kv):
            if section.get("clock") not in (None, "real", "sim"):
                raise ControlError(400, "'clock' is 'real' or 'sim'")
        specs = {}
        for kind in ("reads", "writes", "deletes"):
            if kind in arm:
                spec = need(arm, kind, dict)
                specs[kind] = BucketSpec(
                    int(need(spec, "burst", int)),
                    float(need(spec, "refillPerSecond", (int, float))),
                )
        clock = arm.get("clock")
        sim.arm_throttle.configure(
            specs=specs,
            enabled=arm.get("enabled"),
            use_sim_clock=None if clock is None else clock == "sim",
        )
        if "limit" in kv:
            sim.kv_throttle.limit = int(need(kv, "limit", int))
        if "windowSeconds" in kv:
            sim.kv_throttle.window_s = float(need(kv, "windowSeconds", (int, float)))
        if "enabled" in kv:
            sim.kv_throttle.enabled = bool(kv["enabled"])
        if "clock" in kv:
            sim.kv_throttle.use_sim_clock = kv["clock"] == "sim"
        return ok(throttle_json())

    async def put_settings(request: web.Request) -> web.Response:
        d = await read_body(request)
        if "armListPageSize" in d:
            sim.world.list_page_size = int(need(d, "armListPageSize", int))
        if "roleAssignmentDelaySeconds" in d:
            delay = float(need(d, "roleAssignmentDelaySeconds", (int, float)))
            if delay < 0:
                raise ControlError(400, "roleAssignmentDelaySeconds must be >= 0")
            sim.world.role_assignment_delay_s = delay
        if "foreignJobIdRegex" in d:  # batch/jobs.py: another tenant's job, first with an id
            regex = optional(d, "foreignJobIdRegex", str)
            try:
                re.compile(regex or "")
            except re.error as exc:
                raise ControlError(400, f"foreignJobIdRegex: {exc}") from None
            sim.world.foreign_job_id_regex = regex
        if "trustIssuerCa" in d:  # a dev cluster's CA, for its service-account issuer
            sim.directory.issuers.trust(need(d, "trustIssuerCa", str))
        return ok(
            {
                "armListPageSize": sim.world.list_page_size,
                "roleAssignmentDelaySeconds": sim.world.role_assignment_delay_s,
            }
        )

    return [
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
