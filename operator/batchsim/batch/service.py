"""Simulated Batch data plane ({account}.{region}.batch.sim.test): nodes and node extensions.

Role: the read operations the operator's ``azure-batch`` ``BatchClient`` uses to see whether the
Key Vault extension on every node got the certificates: list/get nodes, list/get node
extensions; jobs, tasks and task files are ``jobs.py``'s (routed from here). The account comes from the Host header, which is the ``accountEndpoint`` ARM
returned (``{account}.{region}.batch.sim.test:PORT``).

Node extensions answer as recorded real traffic does unless the pool's ``NodeBehaviour``
asks for the talkative model (``batch/kvextension.py`` has the evidence line by line).

Invariants:
* bearer tokens must be for ``https://batch.core.windows.net/`` (the SDK asks for the scope
  ``https://batch.core.windows.net//.default``);
* errors use the Batch shape ``{"odata.metadata", "code", "message": {"lang", "value"},
  "values": [{"key", "value"}]}`` with ``RequestId``/``Time`` appended to the message;
* lists page with ``odata.nextLink`` (``maxresults``, at most 1000; ``$skiptoken``);
* ``$select`` on nodes and node extensions keeps only the named top-level properties (the
  ``$select`` OData clause of ComputeNode_List/Get and ComputeNodeExtension_List/Get in the
  Batch REST spec; azure-batch sends it comma-joined, ``list_nodes(select=[...])``). Paging
  links carry it on, as the service's ``odata.nextLink`` carries the query it was given.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from batchsim import rbac
from batchsim.batch import jobs, kvextension
from batchsim.batch.errors import BatchError
from batchsim.entra.tokens import BATCH_AUDIENCE, TokenError
from batchsim.world import BatchAccount, JsonDict, Node, Pool

if TYPE_CHECKING:
    from batchsim.core import Simulation

log = logging.getLogger(__name__)

# What azure-batch 15.1.0 sends, plus the recent dotted data-plane versions.
API_VERSIONS = ("2025-06-01", "2024-07-01.20.0", "2024-02-01.19.0", "2023-05-01.17.0")
_HOST = re.compile(r"^(?P<account>[a-z0-9]+)\.(?P<region>[a-z0-9]+)\.batch\.sim\.test$")
_ROUTES = [
    ("ComputeNode_List", re.compile(r"^/pools/(?P<poolId>[^/]+)/nodes/?$")),
    ("ComputeNode_Get", re.compile(r"^/pools/(?P<poolId>[^/]+)/nodes/(?P<nodeId>[^/]+)/?$")),
    (
        "ComputeNodeExtension_List",
        re.compile(r"^/pools/(?P<poolId>[^/]+)/nodes/(?P<nodeId>[^/]+)/extensions/?$"),
    ),
    (
        "ComputeNodeExtension_Get",
        re.compile(
            r"^/pools/(?P<poolId>[^/]+)/nodes/(?P<nodeId>[^/]+)/extensions/(?P<name>[^/]+)/?$"
        ),
    ),
]


def batch_error_body(
    host: str, code: str, message: str, values: list[dict[str, str]], request_id: str, now: datetime
) -> JsonDict:
    body: JsonDict = {
        "odata.metadata": f"https://{host}/$metadata#Microsoft.Azure.Batch.Protocol.Entities"
        ".Container.errors/@Element",
        "code": code,
        "message": {
            "lang": "en-US",
            "value": f"{message}\nRequestId:{request_id}\nTime:{_iso7(now)}",
        },
    }
    if values:
        body["values"] = values
    return body


def _selected(request: web.Request) -> frozenset[str] | None:
    """The ``$select`` clause's property names, or None (everything)."""
    raw = request.query.get("$select")
    if raw is None or not raw.strip():
        return None
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def _project(item: JsonDict, select: frozenset[str] | None) -> JsonDict:
    # Unconfirmed: how Batch answers a $select naming an unknown property; we leave it out.
    if select is None:
        return item
    return {key: value for key, value in item.items() if key in select}


