"""What the Batch resource provider refuses, through azure-mgmt-batch and raw requests.

Covers: ``PropertyCannotBeUpdated`` (Reason/PropertyName/PropertyPath details) for vmSize, the
deployment configuration (extensions) and identity while nodes exist, and the same changes
accepted once the pool is Steady at 0/0 nodes; changes always allowed (scaleSettings,
metadata, startTask); unknown identities; bad bodies (malformed JSON, unknown members, wrong
types, missing required properties, bad enum values) with the Batch RP's 400 bodies; unknown,
malformed and missing api-versions with ARM's bodies; no request ever answered 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

Body = Callable[..., dict[str, Any]]


def _details(err: HttpResponseError) -> dict[str, str]:
    return {d["code"]: d["message"] for d in err.response.json()["error"]["details"]}


@pytest.fixture
def pool_url(info: dict[str, Any], demo: dict[str, Any]) -> Callable[..., str]:
    def url(pool: str = "p", api_version: str | None = "2025-06-01") -> str:
        base = (
            f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
            f"{demo['resourceGroup']}/providers/Microsoft.Batch/batchAccounts/"
            f"{demo['batchAccount']}/pools/{pool}"
        )
        return base if api_version is None else f"{base}?api-version={api_version}"

    return url


@pytest.fixture
def pool_with_nodes(
    arm: Any, demo: dict[str, Any], pool_body: Body, control: Any, kv_extension: Callable[..., Any]
) -> Any:
    arm.pool.create(
        demo["resourceGroup"],
        demo["batchAccount"],
        "p",
        pool_body(nodes=2, extensions=[kv_extension()]),
    )
    control.advance(3600)
    pool = arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "p")
    assert (pool.allocation_state, pool.current_dedicated_nodes) == ("Steady", 2)
    return pool


def _update(arm: Any, demo: dict[str, Any], patch: dict[str, Any]) -> Any:
    return arm.pool.update(demo["resourceGroup"], demo["batchAccount"], "p", patch)


@pytest.mark.parametrize(
    ("patch", "name", "path"),
    [
        ({"properties": {"vmSize": "STANDARD_D4S_V3"}}, "vmSize", "properties.vmSize"),
        (
            {"properties": {"taskSchedulingPolicy": {"nodeFillType": "Spread"}}},
            "taskSchedulingPolicy",
            "properties.taskSchedulingPolicy",
        ),
        ({"identity": {"type": "None"}}, "identity", "identity"),
    ],
)
def test_changes_refused_while_nodes_exist(
    arm: Any,
    demo: dict[str, Any],
    pool_with_nodes: Any,
    patch: dict[str, Any],
    name: str,
    path: str,
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        _update(arm, demo, patch)
    err = caught.value
    assert err.status_code == 400
    body = err.response.json()["error"]
    assert body["code"] == "PropertyCannotBeUpdated"
    assert body["message"].startswith(
        "A property that cannot be updated was specified as part of the request."
    )
    assert body["target"] == "BatchAccount"
    details = _details(err)
    assert details["PropertyName"] == name
    assert details["PropertyPath"] == path
    assert "Reason" in details


def test_extension_change_refused_while_nodes_exist(
    arm: Any,
    demo: dict[str, Any],
    pool_with_nodes: Any,
    pool_body: Body,
    kv_extension: Callable[..., Any],
) -> None:
    # PUT replaces: the same pool with another polling interval is a deploymentConfiguration change.
    body = pool_body(nodes=2, extensions=[kv_extension(polling="60")])
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", body)
    assert _details(caught.value)["PropertyName"] == "deploymentConfiguration"
    assert _details(caught.value)["PropertyPath"] == "properties.deploymentConfiguration"


def test_always_updatable_properties_change_with_nodes(
    arm: Any, demo: dict[str, Any], pool_with_nodes: Any
) -> None:
    updated = _update(
        arm,
        demo,
        {
            "properties": {
                "metadata": [{"name": "k", "value": "v"}],
                "startTask": {"commandLine": "/bin/true"},
                "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 3}},
            }
        },
    )
    assert updated.metadata[0].name == "k"
    assert updated.start_task.command_line == "/bin/true"
    assert updated.allocation_state == "Resizing"


def test_refused_changes_apply_once_steady_at_zero_nodes(
    arm: Any, demo: dict[str, Any], pool_with_nodes: Any, control: Any
) -> None:
    _update(
        arm,
        demo,
        {
            "properties": {
                "scaleSettings": {
                    "fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 0}
                }
            }
        },
    )
    # Still Resizing: refused even though the target is 0.
    with pytest.raises(HttpResponseError):
        _update(arm, demo, {"properties": {"vmSize": "STANDARD_D4S_V3"}})
    control.advance(3600)
    updated = _update(
        arm, demo, {"properties": {"vmSize": "STANDARD_D4S_V3"}, "identity": {"type": "None"}}
    )
    assert updated.vm_size == "STANDARD_D4S_V3"
    assert updated.identity.type == "None"


def test_unknown_identity_is_refused(arm: Any, demo: dict[str, Any], pool_body: Body) -> None:
    body = pool_body(nodes=0)
    body["identity"]["userAssignedIdentities"] = {
        demo["identity"]["resourceId"].replace("demo-pool-identity", "ghost"): {}
    }
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", body)
    assert caught.value.status_code == 400
    assert caught.value.error.code == "FailedIdentityOperation"
    assert "ghost" in caught.value.error.message


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        ('{"properties": {"vmSize": ', "InvalidRequestBody", "Unexpected character"),
        (
            '{"location": "westeurope", "properties": {}}',
            "InvalidRequestBody",
            "Could not find member 'location' on object of type 'Pool'",
        ),
        ('{"properties": {"vmSize": 42}}', "InvalidRequestBody", "System.String"),
        ('{"properties": {"displayName": "d"}}', "MissingRequiredProperty", "vmSize"),
        (
            '{"properties": {"vmSize": "x", "deploymentConfiguration": {"virtualMachineConfiguration":'
            ' {"imageReference": {"publisher": "p", "offer": "o", "sku": "s"}}}}}',
            "MissingRequiredProperty",
            "nodeAgentSkuId",
        ),
        (
            '{"properties": {"vmSize": "x", "scaleSettings": {"fixedScale": {"targetDedicatedNodes":'
            ' "two"}}}}',
            "InvalidRequestBody",
            "System.Int32",
        ),
        (
            '{"properties": {"vmSize": "x", "scaleSettings": {"fixedScale": {"targetDedicatedNodes":'
            " -1}}}}",
            "InvalidPropertyValue",
            "targetDedicatedNodes",
        ),
        (
            '{"properties": {"vmSize": "x", "taskSchedulingPolicy": {"nodeFillType": "Dense"}}}',
            "InvalidPropertyValue",
            "nodeFillType",
        ),
        ("[1, 2]", "InvalidRequestBody", "Unexpected token"),
    ],
)
def test_bad_bodies_get_batch_rp_400s(
    raw: Any, pool_url: Callable[..., str], arm_token: str, data: str, code: str, fragment: str
) -> None:
    answer = raw(
        "PUT", pool_url(), token=arm_token, data=data, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert fragment in answer.text
    assert "RequestId:" in error["message"]


@pytest.mark.parametrize(
    ("api_version", "code"),
    [
        (None, "MissingApiVersionParameter"),
        ("yesterday", "InvalidApiVersionParameter"),
        ("2099-01-01", "NoRegisteredProviderFound"),
        ("2023-05-01", "NoRegisteredProviderFound"),
    ],
)
def test_api_versions_outside_the_supported_set_are_refused(
    raw: Any, arm_token: str, pool_url: Callable[..., str], api_version: str | None, code: str
) -> None:
    answer = raw("GET", pool_url(api_version=api_version), token=arm_token)
    assert answer.status == 400
    assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize("api_version", ["2024-07-01", "2025-06-01"])
def test_supported_api_versions_are_served(
    raw: Any, arm_token: str, pool_url: Callable[..., str], api_version: str
) -> None:
    answer = raw("GET", pool_url(api_version=api_version), token=arm_token)
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "PoolNotFound"


def test_unknown_paths_and_methods_are_json_not_500(
    raw: Any,
    arm_token: str,
    info: dict[str, Any],
    demo: dict[str, Any],
    pool_url: Callable[..., str],
    control: Any,
) -> None:
    sub = f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}"
    for method, url in [
        ("GET", f"{sub}/providers/Microsoft.Batch/widgets/x?api-version=2025-06-01"),
        ("GET", f"{info['resourceManager']}nowhere"),
        ("POST", pool_url()),
        (
            "GET",
            f"{info['resourceManager']}subscriptions/ffffffff-0000-0000-0000-000000000000/"
            "resourceGroups/rg?api-version=2024-03-01",
        ),
    ]:
        answer = raw(method, url, token=arm_token)
        assert 400 <= answer.status < 500, (method, url, answer.status)
        assert "error" in answer.json()
    assert not control.requests(service="arm", status=500)


def test_paths_are_case_insensitive(
    raw: Any, arm_token: str, info: dict[str, Any], demo: dict[str, Any]
) -> None:
    url = (
        f"{info['resourceManager']}SUBSCRIPTIONS/{demo['subscriptionId']}/resourcegroups/"
        f"{demo['resourceGroup'].upper()}/providers/microsoft.batch/batchaccounts/"
        f"{demo['batchAccount'].upper()}?api-version=2025-06-01"
    )
    answer = raw("GET", url, token=arm_token)
    assert answer.status == 200
    assert answer.json()["name"] == demo["batchAccount"]


def test_pool_answers_normalise_what_was_sent_as_recorded(
    arm: Any, demo: dict[str, Any], pool_body: Any
) -> None:
    """batch-arm-pools.json [7] (recorded 2026): vmSize upper-cased, defaults filled in."""
    body = pool_body(nodes=0)
    body["properties"]["vmSize"] = "Standard_d4s_v3"
    body["properties"]["targetNodeCommunicationMode"] = "Simplified"  # a valid member
    created = arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "norm", body).as_dict()
    props = created["properties"]
    assert props["vmSize"] == "STANDARD_D4S_V3"
    assert props["scaleSettings"]["fixedScale"]["resizeTimeout"] == "PT15M"
    assert props["taskSchedulingPolicy"]["jobDefaultOrder"] == "None"


def test_extensions_cannot_change_even_at_zero_nodes(
    arm: Any, demo: dict[str, Any], pool_body: Any, kv_extension: Any, control: Any
) -> None:
    """The Batch extensions doc; the refusal as Azure/azure-sdk-for-net#40325 quotes it."""
    from azure.core.exceptions import HttpResponseError

    arm.pool.create(
        demo["resourceGroup"],
        demo["batchAccount"],
        "ext0",
        pool_body(nodes=0, extensions=[kv_extension()]),
    )
    control.advance(60)
    patch = {
        "properties": {
            "deploymentConfiguration": pool_body(extensions=[kv_extension(polling="600")])[
                "properties"
            ]["deploymentConfiguration"]
        }
    }
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.update(demo["resourceGroup"], demo["batchAccount"], "ext0", patch)
    assert caught.value.status_code == 400
    error = caught.value.response.json()["error"]
    assert error["code"] == "PropertyCannotBeUpdated"
    assert error["details"][0]["message"] == (
        "A property that cannot be updated was specified as part of the request."
    )
    assert error["details"][1:] == [
        {"code": "PropertyName", "message": "deploymentConfiguration"},
        {"code": "PropertyPath", "message": "properties.deploymentConfiguration"},
    ]


def test_a_scale_change_while_resizing_is_refused(
    arm: Any, demo: dict[str, Any], pool_body: Any
) -> None:
    from azure.core.exceptions import HttpResponseError

    arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "busy", pool_body(nodes=1))
    scale = {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 3}}}}
    with pytest.raises(HttpResponseError) as caught:
        arm.pool.update(demo["resourceGroup"], demo["batchAccount"], "busy", scale)
    assert caught.value.status_code == 409
