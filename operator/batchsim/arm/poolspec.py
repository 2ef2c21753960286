"""Microsoft.Batch pool bodies: validation, update rules and rendering (pure, no I/O).

Role: what the Batch resource provider checks before it accepts a pool PUT/PATCH, which changes
it refuses on a pool that has nodes, and how it renders a pool back.

Invariants:
* Validation raises ``ArmError`` with the Batch RP's codes: unparseable or mistyped JSON is
  ``InvalidRequestBody`` (the type error named like the service's JSON deserializer does),
  absent required properties ``MissingRequiredProperty``, out-of-range or unknown enum values
  ``InvalidPropertyValue``. Unknown properties are ignored, read-only ones dropped, as ARM does.
* Enum values are accepted case-insensitively and stored in their canonical casing.
* The stored ``spec`` has defaults applied (``taskSlotsPerNode`` 1, ``interNodeCommunication``
  Disabled, ``taskSchedulingPolicy.nodeFillType`` Spread), so "omitted" and "default" compare
  equal when deciding whether a PUT changed a property.
* Update rules follow the api-version: since 2024-07-01 a pool with nodes accepts changes only
  to ``MUTABLE_WITH_NODES``; every other property needs the pool Steady at 0 dedicated and 0
  low-priority nodes. Before 2024-07-01 those properties could never change.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from batchsim.arm.errors import (
    ArmError,
    invalid_property_value,
    invalid_request_body,
    missing_required_property,
    property_cannot_be_updated,
)

JsonDict = dict[str, Any]

POOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ACCOUNT_NAME = re.compile(r"^[a-zA-Z0-9]{3,24}$")
IDENTITY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/"
    r"userAssignedIdentities/[^/]+$",
    re.IGNORECASE,
)
_DURATION = re.compile(
    r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)

POOL_MEMBERS = frozenset(
    {"id", "name", "type", "etag", "systemData", "tags", "properties", "identity"}
)
# PoolProperties members of the 2025-06-01 spec (certificates and the like were retired).
POOL_PROPERTIES_MEMBERS = frozenset(
    {
        "displayName",
        "vmSize",
        "deploymentConfiguration",
        "scaleSettings",
        "interNodeCommunication",
        "networkConfiguration",
        "taskSlotsPerNode",
        "taskSchedulingPolicy",
        "userAccounts",
        "metadata",
        "startTask",
        "applicationPackages",
        "mountConfiguration",
        "upgradePolicy",
        "targetNodeCommunicationMode",  # Default | Classic | Simplified (2022-10-01 and later)
        "resourceTags",
    }
)

READ_ONLY_PROPERTIES = frozenset(
    {
        "lastModified",
        "creationTime",
        "provisioningState",
        "provisioningStateTransitionTime",
        "allocationState",
        "allocationStateTransitionTime",
        "currentDedicatedNodes",
        "currentLowPriorityNodes",
        "resizeOperationStatus",
        "autoScaleRun",
        "currentNodeCommunicationMode",
    }
)

# Properties a pool with nodes accepts changes to (2024-07-01 and later; see azure-behaviour.md).
MUTABLE_WITH_NODES = frozenset(
    {
        "applicationPackages",
        "certificates",
        "metadata",
        "scaleSettings",
        "startTask",
    }
)
ZERO_NODE_UPDATES_SINCE = "2024-07-01"

_ENUMS: dict[str, tuple[str, ...]] = {
    "nodeFillType": ("Spread", "Pack"),
    "nodeDeallocationOption": ("Requeue", "Terminate", "TaskCompletion", "RetainedData"),
    "interNodeCommunication": ("Enabled", "Disabled"),
    "identityType": ("UserAssigned", "None"),
}


def _type_error(path: str, value: Any, expected: str) -> ArmError:
    shown = value if isinstance(value, str) else repr(value)
    return invalid_request_body(
        f"Error converting value \"{shown}\" to type '{expected}'. Path '{path}'.", path
    )


def _object(value: Any, path: str) -> JsonDict:
    if not isinstance(value, dict):
        raise invalid_request_body(
            f"Unexpected token when deserializing object: {type(value).__name__}. Path '{path}'.",
            path or None,
        )
    return value


def _known_members(obj: JsonDict, known: frozenset[str], type_name: str, base: str) -> None:
    # The Batch RP's deserializer refuses unknown members (seen: "Could not find member
    # 'location' on object of type 'Pool'"). Checked on the Pool and PoolProperties levels.
    for key in obj:
        if key not in known:
            path = f"{base}.{key}" if base else key
            raise invalid_request_body(
                f"Could not find member '{key}' on object of type '{type_name}'. Path '{path}'.",
                path,
            )


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _type_error(path, value, "System.String")
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(path, value, "System.Int32")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(path, value, "System.Boolean")
    return value


def _enum(value: Any, path: str, kind: str) -> str:
    text = _string(value, path)
    for canonical in _ENUMS[kind]:
        if canonical.lower() == text.lower():
            return canonical
    name = path.rsplit(".", 1)[-1]
    raise invalid_property_value(
        name, path, value, f"Allowed values are {', '.join(_ENUMS[kind])}."
    )


def _duration(value: Any, path: str) -> str:
    text = _string(value, path)
    if not _DURATION.match(text):
        raise invalid_property_value(
            path.rsplit(".", 1)[-1], path, value, "The value is not a valid ISO 8601 duration."
        )
    return text


def _require(obj: JsonDict, key: str, path: str) -> Any:
    if obj.get(key) is None:
        raise missing_required_property(key, f"{path}.{key}")
    return obj[key]


def validate_pool_body(body: Any, *, partial: bool) -> JsonDict:
    """The normalised spec ``{"properties": {...}, "identity"?: {...}}`` of a PUT/PATCH body.

    ``partial`` (PATCH): nothing is required and only supplied properties are returned.
    """
    body = _object(body, "")
    _known_members(body, POOL_MEMBERS, "Pool", "")
    props_raw = body.get("properties")
    if props_raw is None:
        if not partial:
            raise missing_required_property("properties", "properties")
        props_raw = {}
    _known_members(
        _object(props_raw, "properties"),
        POOL_PROPERTIES_MEMBERS | READ_ONLY_PROPERTIES,
        "PoolProperties",
        "properties",
    )
    props = {k: copy.deepcopy(v) for k, v in props_raw.items() if k not in READ_ONLY_PROPERTIES}
    # Types first (the service deserializes before it validates), required properties after.
    if "vmSize" in props:
        _string(props["vmSize"], "properties.vmSize")
    if "deploymentConfiguration" in props:
        props["deploymentConfiguration"] = _deployment(props["deploymentConfiguration"])
    if "scaleSettings" in props:
        props["scaleSettings"] = _scale(props["scaleSettings"])
    if "taskSchedulingPolicy" in props:
        tsp = _object(props["taskSchedulingPolicy"], "properties.taskSchedulingPolicy")
        fill = _require(tsp, "nodeFillType", "properties.taskSchedulingPolicy")
        tsp["nodeFillType"] = _enum(
            fill, "properties.taskSchedulingPolicy.nodeFillType", "nodeFillType"
        )
    if "taskSlotsPerNode" in props:
        slots = _int(props["taskSlotsPerNode"], "properties.taskSlotsPerNode")
        if slots < 1:
            raise invalid_property_value("taskSlotsPerNode", "properties.taskSlotsPerNode", slots)
    if "interNodeCommunication" in props:
        props["interNodeCommunication"] = _enum(
            props["interNodeCommunication"],
            "properties.interNodeCommunication",
            "interNodeCommunication",
        )
    if "metadata" in props:
        for i, item in enumerate(
            props["metadata"]
            if isinstance(props["metadata"], list)
            else _type_list(props["metadata"], "properties.metadata")
        ):
            entry = _object(item, f"properties.metadata[{i}]")
            _string(
                _require(entry, "name", f"properties.metadata[{i}]"),
                f"properties.metadata[{i}].name",
            )
    if not partial:
        _require(props, "vmSize", "properties")
        _require(props, "deploymentConfiguration", "properties")
        props.setdefault("taskSlotsPerNode", 1)
        props.setdefault("interNodeCommunication", "Disabled")
        props.setdefault("taskSchedulingPolicy", {"nodeFillType": "Spread"})
    spec: JsonDict = {"properties": props}
    if "identity" in body and body["identity"] is not None:
        spec["identity"] = _identity(body["identity"])
    return spec


def _type_list(value: Any, path: str) -> list[Any]:
    raise invalid_request_body(
        f"Cannot deserialize the current JSON value into type 'List'. Path '{path}'.", path
    )


def _deployment(value: Any) -> JsonDict:
    base = "properties.deploymentConfiguration"
    dc = _object(value, base)
    vmc = _object(
        _require(dc, "virtualMachineConfiguration", base), f"{base}.virtualMachineConfiguration"
    )
    vbase = f"{base}.virtualMachineConfiguration"
    image = _object(_require(vmc, "imageReference", vbase), f"{vbase}.imageReference")
    if image.get("id") is None:
        for key in ("publisher", "offer", "sku"):
            _string(
                _require(image, key, f"{vbase}.imageReference"), f"{vbase}.imageReference.{key}"
            )
    _string(_require(vmc, "nodeAgentSkuId", vbase), f"{vbase}.nodeAgentSkuId")
    extensions = vmc.get("extensions")
    if extensions is not None:
        if not isinstance(extensions, list):
            _type_list(extensions, f"{vbase}.extensions")
        seen: set[str] = set()
        for i, ext_raw in enumerate(extensions):
            epath = f"{vbase}.extensions[{i}]"
            ext = _object(ext_raw, epath)
            for key in ("name", "publisher", "type"):
                _string(_require(ext, key, epath), f"{epath}.{key}")
            if "typeHandlerVersion" in ext:
                _string(ext["typeHandlerVersion"], f"{epath}.typeHandlerVersion")
            for key in ("autoUpgradeMinorVersion", "enableAutomaticUpgrade"):
                if key in ext:
                    _bool(ext[key], f"{epath}.{key}")
            for key in ("settings", "protectedSettings"):
                if ext.get(key) is not None:
                    _object(ext[key], f"{epath}.{key}")
            if ext["name"].lower() in seen:
                raise invalid_property_value(
                    "name",
                    f"{epath}.name",
                    ext["name"],
                    "Extension names must be unique within a pool.",
                )
            seen.add(ext["name"].lower())
    return dc


def _scale(value: Any) -> JsonDict:
    base = "properties.scaleSettings"
    scale = _object(value, base)
    fixed, auto = scale.get("fixedScale"), scale.get("autoScale")
    if fixed is not None and auto is not None:
        raise invalid_property_value(
            "scaleSettings", base, scale, "Specify exactly one of fixedScale and autoScale."
        )
    if fixed is not None:
        fpath = f"{base}.fixedScale"
        fixed = _object(fixed, fpath)
        for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
            if key in fixed:
                count = _int(fixed[key], f"{fpath}.{key}")
                if count < 0:
                    raise invalid_property_value(
                        key, f"{fpath}.{key}", count, "The value must not be negative."
                    )
        if "resizeTimeout" in fixed:
            _duration(fixed["resizeTimeout"], f"{fpath}.resizeTimeout")
        if "nodeDeallocationOption" in fixed:
            fixed["nodeDeallocationOption"] = _enum(
                fixed["nodeDeallocationOption"],
                f"{fpath}.nodeDeallocationOption",
                "nodeDeallocationOption",
            )
    if auto is not None:
        apath = f"{base}.autoScale"
        auto = _object(auto, apath)
        _string(_require(auto, "formula", apath), f"{apath}.formula")
        if "evaluationInterval" in auto:
            _duration(auto["evaluationInterval"], f"{apath}.evaluationInterval")
    return scale


def _identity(value: Any) -> JsonDict:
    identity = _object(value, "identity")
    kind = _enum(_require(identity, "type", "identity"), "identity.type", "identityType")
    uais = identity.get("userAssignedIdentities")
    if kind == "None":
        if uais:
            raise invalid_property_value(
                "userAssignedIdentities",
                "identity.userAssignedIdentities",
                uais,
                "User assigned identities cannot be specified with identity type 'None'.",
            )
        return {"type": "None"}
    if not uais:
        raise missing_required_property("userAssignedIdentities", "identity.userAssignedIdentities")
    uais = _object(uais, "identity.userAssignedIdentities")
    for arm_id in uais:
        if not IDENTITY_ID.match(arm_id):
            raise invalid_property_value(
                "userAssignedIdentities",
                "identity.userAssignedIdentities",
                arm_id,
                "The identity must be the full resource id of a user-assigned identity.",
            )
    # Values are read-only (principalId/clientId) in requests: stored empty, filled on render.
    return {"type": "UserAssigned", "userAssignedIdentities": {k: {} for k in uais}}


def scale_targets(spec: JsonDict) -> tuple[int, int]:
    """(dedicated, low-priority) node targets the pool's scale settings ask for."""
    scale = spec.get("properties", {}).get("scaleSettings") or {}
    fixed = scale.get("fixedScale")
    if fixed is not None:
        return int(fixed.get("targetDedicatedNodes", 0)), int(
            fixed.get("targetLowPriorityNodes", 0)
        )
    auto = scale.get("autoScale")
    if auto is not None:
        # Unconfirmed (and out of scope): the autoscale formula language. A literal assignment
        # "$TargetDedicatedNodes = N" is honoured; anything else evaluates to 0 nodes.
        formula = str(auto.get("formula", ""))
        dedicated = re.search(r"\$TargetDedicatedNodes\s*=\s*(\d+)\s*(;|$)", formula, re.M)
        low = re.search(r"\$TargetLowPriorityNodes\s*=\s*(\d+)\s*(;|$)", formula, re.M)
        return (int(dedicated.group(1)) if dedicated else 0, int(low.group(1)) if low else 0)
    return 0, 0


