"""ARM Microsoft.Batch: batch accounts and pools (the operations azure-mgmt-batch calls).

Role: the Batch resource provider's handlers. Semantics (see azure-behaviour.md):
* pool PUT is synchronous (200 + body + ``ETag``), replaces an existing pool, honours
  ``If-Match`` / ``If-None-Match: *`` (412 on mismatch);
* PATCH changes only supplied properties; both refuse what Azure refuses
  (``PropertyCannotBeUpdated``) per the api-version rules in ``poolspec.check_update``;
* DELETE is a long-running operation: 202 + ``Location`` + ``Retry-After``; the Location answers
  202 while running and 200 when done (or the error, when an injected LRO failure applies);
  DELETE of a missing pool is 204;
* LIST pages with ``nextLink`` (page size ``maxresults`` or the world's default).

Invariants: pools and accounts are looked up through ``World``; a pool's body is always
rendered from its stored spec plus its live state, so GET after PUT round-trips what was sent.
"""

from __future__ import annotations

import base64
import copy
import uuid

from aiohttp import web

from batchsim import rbac
from batchsim.arm.errors import (
    ArmError,
    arm_json,
    resource_group_not_found,
    resource_not_found,
)
from batchsim.arm.pipeline import LRO_FAILURE, RG, SUB, ArmCall, ArmRoute, route
from batchsim.arm.poolspec import (
    ACCOUNT_NAME,
    POOL_NAME,
    arm_time,
    check_update,
    merge_patch,
    next_etag,
    validate_pool_body,
)
from batchsim.batch import nodes
from batchsim.world import BatchAccount, DeleteOperation, JsonDict, Pool

ACCOUNT = RG + r"/providers/Microsoft\.Batch/batchAccounts/(?P<accountName>[^/]+)"
POOLS = ACCOUNT + r"/pools"
POOL = POOLS + r"/(?P<poolName>[^/]+)"
OPERATION = (
    SUB + r"/providers/Microsoft\.Batch/locations/(?P<location>[^/]+)"
    r"/poolOperationResults/(?P<operationId>[^/]+)"
)
PROVIDER = "Microsoft.Batch"


def _account(call: ArmCall) -> BatchAccount:
    p = call.params
    world = call.sim.world
    if world.resource_group(p["subscriptionId"], p["resourceGroupName"]) is None:
        raise resource_group_not_found(p["resourceGroupName"])
    account = world.account(p["subscriptionId"], p["resourceGroupName"], p["accountName"])
    if account is None:
        raise resource_not_found(
            "Microsoft.Batch/batchAccounts", p["accountName"], p["resourceGroupName"]
        )
    return account


def _pool_not_found() -> ArmError:
    # The Batch service's code and message (seen on the data plane); Unconfirmed for ARM.
    return ArmError(404, "PoolNotFound", "The specified pool does not exist.", from_batch_rp=True)


def render_account(call: ArmCall, account: BatchAccount) -> JsonDict:
    return {
        "id": account.arm_id,
        "name": account.name,
        "type": "Microsoft.Batch/batchAccounts",
        "location": account.location,
        "identity": {"type": "None"},
        "properties": {
            "accountEndpoint": call.sim.account_endpoint(account),
            "nodeManagementEndpoint": f"{uuid.uuid5(uuid.NAMESPACE_URL, account.arm_id)}"
            f".{account.location.lower()}.service.batch.sim.test",
            "provisioningState": "Succeeded",
            "poolAllocationMode": "BatchService",
            "publicNetworkAccess": "Enabled",
            # Unconfirmed values (quotas depend on the subscription); shapes are the spec's.
            "dedicatedCoreQuota": 500,
            "lowPriorityCoreQuota": 500,
            "dedicatedCoreQuotaPerVMFamilyEnforced": True,
            "poolQuota": 100,
            "activeJobAndJobScheduleQuota": account.active_job_quota,
            "allowedAuthenticationModes": ["AAD", "TaskAuthenticationToken"],
        },
    }


