"""Drift detection between the pool we want and the pool Azure returns.

Covers: an identical pool is in sync despite Azure's extra read-only fields and case changes;
scale and metadata drift are in-place; vmSize, image, extension settings, identity and fill type
are disruptive; PATCH bodies carry exactly what changed; ISO durations compare by value.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from batchcert.models.spec import parse_spec
from batchcert.translate.durations import parse_duration_seconds, same_duration
from batchcert.translate.merge_patch import apply_merge_patch, build_merge_patch
from batchcert.translate.pool_body import (
    build_pool_body,
    build_scale_settings,
    build_zero_scale_settings,
)
from batchcert.translate.pool_diff import build_disruptive_patch, build_in_place_patch, diff_pool
from support.builders import CLIENT_ID, OWNER, base_spec


def desired_and_actual() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    spec = parse_spec(base_spec())
    desired = build_pool_body(spec, identity_client_id=CLIENT_ID, owner=OWNER)
    actual = copy.deepcopy(desired)
    actual["id"] = "/subscriptions/x/pools/render-pool"
    actual["properties"].update(
        provisioningState="Succeeded",
        allocationState="Steady",
        currentDedicatedNodes=1,
        vmSize="standard_ds2_v2",
        interNodeCommunication="Disabled",
    )
    actual["properties"]["scaleSettings"]["fixedScale"]["resizeTimeout"] = "PT900S"
    ids = actual["identity"]["userAssignedIdentities"]
    key = next(iter(ids))
    actual["identity"]["userAssignedIdentities"] = {
        key.lower(): {"clientId": CLIENT_ID, "principalId": "p"}
    }
    return desired, actual, build_scale_settings(spec)


def test_identical_pool_is_in_sync() -> None:
    desired, actual, scale = desired_and_actual()
    diff = diff_pool(desired, actual, desired_scale=scale)
    assert diff.in_sync, diff
    assert build_in_place_patch(desired, diff, desired_scale=scale) is None


def test_scale_and_metadata_drift_is_patched_in_place() -> None:
    desired, actual, scale = desired_and_actual()
    actual["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] = 5
    actual["properties"]["metadata"] = []
    diff = diff_pool(desired, actual, desired_scale=scale)
    assert (diff.disruptive, diff.scale_differs, diff.metadata_differs) == ((), True, True)
    patch = build_in_place_patch(desired, diff, desired_scale=scale)
    assert patch == {
        "properties": {"scaleSettings": scale, "metadata": desired["properties"]["metadata"]}
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a["properties"].update(vmSize="STANDARD_D4_V3"), "vmSize"),
        (
            lambda a: a["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
                "imageReference"
            ].update(sku="22.04-lts"),
            "deploymentConfiguration",
        ),
        (
            lambda a: a["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
                "extensions"
            ][0]["settings"]["authenticationSettings"].update(msiClientId="wrong"),
            "deploymentConfiguration",
        ),
        (
            lambda a: a["properties"]["deploymentConfiguration"][
                "virtualMachineConfiguration"
            ].update(extensions=[]),
            "deploymentConfiguration",
        ),
        (lambda a: a.update(identity={"type": "None"}), "identity"),
        (
            lambda a: a["properties"].update(taskSchedulingPolicy={"nodeFillType": "Spread"}),
            "taskSchedulingPolicy",
        ),
    ],
    ids=[
        "vm-size",
        "image",
        "extension-client-id",
        "extension-removed",
        "identity-removed",
        "fill-type",
    ],
)
def test_disruptive_changes(mutate: Any, field: str) -> None:
    desired, actual, scale = desired_and_actual()
    mutate(actual)
    diff = diff_pool(desired, actual, desired_scale=scale)
    assert diff.disruptive == (field,)
    patch = build_disruptive_patch(desired, diff.disruptive)
    if field == "identity":
        assert patch["identity"] == desired["identity"]
    else:
        assert patch["properties"][field] == desired["properties"][field]


@pytest.mark.parametrize(
    ("mutate", "phrase"),
    [
        (
            lambda a: a["properties"].update(vmSize="STANDARD_D4_V3"),
            "vmSize: the pool runs STANDARD_D4_V3, the spec asks for STANDARD_DS2_V2",
        ),
        (
            lambda a: a["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
                "imageReference"
            ].update(sku="22.04-lts"),
            "image: the pool runs canonical/ubuntuserver/22.04-lts/latest, the spec asks for "
            "canonical/ubuntuserver/20.04-lts/latest",
        ),
        (
            lambda a: a["properties"]["deploymentConfiguration"][
                "virtualMachineConfiguration"
            ].update(nodeAgentSkuId="batch.node.ubuntu 22.04"),
            "nodeAgentSkuId: the pool runs batch.node.ubuntu 22.04, the spec asks for "
            "batch.node.ubuntu 20.04",
        ),
        (
            lambda a: a.update(identity={"type": "None"}),
            "identity: the pool runs no identity, the spec asks for testumaforpools",
        ),
    ],
    ids=["vm-size", "image", "node-agent", "identity"],
)
def test_disruptive_changes_name_what_runs_and_what_is_asked(mutate: Any, phrase: str) -> None:
    desired, actual, scale = desired_and_actual()
    mutate(actual)
    diff = diff_pool(desired, actual, desired_scale=scale)
    assert diff.changes == (phrase,)
    assert diff.described == phrase


def test_zero_scale_is_a_scale_difference() -> None:
    desired, actual, _ = desired_and_actual()
    assert diff_pool(desired, actual, desired_scale=build_zero_scale_settings()).scale_differs


def test_autoscale_compares_formula_and_interval() -> None:
    want = {"autoScale": {"formula": "$TargetDedicatedNodes=1;", "evaluationInterval": "PT5M"}}
    assert (
        diff_pool(
            {"properties": {"vmSize": "a", "deploymentConfiguration": {}, "metadata": []}},
            {
                "properties": {
                    "vmSize": "a",
                    "scaleSettings": {
                        "autoScale": {
                            "formula": "$TargetDedicatedNodes=1; ",
                            "evaluationInterval": "PT300S",
                        }
                    },
                }
            },
            desired_scale=want,
        ).scale_differs
        is False
    )


def test_durations() -> None:
    assert parse_duration_seconds("PT15M") == 900
    assert parse_duration_seconds("P1DT2H") == 93600
    assert same_duration("PT15M", "PT900S")
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_duration_seconds("15 minutes")


def test_merge_patch_is_minimal() -> None:
    old = {"a": 1, "b": {"c": 1, "d": 2}, "e": [1], "gone": True}
    new = {"a": 1, "b": {"c": 1, "d": 3}, "e": [1, 2]}
    assert build_merge_patch(old, new) == {"b": {"d": 3}, "e": [1, 2], "gone": None}
    assert build_merge_patch(new, new) == {}
    # Applying it gives what the API server will hold (a turn before the watch delivers it).
    assert apply_merge_patch(old, build_merge_patch(old, new)) == new
    assert apply_merge_patch(new, build_merge_patch(new, old)) == old
    # RFC 7386: an object patched over a scalar patches an empty object (its nulls dropped).
    assert apply_merge_patch({"a": 1}, {"a": {"b": None, "c": 2}}) == {"a": {"c": 2}}


def test_azure_normalisation_is_not_drift() -> None:
    """What ARM does to a body we sent (batch-arm-pools.json [0], [7]): vmSize upper-cased,
    defaults filled in (taskSchedulingPolicy.jobDefaultOrder, startTask, resizeTimeout PT15M,
    targetNodeCommunicationMode), and extension settings echoed as a JSON string."""
    import json as _json

    desired, actual, scale = desired_and_actual()
    props = actual["properties"]
    props["vmSize"] = props["vmSize"].upper()
    props["taskSchedulingPolicy"]["jobDefaultOrder"] = "None"
    props["targetNodeCommunicationMode"] = "Default"
    props["currentNodeCommunicationMode"] = "Simplified"
    props["scaleSettings"]["fixedScale"]["resizeTimeout"] = "PT15M"
    vmc = props["deploymentConfiguration"]["virtualMachineConfiguration"]
    for ext in vmc["extensions"]:
        ext["settings"] = _json.dumps(ext["settings"])
        ext["enableAutomaticUpgrade"] = False
    vmc["imageReference"].pop("version", None)  # Azure fills "latest" in; absent means latest
    desired["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
        "imageReference"
    ]["version"] = "latest"
    assert diff_pool(desired, actual, desired_scale=scale).in_sync


def test_an_extension_change_needs_a_new_pool() -> None:
    desired, actual, scale = desired_and_actual()
    vmc = actual["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    sms = vmc["extensions"][0]["settings"]["secretsManagementSettings"]
    sms["observedCertificates"] = sms["observedCertificates"][:0]  # a certificate added in spec
    diff = diff_pool(desired, actual, desired_scale=scale)
    assert diff.disruptive == ("deploymentConfiguration",)
    assert diff.requires_recreate == ("extensions",)
    # An image change alone is a zero-node update, not a recreate.
    desired2, actual2, _ = desired_and_actual()
    actual2["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"][
        "imageReference"
    ]["sku"] = "other"
    diff2 = diff_pool(desired2, actual2, desired_scale=scale)
    assert diff2.disruptive == ("deploymentConfiguration",) and diff2.requires_recreate == ()


def test_surprising_pool_shapes_do_not_raise() -> None:
    desired, _, scale = desired_and_actual()
    for actual in (
        {},
        {"properties": None},
        {"properties": {"deploymentConfiguration": "x", "metadata": ["junk"]}},
        {
            "properties": {
                "deploymentConfiguration": {"virtualMachineConfiguration": {"extensions": [1]}}
            }
        },
    ):
        assert not diff_pool(desired, actual, desired_scale=scale).in_sync