def _iso7(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _iso(seconds: float) -> str:
    return _iso7(datetime.fromtimestamp(seconds, UTC))


class BatchDataService:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        operation, principal = "Unknown", None
        host = request.host.lower()
        try:
            try:
                principal = self.sim.verify_token(
                    request.headers.get("Authorization"), BATCH_AUDIENCE
                )
            except TokenError as err:
                raise BatchError(
                    401,
                    "AuthenticationFailed",
                    "Server failed to authenticate the request. Make sure the value of "
                    "Authorization header is formed correctly including the signature.",
                    [{"key": "AuthenticationErrorDetail", "value": err.message}],
                    {
                        "WWW-Authenticate": f'Bearer authorization_uri="{self.sim.authority_host}'
                        f'/{self.sim.tenant_id}", error="invalid_token"'
                    },
                ) from None
            account = self._account(host)
            if not rbac.batch_data_allows(
                self.sim.world, principal.object_id, account.arm_id, self.sim.clock.timestamp()
            ):
                # Unconfirmed: the Batch data plane's body for a caller without a role on the
                # account; modelled on its other refusals (code, message, detail values).
                raise BatchError(
                    403,
                    "Forbidden",
                    "Server failed to authorize the request.",
                    [
                        {
                            "key": "AuthorizationErrorDetail",
                            "value": f"The client with object id '{principal.object_id}' has no "
                            f"role on the Batch account '{account.arm_id}' that allows this.",
                        }
                    ],
                )
            api_version = request.query.get("api-version")
            if api_version not in API_VERSIONS:
                # Unconfirmed: the exact values Batch lists for a bad api-version.
                raise BatchError(
                    400,
                    "InvalidQueryParameterValue",
                    "Value for one of the query "
                    "parameters specified in the request URI is invalid.",
                    [
                        {"key": "QueryParameterName", "value": "api-version"},
                        {"key": "QueryParameterValue", "value": str(api_version)},
                        {"key": "Reason", "value": "The specified api version string is invalid."},
                    ],
                )
            routed = jobs.match(request.method, request.path)
            if routed is not None:
                operation = routed[0]
                self.sim.tick()
                response = await jobs.respond(self.sim, account, request, host, *routed)
            else:
                operation, params = self._match(request.method, request.path)
                self.sim.tick()
                body = self._dispatch(operation, params, account, request, host)
                response = web.Response(
                    status=200,
                    body=json.dumps(body).encode(),
                    content_type="application/json",
                    charset="utf-8",
                )
        except BatchError as err:
            response = web.Response(
                status=err.status,
                content_type="application/json",
                charset="utf-8",
                headers=err.headers,
                body=json.dumps(
                    batch_error_body(
                        host, err.code, err.message, err.values, request_id, self.sim.clock.now()
                    )
                ).encode(),
            )
        except Exception:  # never a stack trace to the client
            log.exception("simulated Batch failed on %s %s", request.method, request.path)
            response = web.Response(
                status=500,
                content_type="application/json",
                charset="utf-8",
                body=json.dumps(
                    batch_error_body(
                        host,
                        "InternalServerError",
                        "The server encountered an internal error.",
                        [],
                        request_id,
                        self.sim.clock.now(),
                    )
                ).encode(),
            )
        response.headers["request-id"] = request_id
        if "client-request-id" in request.headers:
            response.headers["client-request-id"] = request.headers["client-request-id"]
        self.sim.log.record(
            "batch",
            operation,
            request.method,
            request.path,
            dict(request.query),
            request.query.get("api-version"),
            response.status,
            principal.object_id if principal else None,
            # What was asked to be added (jobs, tasks): tests check the operator's bodies.
            # (aiohttp keeps what the handler read: read() answers it again.)
            body=(await request.read()) if request.method == "POST" else None,
        )
        return response

    def _account(self, host: str) -> BatchAccount:
        match = _HOST.match(host.rsplit(":", 1)[0])
        account = (
            self.sim.world.account_by_host_label(match["account"], match["region"])
            if match
            else None
        )
        if account is None:
            # Unconfirmed: a real client would fail DNS resolution for an unknown account.
            raise BatchError(404, "AccountNotFound", f"No Batch account is simulated at '{host}'.")
        return account

    def _match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        for operation, pattern in _ROUTES:
            found = pattern.match(path)
            if found:
                if method.upper() != "GET":
                    raise BatchError(
                        405,
                        "UnsupportedHttpVerb",
                        "The resource doesn't support specified Http Verb.",
                        [{"key": "HttpVerb", "value": method}],
                    )
                return operation, found.groupdict()
        raise BatchError(
            404,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
            [{"key": "UriPath", "value": path}],
        )

    def _dispatch(
        self,
        operation: str,
        params: dict[str, str],
        account: BatchAccount,
        request: web.Request,
        host: str,
    ) -> JsonDict:
        pool = account.pools.get(params["poolId"].lower())
        if pool is None or (pool.provisioning_state == "Deleting" and not pool.nodes):
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        base = f"https://{host}"
        select = _selected(request)
        if operation == "ComputeNode_List":
            jobs.advance(self.sim, account)
            items = [
                _project(self._node(pool, n, base, account), select) for n in pool.nodes.values()
            ]
            return self._page(items, request, base)
        node = pool.nodes.get(params["nodeId"])
        if node is None:
            raise BatchError(404, "NodeNotFound", "The specified node does not exist.")
        if operation == "ComputeNode_Get":
            jobs.advance(self.sim, account)
            return _project(self._node(pool, node, base, account), select)
        behaviour = self.sim.world.behaviour_for(pool)
        listed = list(node.extensions)
        if not behaviour.talkative_extension:
            # Batch lists its own bootstrap extension beside the user's on every node
            # (batch-dataplane-nodes-extensions.json [2], [5]).
            listed.append(kvextension.BATCH_NODE_EXTENSION)
        extensions = [self._extension(pool, node, ext) for ext in listed]
        if operation == "ComputeNodeExtension_List":
            return self._page([_project(e, select) for e in extensions], request, base)
        wanted = params["name"].lower()
        found = next(
            (e for e in extensions if str(e["vmExtension"].get("name", "")).lower() == wanted), None
        )
        if found is None:
            # Unconfirmed: the code for an unknown extension name.
            raise BatchError(
                404, "NodeExtensionNotFound", "The specified node extension does not exist."
            )
        return _project(found, select)

    def _page(self, items: list[JsonDict], request: web.Request, base: str) -> JsonDict:
        query = request.query
        try:
            size = int(query.get("maxresults", "1000"))
            offset = (
                int(base64.urlsafe_b64decode(query["$skiptoken"]).decode())
                if "$skiptoken" in query
                else 0
            )
        except (ValueError, TypeError):
            raise BatchError(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
            ) from None
        if not 1 <= size <= 1000:
            raise BatchError(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
                [
                    {"key": "QueryParameterName", "value": "maxresults"},
                    {"key": "QueryParameterValue", "value": str(size)},
                ],
            )
        body: JsonDict = {"value": items[offset : offset + size]}
        if offset + size < len(items):
            token = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
            selected = f"&$select={query['$select']}" if "$select" in query else ""
            body["odata.nextLink"] = (
                f"{base}{request.path}?api-version="
                f"{query.get('api-version')}&maxresults={size}{selected}"
                f"&$skiptoken={token}"
            )
        return body

    def _node(self, pool: Pool, node: Node, base: str, account: BatchAccount) -> JsonDict:
        running, slots = jobs.running_slots(account, pool, node)
        return {
            "id": node.node_id,
            "url": f"{base}/pools/{pool.name}/nodes/{node.node_id}",
            "state": "running" if node.state == "idle" and slots else node.state,
            "schedulingState": "enabled",
            "stateTransitionTime": _iso(node.state_transition_time),
            "lastBootTime": _iso(node.allocation_time),
            "allocationTime": _iso(node.allocation_time),
            "ipAddress": node.ip_address,
            "affinityId": f"TVM:{node.node_id}",
            "vmSize": node.vm_size,
            "totalTasksRun": 0,
            "runningTasksCount": running,
            "runningTaskSlotsCount": slots,
            "totalTasksSucceeded": 0,
            "isDedicated": node.dedicated,
            "endpointConfiguration": {"inboundEndpoints": []},
            "nodeAgentInfo": {"version": "1.11.0.0", "lastUpdateTime": _iso(node.allocation_time)},
            "virtualMachineInfo": {"imageReference": self._image(pool)},
        }

    @staticmethod
    def _image(pool: Pool) -> Any:
        vmc = (
            pool.spec["properties"]
            .get("deploymentConfiguration", {})
            .get("virtualMachineConfiguration", {})
        )
        return vmc.get("imageReference", {})

    def _extension(self, pool: Pool, node: Node, ext: JsonDict) -> JsonDict:
        now = self.sim.clock.timestamp()
        behaviour = self.sim.world.behaviour_for(pool)
        realistic = not behaviour.talkative_extension
        rt = None
        if kvextension.is_kv_extension(ext):
            settings = kvextension.parse_kv_extension(ext)
            rt = node.extension_runtime.get(settings.name)
        if rt is None:
            if realistic:
                return kvextension.render_plain_extension_realistic(ext, node, now)
            return kvextension.render_plain_extension(ext, node, now)
        if realistic:
            return kvextension.render_kv_extension_realistic(ext, rt, settings, now, node)
        return kvextension.render_kv_extension(ext, rt, settings, behaviour, now, node)