def _normalise(props: JsonDict) -> None:
    """What the Batch RP does to what it was sent (batch-arm-pools.json [0], [1], [7]): vmSize
    upper-cased, defaults filled in. The stored spec keeps what the client sent."""
    if isinstance(props.get("vmSize"), str):
        props["vmSize"] = props["vmSize"].upper()
    policy = props.get("taskSchedulingPolicy")
    if isinstance(policy, dict):
        policy.setdefault("jobDefaultOrder", "None")
    scale = props.get("scaleSettings") or {}
    if isinstance(scale.get("fixedScale"), dict):
        scale["fixedScale"].setdefault("resizeTimeout", "PT15M")
    if isinstance(scale.get("autoScale"), dict):
        scale["autoScale"].setdefault("evaluationInterval", "PT15M")
    start = props.get("startTask")
    if isinstance(start, dict):
        start.setdefault("maxTaskRetryCount", 0)
        start.setdefault("waitForSuccess", True)
        auto = (start.get("userIdentity") or {}).get("autoUser")
        if isinstance(auto, dict):
            auto.setdefault("scope", "Pool")
    vmc = (props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {}
    disk = (vmc.get("osDisk") or {}).get("managedDisk")
    if isinstance(disk, dict):
        disk.setdefault("storageAccountType", "Standard_LRS")


def render_pool(call: ArmCall, pool: Pool) -> JsonDict:
    props = copy.deepcopy(pool.spec["properties"])
    dedicated, low = pool.current_counts()
    live: JsonDict = {
        "lastModified": arm_time(pool.last_modified),
        "creationTime": arm_time(pool.creation_time),
        "provisioningState": pool.provisioning_state,
        "provisioningStateTransitionTime": arm_time(pool.provisioning_state_transition_time),
        "allocationState": pool.allocation_state,
        "allocationStateTransitionTime": arm_time(pool.allocation_state_transition_time),
    }
    live.update(props)
    _normalise(live)
    live["currentDedicatedNodes"] = dedicated
    live["currentLowPriorityNodes"] = low
    fixed = (props.get("scaleSettings") or {}).get("fixedScale")
    if fixed is not None:
        status: JsonDict = {
            "targetDedicatedNodes": pool.target_dedicated,
            "targetLowPriorityNodes": pool.target_low_priority,
            "resizeTimeout": fixed.get("resizeTimeout", "PT15M"),
            "nodeDeallocationOption": fixed.get("nodeDeallocationOption", "Requeue"),
            "startTime": arm_time(pool.allocation_state_transition_time),
        }
        if pool.resize_errors:
            status["errors"] = copy.deepcopy(pool.resize_errors)
        live["resizeOperationStatus"] = status
    body: JsonDict = {
        "id": pool.arm_id,
        "name": pool.name,
        "type": "Microsoft.Batch/batchAccounts/pools",
        "etag": pool.etag,
        "properties": live,
    }
    identity = pool.spec.get("identity")
    if identity is not None:
        rendered = {"type": identity["type"]}
        if identity.get("userAssignedIdentities"):
            uais = {}
            for arm_id in identity["userAssignedIdentities"]:
                found = call.sim.world.identity(arm_id)
                uais[arm_id] = (
                    {"principalId": found.principal_id, "clientId": found.client_id}
                    if found
                    else {}
                )
            rendered["userAssignedIdentities"] = uais
        body["identity"] = rendered
    return body


def _pool_response(call: ArmCall, pool: Pool, status: int = 200) -> web.Response:
    return arm_json(render_pool(call, pool), status=status, headers={"ETag": pool.etag})


def _check_identities(call: ArmCall, spec: JsonDict, pool_id: str) -> None:
    named = list((spec.get("identity") or {}).get("userAssignedIdentities") or {})
    # ARM's linked-scope check comes first: naming an identity needs assign/action on it.
    unassignable = [
        arm_id
        for arm_id in named
        if not rbac.arm_allows(
            call.sim.world, call.principal.object_id, rbac.ASSIGN_IDENTITY, arm_id, call.now
        )
    ]
    if unassignable:
        raise ArmError(
            403,
            "LinkedAuthorizationFailed",
            rbac.linked_authorization_failed_message(
                call.principal.app_id,
                call.principal.object_id,
                "Microsoft.Batch/batchAccounts/pools/write",
                pool_id,
                unassignable,
            ),
        )
    for arm_id in named:
        if call.sim.world.identity(arm_id) is None:
            # Unconfirmed for Batch pools: modelled on the ARM managed-identity failure VMs get.
            raise ArmError(
                400,
                "FailedIdentityOperation",
                f"Identity operation for resource '{pool_id}' failed with error 'Failed to "
                "perform resource identity operation. Status: 'NotFound'. Response: "
                f'\'{{"error":{{"code":"NotFound","message":"Resource \'{arm_id}\' does '
                "not exist.\"}}'.'",
            )


def _check_conditions(call: ArmCall, pool: Pool | None) -> None:
    if_match = call.request.headers.get("If-Match")
    if_none = call.request.headers.get("If-None-Match")
    failed = False
    if if_match is not None:
        failed = pool is None or (if_match.strip() != "*" and if_match.strip() != pool.etag)
    if if_none is not None and pool is not None and if_none.strip() in ("*", pool.etag):
        failed = True
    if failed:
        # Unconfirmed: the code; 412 is ARM's norm and the Batch service's code is this one.
        raise ArmError(
            412,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
            from_batch_rp=True,
        )


def _not_deleting(pool: Pool) -> None:
    if pool.provisioning_state == "Deleting":
        raise ArmError(
            409,
            "PoolBeingDeleted",
            "The specified pool has been marked for deletion and is being reclaimed.",
            from_batch_rp=True,
        )


async def get_account(call: ArmCall) -> web.Response:
    return arm_json(render_account(call, _account(call)))


async def get_pool(call: ArmCall) -> web.Response:
    pool = _account(call).pools.get(call.params["poolName"].lower())
    if pool is None:
        raise _pool_not_found()
    return _pool_response(call, pool)


async def put_pool(call: ArmCall) -> web.Response:
    account = _account(call)
    name = call.params["poolName"]
    if not POOL_NAME.match(name):
        # Unconfirmed: the code/wording for an invalid pool name in the URL.
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The resource name '{name}' is invalid. It "
            "can contain only letters, digits, hyphens and underscores, up to 64.",
        )
    existing = account.pools.get(name.lower())
    _check_conditions(call, existing)
    spec = validate_pool_body(call.json(), partial=False)
    now = call.now
    pool_id = f"{account.arm_id}/pools/{name}"
    _check_identities(call, spec, pool_id)
    if existing is not None:
        _not_deleting(existing)
        return _update(call, existing, spec)
    pool = Pool(
        subscription_id=account.subscription_id,
        resource_group=account.resource_group,
        account=account.name,
        name=name,
        spec=spec,
        etag=next_etag(None, now),
        creation_time=now,
        last_modified=now,
        provisioning_state_transition_time=now,
        allocation_state_transition_time=now,
    )
    account.pools[name.lower()] = pool
    nodes.start_resize(pool, now, call.sim.world.behaviour_for(pool))
    if pool.allocation_state == "Steady":
        # A new pool always reports Resizing first, as in the public examples.
        pool.allocation_state = "Resizing"
        pool.resize_due = now
    return _pool_response(call, pool)