def merge_patch(current: JsonDict, patch: JsonDict) -> JsonDict:
    """PATCH semantics: each supplied top-level property replaces the stored one."""
    merged = copy.deepcopy(current)
    merged["properties"].update(copy.deepcopy(patch.get("properties", {})))
    if "identity" in patch:
        merged["identity"] = copy.deepcopy(patch["identity"])
    return merged


def check_update(
    current: JsonDict, new: JsonDict, *, api_version: str, steady_and_empty: bool
) -> None:
    """Refuse changes Azure refuses (``PropertyCannotBeUpdated``); ``new`` is the full spec."""
    zero_node_updates = api_version >= ZERO_NODE_UPDATES_SINCE
    old_props, new_props = current.get("properties", {}), new.get("properties", {})
    changed = sorted(
        k
        for k in set(old_props) | set(new_props)
        if k not in MUTABLE_WITH_NODES and old_props.get(k) != new_props.get(k)
    )
    if _identity_key(current.get("identity")) != _identity_key(new.get("identity")):
        changed.append("identity")
    if _extensions_of(old_props) != _extensions_of(new_props):
        # The Batch extensions doc: extensions cannot be added, removed or updated on an
        # existing pool; Azure/azure-sdk-for-net#40325 shows the refusal (arm-errors.json [1]).
        # The pool-update doc lists deploymentConfiguration as changeable at 0 nodes; the
        # evidence disagrees, so we refuse even then (the less helpful reading).
        raise property_cannot_be_updated(
            "deploymentConfiguration", "properties.deploymentConfiguration"
        )
    for name in changed:
        path = "identity" if name == "identity" else f"properties.{name}"
        if not zero_node_updates or not steady_and_empty:
            # The real answer names the property and nothing else: the generic Reason of
            # arm-errors.json [0], [1] (no hint about scaling to zero).
            raise property_cannot_be_updated(name, path)


def _extensions_of(props: JsonDict) -> Any:
    vmc = (props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {}
    return vmc.get("extensions") or []


def _identity_key(identity: JsonDict | None) -> tuple[str, frozenset[str]]:
    if not identity or identity.get("type") == "None":
        return ("None", frozenset())
    return (
        "UserAssigned",
        frozenset(k.lower() for k in (identity.get("userAssignedIdentities") or {})),
    )


def arm_time(seconds: float) -> str:
    """ARM's timestamp format: seven fractional digits and ``Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


_DOTNET_EPOCH_OFFSET_S = 62_135_596_800  # seconds from 0001-01-01 to 1970-01-01


def next_etag(previous: str | None, now: float) -> str:
    """``W/"0x8D..."``: the hex .NET ticks of the modification time, strictly increasing."""
    ticks = int((now + _DOTNET_EPOCH_OFFSET_S) * 10_000_000)
    if previous:
        match = re.search(r"0x([0-9A-Fa-f]+)", previous)
        if match:
            ticks = max(ticks, int(match.group(1), 16) + 1)
    return f'W/"0x{ticks:X}"'
