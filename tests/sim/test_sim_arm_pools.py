"""ARM Microsoft.Batch pools through azure-mgmt-batch 19.0.0 (api-version 2025-06-01).

Covers: the public example bodies accepted and round-tripped through GET (defaults added,
identity filled with clientId/principalId); ETag header and body; PUT replace semantics and
PATCH partial semantics; If-Match / If-None-Match → 412; 404 bodies for pool, account and
resource group; LIST paging with nextLink; DELETE as a Location LRO polled to completion, 204
for a missing pool, 409 while deleting; Resizing → Steady as nodes arrive; resize by PATCH;
batch account GET with accountEndpoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

Body = Callable[..., dict[str, Any]]


def _create(arm: Any, demo: dict[str, Any], name: str, body: dict[str, Any], **kw: Any) -> Any:
    return arm.pool.create(demo["resourceGroup"], demo["batchAccount"], name, body, **kw)


def _get(arm: Any, demo: dict[str, Any], name: str) -> Any:
    return arm.pool.get(demo["resourceGroup"], demo["batchAccount"], name)


def _wire(pipeline: Any, deserialized: Any, headers: Any) -> Any:
    """``cls=`` hook: the raw HTTP response, to assert on what was on the wire."""
    return pipeline.http_response


def test_batch_account_get_returns_the_data_plane_endpoint(arm: Any, demo: dict[str, Any]) -> None:
    account = arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    assert account.account_endpoint == demo["accountEndpoint"]
    assert account.account_endpoint.startswith("demobatch.westeurope.batch.sim.test:")
    assert account.provisioning_state == "Succeeded"


def test_user_assigned_identities_example_round_trips(
    arm: Any, demo: dict[str, Any], control: Any, example_body: Callable[[str], Any]
) -> None:
    body = example_body("PoolCreate_UserAssignedIdentities")
    for name in ("id1", "id2"):
        control.add_identity(
            demo["subscriptionId"],
            demo["resourceGroup"],
            name,
            client_id=f"{name}-client",
            principal_id=f"{name}-principal",
        )
    created = _create(arm, demo, "testpool", body, cls=_wire).json()
    fetched = arm.pool.get(
        demo["resourceGroup"], demo["batchAccount"], "testpool", cls=_wire
    ).json()
    assert created == fetched
    props = fetched["properties"]
    # The service upper-cases vmSize (batch-arm-pools.json [0], [7]: Standard_d4s_v3 -> STANDARD_D4S_V3).
    assert props["vmSize"] == "STANDARD_D4DS_V5"
    assert props["deploymentConfiguration"] == body["properties"]["deploymentConfiguration"]
    assert props["scaleSettings"] == body["properties"]["scaleSettings"]
    assert props["provisioningState"] == "Succeeded"
    assert props["allocationState"] == "Resizing"
    assert props["interNodeCommunication"] == "Disabled"
    assert props["taskSlotsPerNode"] == 1
    assert props["taskSchedulingPolicy"] == {"nodeFillType": "Spread", "jobDefaultOrder": "None"}
    assert (props["currentDedicatedNodes"], props["currentLowPriorityNodes"]) == (0, 0)
    assert set(fetched["identity"]["userAssignedIdentities"]) == set(
        body["identity"]["userAssignedIdentities"]
    )
    identities = fetched["identity"]["userAssignedIdentities"].values()
    assert {v["clientId"] for v in identities} == {"id1-client", "id2-client"}
    assert {v["principalId"] for v in identities} == {"id1-principal", "id2-principal"}
    # The typed model sees the same thing.
    typed = _get(arm, demo, "testpool")
    assert (
        typed.identity.user_assigned_identities[
            next(iter(body["identity"]["userAssignedIdentities"]))
        ].client_id
        == "id1-client"
    )


def test_extensions_example_round_trips_settings_verbatim(
    arm: Any, demo: dict[str, Any], example_body: Callable[[str], Any]
) -> None:
    body = example_body("PoolCreate_VirtualMachineConfiguration_Extensions")
    _create(arm, demo, "testpool", body)
    response = arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "testpool", cls=_wire)
    sent_vmc = body["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    got = response.json()
    assert got["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"] == sent_vmc
    assert got["type"] == "Microsoft.Batch/batchAccounts/pools"
    assert got["id"].endswith(f"/batchAccounts/{demo['batchAccount']}/pools/testpool")
    assert re.fullmatch(r'W/"0x8D[0-9A-F]{13}"', got["etag"])
    assert response.headers["ETag"] == got["etag"]


def test_put_replaces_and_patch_merges(arm: Any, demo: dict[str, Any], pool_body: Body) -> None:
    body = pool_body(nodes=0)
    body["properties"]["metadata"] = [{"name": "team", "value": "a"}]
    body["properties"]["displayName"] = "first"
    first = _create(arm, demo, "p", body)
    # PATCH: only what is sent changes.
    patched = arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        "p",
        {"properties": {"metadata": [{"name": "team", "value": "b"}]}},
    )
    assert patched.display_name == "first"
    assert patched.metadata[0].value == "b"
    assert patched.etag != first.etag
    # PUT on an existing pool: omitted properties are reset (displayName, metadata).
    replaced = _create(arm, demo, "p", pool_body(nodes=0))
    assert replaced.display_name is None
    assert replaced.metadata is None
    assert replaced.creation_time == first.creation_time


def test_if_none_match_star_refuses_an_existing_pool(
    arm: Any, demo: dict[str, Any], pool_body: Body
) -> None:
    _create(arm, demo, "p", pool_body(nodes=0), match_condition=MatchConditions.IfMissing)
    with pytest.raises(HttpResponseError) as caught:
        _create(arm, demo, "p", pool_body(nodes=0), match_condition=MatchConditions.IfMissing)
    assert caught.value.status_code == 412


def test_if_match_must_name_the_current_etag(
    arm: Any, demo: dict[str, Any], pool_body: Body
) -> None:
    created = _create(arm, demo, "p", pool_body(nodes=0))
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.update(
            demo["resourceGroup"],
            demo["batchAccount"],
            "p",
            {"properties": {"displayName": "x"}},
            etag='W/"0x8D000000000000A"',
            match_condition=MatchConditions.IfNotModified,
        )
    assert caught.value.status_code == 412
    assert caught.value.response.json()["error"]["code"] == "ConditionNotMet"
    updated = arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        "p",
        {"properties": {"displayName": "x"}},
        etag=created.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    assert updated.display_name == "x"
    with pytest.raises(HttpResponseError) as missing:
        _create(
            arm,
            demo,
            "absent",
            pool_body(nodes=0),
            etag=created.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert missing.value.status_code == 412


def test_not_found_bodies(arm: Any, demo: dict[str, Any]) -> None:
    with pytest.raises(ResourceNotFoundError) as pool:
        _get(arm, demo, "nope")
    assert pool.value.error.code == "PoolNotFound"
    assert "The specified pool does not exist." in pool.value.error.message
    with pytest.raises(ResourceNotFoundError) as account:
        arm.pool.get(demo["resourceGroup"], "noaccount", "p")
    assert account.value.error.code == "ResourceNotFound"
    assert "Microsoft.Batch/batchAccounts/noaccount" in account.value.error.message
    with pytest.raises(ResourceNotFoundError) as group:
        arm.pool.get("no-such-rg", demo["batchAccount"], "p")
    assert group.value.error.code == "ResourceGroupNotFound"


def test_list_pages_with_next_link(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any
) -> None:
    for i in range(5):
        _create(arm, demo, f"pool{i}", pool_body(nodes=0))
    control.set_settings(armListPageSize=2)
    control.clear_requests()
    names = [
        p.name for p in arm.pool.list_by_batch_account(demo["resourceGroup"], demo["batchAccount"])
    ]
    assert names == [f"pool{i}" for i in range(5)]
    pages = control.requests(service="arm", operation="Pool_ListByBatchAccount")
    assert len(pages) == 3
    assert "$skiptoken" in pages[1]["query"]


def test_delete_is_a_location_lro_polled_to_completion(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any
) -> None:
    _create(arm, demo, "p", pool_body(nodes=0))
    control.set_node_behaviour(lroRetryAfterSeconds=1, deleteDurationSeconds=60)
    poller = arm.pool.begin_delete(demo["resourceGroup"], demo["batchAccount"], "p")
    assert _get(arm, demo, "p").provisioning_state == "Deleting"
    with pytest.raises(ResourceExistsError) as conflict:
        _create(arm, demo, "p", pool_body(nodes=0))
    assert conflict.value.error.code == "PoolBeingDeleted"
    control.advance(61)
    poller.result(timeout=30)
    assert poller.status() == "Succeeded"
    with pytest.raises(ResourceNotFoundError):
        _get(arm, demo, "p")
    statuses = [
        r["status"]
        for r in control.requests(service="arm")
        if r["operation"] in ("Pool_Delete", "Pool_DeleteOperationResult")
    ]
    assert statuses[0] == 202
    assert statuses[-1] == 200


def test_delete_response_headers(
    arm: Any,
    demo: dict[str, Any],
    pool_body: Body,
    raw: Any,
    info: dict[str, Any],
    arm_token: str,
    control: Any,
) -> None:
    _create(arm, demo, "p", pool_body(nodes=0))
    url = (
        f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
        f"{demo['resourceGroup']}/providers/Microsoft.Batch/batchAccounts/"
        f"{demo['batchAccount']}/pools/p?api-version=2025-06-01"
    )
    answer = raw("DELETE", url, token=arm_token)
    assert answer.status == 202
    assert "Azure-AsyncOperation" not in answer.headers
    assert answer.headers["Retry-After"].isdigit()
    location = answer.headers["Location"]
    assert "/poolOperationResults/" in location
    assert raw("GET", location, token=arm_token).status == 202
    control.advance(3600)
    assert raw("GET", location, token=arm_token).status == 200
    assert raw("DELETE", url, token=arm_token).status == 204


def test_delete_of_a_missing_pool_is_204_and_the_poller_finishes(
    arm: Any, demo: dict[str, Any]
) -> None:
    poller = arm.pool.begin_delete(demo["resourceGroup"], demo["batchAccount"], "never")
    poller.result(timeout=10)
    assert poller.done()


def test_new_pool_resizes_then_settles_when_nodes_arrive(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any
) -> None:
    control.set_node_behaviour(arrivalDelaySeconds=120)
    created = _create(arm, demo, "p", pool_body(nodes=2))
    assert created.allocation_state == "Resizing"
    assert created.current_dedicated_nodes == 0
    control.advance(119)
    assert _get(arm, demo, "p").allocation_state == "Resizing"
    control.advance(2)
    settled = _get(arm, demo, "p")
    assert settled.allocation_state == "Steady"
    assert settled.current_dedicated_nodes == 2
    assert settled.resize_operation_status.target_dedicated_nodes == 2


def test_resize_by_patching_scale_settings(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any
) -> None:
    _create(arm, demo, "p", pool_body(nodes=1))
    control.advance(3600)
    resized = arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        "p",
        {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 3}}}},
    )
    assert resized.allocation_state == "Resizing"
    control.advance(3600)
    assert _get(arm, demo, "p").current_dedicated_nodes == 3
    arm.pool.update(
        demo["resourceGroup"],
        demo["batchAccount"],
        "p",
        {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0}}}},
    )
    control.advance(3600)
    shrunk = _get(arm, demo, "p")
    assert (shrunk.allocation_state, shrunk.current_dedicated_nodes) == ("Steady", 0)


def test_capacity_shortfall_reports_a_resize_error(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any
) -> None:
    control.set_node_behaviour(capacity=1)
    _create(arm, demo, "p", pool_body(nodes=3))
    control.advance(3600)
    pool = _get(arm, demo, "p")
    assert pool.current_dedicated_nodes == 1
    assert pool.resize_operation_status.errors[0].code == "AllocationFailed"