def _update(call: ArmCall, pool: Pool, new_spec: JsonDict) -> web.Response:
    dedicated, low = pool.current_counts()
    check_update(
        pool.spec,
        new_spec,
        api_version=call.api_version,
        steady_and_empty=pool.allocation_state == "Steady" and dedicated + low == 0,
    )
    scale_changed = pool.spec["properties"].get("scaleSettings") != new_spec["properties"].get(
        "scaleSettings"
    )
    if scale_changed and pool.allocation_state == "Resizing":
        # No evidence for the code or wording; Batch refuses a resize while one is running
        # (the data plane asks to stopResize first), so we refuse rather than retarget: the
        # less helpful reading. Clients must wait for Steady or call stopResize.
        raise ArmError(
            409,
            "PoolResizing",
            "The specified pool is currently resizing; wait until its allocation state is "
            "Steady, or stop the resize, before changing its scale settings.",
            from_batch_rp=True,
        )
    pool.spec = new_spec
    pool.last_modified = call.now
    pool.etag = next_etag(pool.etag, call.now)
    if scale_changed:
        nodes.start_resize(pool, call.now, call.sim.world.behaviour_for(pool))
    return _pool_response(call, pool)


async def patch_pool(call: ArmCall) -> web.Response:
    account = _account(call)
    pool = account.pools.get(call.params["poolName"].lower())
    if pool is None:
        raise _pool_not_found()
    _check_conditions(call, pool)
    _not_deleting(pool)
    patch = validate_pool_body(call.json(), partial=True)
    _check_identities(call, patch, pool.arm_id)
    return _update(call, pool, merge_patch(pool.spec, patch))


async def delete_pool(call: ArmCall) -> web.Response:
    account = _account(call)
    pool = account.pools.get(call.params["poolName"].lower())
    if pool is None:
        return web.Response(status=204)
    behaviour = call.sim.world.behaviour_for(pool)
    if pool.delete_operation is None:
        now = call.now
        op = DeleteOperation(
            operation_id=f"delete-{uuid.uuid4()}",
            pool_arm_id=pool.arm_id,
            subscription_id=account.subscription_id,
            location=account.location.replace(" ", "").lower(),
            due=now + behaviour.delete_duration_s,
            error=call.request.get(LRO_FAILURE),
        )
        call.sim.world.operations[op.operation_id] = op
        pool.delete_operation = op.operation_id
        pool.provisioning_state = "Deleting"
        pool.provisioning_state_transition_time = now
        # Unconfirmed: nodes vanish at once; the pool record lingers (Deleting) until the
        # operation completes.
        pool.nodes.clear()
        pool.resize_due = None
    op = call.sim.world.operations[pool.delete_operation]
    location = (
        f"{call.sim.management_url}/subscriptions/{op.subscription_id}/providers/"
        f"Microsoft.Batch/locations/{op.location}/poolOperationResults/"
        f"{op.operation_id}?api-version={call.api_version}"
    )
    return web.Response(
        status=202, headers={"Location": location, "Retry-After": str(behaviour.lro_retry_after_s)}
    )


