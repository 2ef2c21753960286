"""Compare the pool we want with the pool Azure has, and build the PATCH bodies that close the gap.

Only what we own is compared (Azure adds defaults and read-only fields we never set). Comparison
is case-insensitive where Azure is (SKU names, image references, identity ids) and by value for
durations.

Invariants: a change is *disruptive* exactly when Azure refuses it on a pool with nodes (since
api-version 2024-07-01 only applicationPackages, certificates, metadata, scaleSettings and
startTask may change while nodes exist); everything else is patched in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from batchcert.models.names import OWNER_METADATA, UID_METADATA
from batchcert.translate.durations import same_duration

# REST property names (under ``properties``, or top level for identity) Azure only changes at 0 nodes.
DISRUPTIVE_PROPERTIES = ("vmSize", "taskSchedulingPolicy", "deploymentConfiguration", "identity")


@dataclass(frozen=True)
class PoolDiff:
    disruptive: tuple[str, ...] = ()
    scale_differs: bool = False
    metadata_differs: bool = False

    @property
    def in_sync(self) -> bool:
        return not (self.disruptive or self.scale_differs or self.metadata_differs)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _identity_key(identity: dict[str, Any] | None) -> tuple[str, frozenset[str]]:
    identity = identity or {}
    ids = identity.get("userAssignedIdentities") or {}
    return (_lower(identity.get("type") or "None"), frozenset(k.lower() for k in ids))


def _extension_key(ext: dict[str, Any]) -> tuple[Any, ...]:
    return (
        ext.get("name"),
        _lower(ext.get("publisher")),
        _lower(ext.get("type")),
        ext.get("typeHandlerVersion"),
        bool(ext.get("autoUpgradeMinorVersion", False)),
        json.dumps(ext.get("settings") or {}, sort_keys=True),
    )


def _deployment_key(deployment: dict[str, Any] | None) -> tuple[Any, ...]:
    vmc = (deployment or {}).get("virtualMachineConfiguration") or {}
    image = vmc.get("imageReference") or {}
    extensions = sorted(_extension_key(e) for e in vmc.get("extensions") or [])
    return (
        tuple(_lower(image.get(k)) for k in ("publisher", "offer", "sku", "version")),
        _lower(vmc.get("nodeAgentSkuId")),
        tuple(extensions),
    )


def _fill_type(props: dict[str, Any]) -> Any:
    return _lower((props.get("taskSchedulingPolicy") or {}).get("nodeFillType"))


def is_same_scale(desired: dict[str, Any], actual: dict[str, Any] | None) -> bool:
    actual = actual or {}
    if "autoScale" in desired:
        want, have = desired["autoScale"], actual.get("autoScale")
        return (
            have is not None
            and (have.get("formula") or "").strip() == want["formula"].strip()
            and same_duration(have.get("evaluationInterval"), want.get("evaluationInterval"))
        )
    want, have = desired["fixedScale"], actual.get("fixedScale")
    if have is None or actual.get("autoScale") is not None:
        return False
    if want.get("resizeTimeout") is not None and not same_duration(
        have.get("resizeTimeout"), want.get("resizeTimeout")
    ):
        return False
    return all(
        int(have.get(k) or 0) == int(want.get(k) or 0)
        for k in ("targetDedicatedNodes", "targetLowPriorityNodes")
    )


def _has_owner_metadata(desired: list[dict[str, str]], actual: list[dict[str, Any]]) -> bool:
    have = {m.get("name"): m.get("value") for m in actual or []}
    return all(have.get(m["name"]) == m["value"] for m in desired)


def diff_pool(
    desired: dict[str, Any], actual: dict[str, Any], *, desired_scale: dict[str, Any]
) -> PoolDiff:
    """Differences between the desired PUT body and the pool Azure returned (REST shape)."""
    want, have = desired["properties"], actual.get("properties") or {}
    disruptive: list[str] = []
    if _lower(want["vmSize"]) != _lower(have.get("vmSize")):
        disruptive.append("vmSize")
    if _fill_type(want) != _fill_type(have):
        disruptive.append("taskSchedulingPolicy")
    if _deployment_key(want["deploymentConfiguration"]) != _deployment_key(
        have.get("deploymentConfiguration")
    ):
        disruptive.append("deploymentConfiguration")
    if _identity_key(desired.get("identity")) != _identity_key(actual.get("identity")):
        disruptive.append("identity")
    return PoolDiff(
        disruptive=tuple(disruptive),
        scale_differs=not is_same_scale(desired_scale, have.get("scaleSettings")),
        metadata_differs=not _has_owner_metadata(want["metadata"], have.get("metadata") or []),
    )


def build_disruptive_patch(desired: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """PATCH body carrying the disruptive properties (sent only with the pool at 0 nodes)."""
    patch: dict[str, Any] = {"properties": {}}
    for name in fields:
        if name == "identity":
            patch["identity"] = desired["identity"]
        else:
            patch["properties"][name] = desired["properties"][name]
    return patch


def build_in_place_patch(
    desired: dict[str, Any], diff: PoolDiff, *, desired_scale: dict[str, Any]
) -> dict[str, Any] | None:
    """PATCH body for what Azure changes on a pool with nodes, or None if nothing is due."""
    props: dict[str, Any] = {}
    if diff.scale_differs:
        props["scaleSettings"] = desired_scale
    if diff.metadata_differs:
        props["metadata"] = desired["properties"]["metadata"]
    return {"properties": props} if props else None


__all__ = [
    "DISRUPTIVE_PROPERTIES",
    "OWNER_METADATA",
    "UID_METADATA",
    "PoolDiff",
    "build_disruptive_patch",
    "build_in_place_patch",
    "diff_pool",
    "is_same_scale",
]
