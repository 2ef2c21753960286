"""Simulated Azure Resource Manager (management.sim.test): the request pipeline.

Role: one handler for every ARM request. It matches the path (case-insensitively, as ARM does)
against the routes of the resource providers (``armbatch.py``, ``armresources.py``), then, in
ARM's order: authenticates the bearer token (audience ``https://management.azure.com/`` or
``https://management.core.windows.net/``), checks the api-version for the provider, takes a
token from the throttling bucket of (subscription, principal), checks the subscription, checks
the caller's role assignments for the action at the request's scope (403
``AuthorizationFailed``, ``rbac.py``), and runs the handler.

Invariants:
* every answer is JSON; handler refusals are ``ArmError``s, anything unexpected becomes a 500
  ``InternalServerError`` body without internals (and is logged with its traceback server-side);
* every authenticated answer carries ``x-ms-ratelimit-remaining-subscription-<kind>`` and the
  ARM request-id headers; every request is recorded in the request log exactly once.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchsim import rbac
from batchsim.arm.errors import (
    ArmError,
    arm_error_response,
    check_api_version,
    subscription_not_found,
)
from batchsim.arm.poolspec import arm_time
from batchsim.entra.tokens import ARM_AUDIENCES, Principal, TokenError

if TYPE_CHECKING:
    from batchsim.core import Simulation

log = logging.getLogger(__name__)

# Set by the fault injector on a request whose long-running operation must fail.
LRO_FAILURE = web.RequestKey("sim_lro_failure", dict)

SUB = r"/subscriptions/(?P<subscriptionId>[^/]+)"
RG = SUB + r"/resourceGroups/(?P<resourceGroupName>[^/]+)"


@dataclass
class ArmCall:
    """One ARM request as a handler sees it."""

    request: web.Request
    sim: Simulation
    params: dict[str, str]
    api_version: str
    principal: Principal
    raw: bytes
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def subscription_id(self) -> str:
        return self.params["subscriptionId"]

    @property
    def now(self) -> float:
        return self.sim.clock.timestamp()

    def json(self, *, batch_rp: bool = True) -> Any:
        """The parsed body, or the 400 the provider gives for unparseable JSON."""
        text = self.raw.decode("utf-8", "replace").strip()
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            if batch_rp:
                from batchsim.arm.errors import invalid_request_body

                raise invalid_request_body(
                    f"Unexpected character encountered while parsing value: {exc.msg}. "
                    f"Path '', line {exc.lineno}, position {exc.colno}."
                ) from None
            raise ArmError(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: '{exc.msg}'.",
            ) from None


Handler = Callable[[ArmCall], Awaitable[web.Response]]


@dataclass(frozen=True)
class ArmRoute:
    method: str
    pattern: re.Pattern[str]
    provider: str  # for api-version checks
    resource_type: str  # for NoRegisteredProviderFound messages
    operation: str  # REST operationId, used in the request log and counters
    handler: Handler


def route(
    method: str,
    path_regex: str,
    provider: str,
    resource_type: str,
    operation: str,
    handler: Handler,
) -> ArmRoute:
    return ArmRoute(
        method,
        re.compile(path_regex + r"/?$", re.IGNORECASE),
        provider,
        resource_type,
        operation,
        handler,
    )


class ArmService:
    def __init__(self, sim: Simulation, routes: list[ArmRoute]) -> None:
        self.sim = sim
        self.routes = routes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        operation, principal, api_version = "Unknown", None, request.query.get("api-version")
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": request.headers.get(
                "x-ms-correlation-request-id", str(uuid.uuid4())
            ),
        }
        try:
            try:
                principal = self.sim.verify_token(
                    request.headers.get("Authorization"), list(ARM_AUDIENCES)
                )
            except TokenError as err:
                raise _auth_error(err, self.sim.authority_host) from None
            found = self._match(request.method, request.path)
            arm_route, params = found
            operation = arm_route.operation
            api_version = check_api_version(
                arm_route.provider, api_version, resource_type=arm_route.resource_type
            )
            subscription = params.get("subscriptionId")
            if subscription is not None:
                verdict = self.sim.arm_throttle.take(
                    subscription, principal.object_id, request.method
                )
                headers[f"x-ms-ratelimit-remaining-subscription-{verdict.kind}"] = str(
                    verdict.remaining
                )
                if not verdict.allowed:
                    raise ArmError(
                        429,
                        "SubscriptionRequestsThrottled",
                        # Unconfirmed: wording of ARM's token-bucket throttling message.
                        f"Number of '{verdict.kind[:-1]}' requests for subscription "
                        f"'{subscription}' actor '{principal.object_id}' exceeded. Please try "
                        f"again after '{verdict.retry_after_s}' seconds after additional tokens "
                        "are available. Refer to https://aka.ms/arm-throttling",
                        headers={"Retry-After": str(verdict.retry_after_s)},
                    )
                if self.sim.world.subscription(subscription) is None:
                    raise subscription_not_found(subscription)
            action = rbac.arm_action(arm_route.provider, arm_route.resource_type, request.method)
            scope = request.path.rstrip("/")
            if not rbac.arm_allows(
                self.sim.world, principal.object_id, action, scope, self.sim.clock.timestamp()
            ):
                raise ArmError(
                    403,
                    "AuthorizationFailed",
                    rbac.authorization_failed_message(
                        principal.app_id, principal.object_id, action, scope
                    ),
                )
            call = ArmCall(request, self.sim, params, api_version, principal, raw)
            self.sim.tick()
            response = await arm_route.handler(call)
            response.headers.update(call.extra_headers)
            if request.method != "GET":
                self.sim.mark_dirty()
                self.sim.tick()
        except ArmError as err:
            if err.from_batch_rp:
                err.target = err.target or "BatchAccount"
                err.message += (
                    f"\nRequestId:{headers['x-ms-request-id']}\n"
                    f"Time:{arm_time(self.sim.clock.timestamp())}"
                )
            response = arm_error_response(err)
        except Exception:  # never leak a stack trace to the client
            log.exception("simulated ARM failed on %s %s", request.method, request.path)
            response = arm_error_response(
                ArmError(
                    500,
                    "InternalServerError",
                    "Encountered internal server error. Diagnostic information: tracking id "
                    f"'{headers['x-ms-request-id']}'.",
                )
            )
        response.headers.update(headers)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self.sim.log.record(
            "arm",
            operation,
            request.method,
            request.path,
            dict(request.query),
            api_version,
            response.status,
            principal.object_id if principal else None,
            body=body,
        )
        return response

    def _match(self, method: str, path: str) -> tuple[ArmRoute, dict[str, str]]:
        allowed = []
        for candidate in self.routes:
            found = candidate.pattern.match(path)
            if found is None:
                continue
            if candidate.method == method.upper():
                return candidate, {k: v for k, v in found.groupdict().items() if v is not None}
            allowed.append(candidate.method)
        if allowed:
            # Unconfirmed: ARM's body for a method a resource type does not support.
            raise ArmError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{method}'.",
            )
        provider = re.search(r"/providers/([^/]+)/([^/]+)", path, re.IGNORECASE)
        if provider:
            raise ArmError(
                404,
                "InvalidResourceType",
                f"The resource type '{provider.group(2)}' could not be found in the "
                f"namespace '{provider.group(1)}' for api version "
                "'the requested version'.",
            )
        raise ArmError(
            404, "NotFound", f"No HTTP resource was found that matches the request URI '{path}'."
        )


def _auth_error(err: TokenError, authority_host: str) -> ArmError:
    challenge = (
        f'Bearer authorization_uri="{authority_host}/", error="invalid_token", '
        f'error_description="{err.message}"'
    )
    code = {
        "missing": "AuthenticationFailed",
        "invalid": "InvalidAuthenticationToken",
        "expired": "ExpiredAuthenticationToken",
        "audience": "InvalidAuthenticationTokenAudience",
    }[err.reason]
    message = err.message
    if err.reason == "missing":
        message = "Authentication failed. The 'Authorization' header is missing."
    return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})