async def get_operation(call: ArmCall) -> web.Response:
    op = call.sim.world.operations.get(call.params["operationId"])
    if op is None or op.subscription_id.lower() != call.subscription_id.lower():
        # Unconfirmed: what an unknown operation id answers.
        raise ArmError(404, "OperationNotFound", "The operation was not found.")
    call.sim.tick()
    if op.status == "InProgress":
        return web.Response(
            status=202,
            headers={
                "Location": str(call.request.url),
                "Retry-After": str(call.sim.world.behaviour.lro_retry_after_s),
            },
        )
    if op.status == "Failed":
        error = op.error or {}
        raise ArmError(
            500,
            error.get("code", "InternalServerError"),
            error.get("message", "The operation failed."),
        )
    # The doc allows 200 or 204 when done; Unconfirmed which one Batch sends (200, no body).
    return web.Response(status=200)


async def list_pools(call: ArmCall) -> web.Response:
    account = _account(call)
    pools = sorted(account.pools.values(), key=lambda p: p.name.lower())
    query = call.request.query
    try:
        size = int(query.get("maxresults", call.sim.world.list_page_size))
        offset = (
            int(base64.urlsafe_b64decode(query["$skiptoken"]).decode())
            if "$skiptoken" in query
            else 0
        )
    except (ValueError, TypeError):
        raise ArmError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            from_batch_rp=True,
        ) from None
    size = max(1, min(size, 1000))
    page = pools[offset : offset + size]
    body: JsonDict = {"value": [render_pool(call, p) for p in page]}
    if offset + size < len(pools):
        token = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        body["nextLink"] = (
            f"{call.sim.management_url}{call.request.path}?api-version="
            f"{call.api_version}&maxresults={size}&$skiptoken={token}"
        )
    return arm_json(body)


async def disable_auto_scale(call: ArmCall) -> web.Response:
    # Unconfirmed: the pool keeps its current node counts as a fixed scale.
    pool = _account(call).pools.get(call.params["poolName"].lower())
    if pool is None:
        raise _pool_not_found()
    _not_deleting(pool)
    dedicated, low = pool.current_counts()
    pool.spec["properties"]["scaleSettings"] = {
        "fixedScale": {
            "targetDedicatedNodes": dedicated,
            "targetLowPriorityNodes": low,
            "resizeTimeout": "PT15M",
        }
    }
    pool.etag = next_etag(pool.etag, call.now)
    pool.last_modified = call.now
    return _pool_response(call, pool)


async def stop_resize(call: ArmCall) -> web.Response:
    pool = _account(call).pools.get(call.params["poolName"].lower())
    if pool is None:
        raise _pool_not_found()
    _not_deleting(pool)
    nodes.stop_resize(pool, call.now)
    pool.etag = next_etag(pool.etag, call.now)
    return _pool_response(call, pool)


def routes() -> list[ArmRoute]:
    typ = "batchAccounts"
    return [
        route("GET", ACCOUNT, PROVIDER, typ, "BatchAccount_Get", get_account),
        route("GET", POOLS, PROVIDER, "batchAccounts/pools", "Pool_ListByBatchAccount", list_pools),
        route("GET", POOL, PROVIDER, "batchAccounts/pools", "Pool_Get", get_pool),
        route("PUT", POOL, PROVIDER, "batchAccounts/pools", "Pool_Create", put_pool),
        route("PATCH", POOL, PROVIDER, "batchAccounts/pools", "Pool_Update", patch_pool),
        route("DELETE", POOL, PROVIDER, "batchAccounts/pools", "Pool_Delete", delete_pool),
        route(
            "POST",
            POOL + r"/disableAutoScale",
            PROVIDER,
            "batchAccounts/pools",
            "Pool_DisableAutoScale",
            disable_auto_scale,
        ),
        route(
            "POST",
            POOL + r"/stopResize",
            PROVIDER,
            "batchAccounts/pools",
            "Pool_StopResize",
            stop_resize,
        ),
        route(
            "GET",
            OPERATION,
            PROVIDER,
            "locations/poolOperationResults",
            "Pool_DeleteOperationResult",
            get_operation,
        ),
    ]


def account_name_is_valid(name: str) -> bool:
    return ACCOUNT_NAME.match(name) is not None
