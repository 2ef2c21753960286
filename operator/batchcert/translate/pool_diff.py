"""Compare the pool we want with the pool Azure has, and build the PATCH bodies that close the gap.

Only what we own is compared (Azure adds defaults and read-only fields we never set). Comparison
is case-insensitive where Azure is (SKU names, image references, identity ids) and by value for
durations.

Invariants: a change is *disruptive* exactly when Azure refuses it on a pool with nodes (since
api-version 2024-07-01 only applicationPackages, certificates, metadata, scaleSettings and
startTask may change while nodes exist); everything else is patched in place. A change to the
pool's VM *extensions* (which every added or removed certificate is: the Key Vault extension's
observedCertificates) needs a new pool: the Batch extensions doc says extensions cannot be added,
removed or updated on an existing pool, while the pool-update doc lists deploymentConfiguration as
changeable at 0 nodes. The evidence disagrees, so we take the less hopeful reading
(``requires_recreate``); ScaleToZero says so instead of scaling to zero for a change Azure refuses.

Azure's normalisation is not drift: vmSize and enum casing, ``imageReference.version`` defaulting
to ``latest``, defaults it fills (resizeTimeout, startTask, nodeCommunicationMode, …) and
extension ``settings`` coming back as a JSON string are compared as values
(batch-arm-pools.json [0], [7]; azure-behaviour.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from batchcert.models.azure import image_text
from batchcert.models.names import OWNER_METADATA, UID_METADATA
from batchcert.translate.durations import same_duration

# REST property names (under ``properties``, or top level for identity) Azure only changes at 0 nodes.
DISRUPTIVE_PROPERTIES = ("vmSize", "taskSchedulingPolicy", "deploymentConfiguration", "identity")


@dataclass(frozen=True)
class PoolDiff:
    disruptive: tuple[str, ...] = ()
    requires_recreate: tuple[str, ...] = ()  # changes Azure makes on no existing pool
    scale_differs: bool = False
    metadata_differs: bool = False
    # One phrase per disruptive difference naming what runs and what the spec asks
    # ("vmSize: the pool runs STANDARD_D2S_V3, the spec asks for STANDARD_D4S_V3"), so a
    # condition never says only "vmSize differ".
    changes: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.disruptive or self.scale_differs or self.metadata_differs)

    @property
    def described(self) -> str:
        return "; ".join(self.changes) or ", ".join(self.disruptive)


def settings_object(raw: Any) -> dict[str, Any]:
    """Extension ``settings`` as an object, whatever the answer carried.

    We send an object; ARM echoes it, but the Batch data plane documents it as a JSON *string*
    (azure-behaviour.md) and recordings omit it entirely (batch-dataplane-nodes-extensions.json
    [2], [5]). An unparseable or absent value is ``{}``; never raises.
    """
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def extension_client_id(pool_body: dict[str, Any], extension_name: str) -> str | None:
    """``authenticationSettings.msiClientId`` of the named extension in a pool body, if any."""
    props = pool_body.get("properties") if isinstance(pool_body, dict) else None
    vmc = ((props or {}).get("deploymentConfiguration") or {}).get("virtualMachineConfiguration")
    for ext in (vmc or {}).get("extensions") or []:
        if isinstance(ext, dict) and str(ext.get("name", "")).lower() == extension_name.lower():
            auth = settings_object(ext.get("settings")).get("authenticationSettings")
            client_id = auth.get("msiClientId") if isinstance(auth, dict) else None
            return str(client_id) if client_id else None
    return None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _identity_key(identity: dict[str, Any] | None) -> tuple[str, frozenset[str]]:
    identity = identity or {}
    ids = identity.get("userAssignedIdentities") or {}
    return (_lower(identity.get("type") or "None"), frozenset(k.lower() for k in ids))


def _extension_key(ext: Any) -> tuple[Any, ...]:
    if not isinstance(ext, dict):
        return (repr(ext),)
    return (
        str(ext.get("name") or "").lower(),
        _lower(ext.get("publisher")),
        _lower(ext.get("type")),
        str(ext.get("typeHandlerVersion") or ""),
        bool(ext.get("autoUpgradeMinorVersion", False)),
        json.dumps(settings_object(ext.get("settings")), sort_keys=True),
    )


def _vmc(deployment: Any) -> dict[str, Any]:
    vmc = (
        (deployment or {}).get("virtualMachineConfiguration")
        if isinstance(deployment, dict)
        else None
    )
    return vmc if isinstance(vmc, dict) else {}


def _image_key(deployment: Any) -> tuple[Any, ...]:
    vmc = _vmc(deployment)
    image = vmc.get("imageReference") or {}
    version = image.get("version") or "latest"  # Azure fills the default in
    return (
        *(_lower(image.get(k)) for k in ("publisher", "offer", "sku")),
        _lower(version),
        _lower(vmc.get("nodeAgentSkuId")),
    )


def _extensions_key(deployment: Any) -> tuple[Any, ...]:
    return tuple(sorted(_extension_key(e) for e in _vmc(deployment).get("extensions") or []))


def _change(name: str, running: Any, wanted: Any) -> str:
    return f"{name}: the pool runs {running or '(none)'}, the spec asks for {wanted or '(none)'}"


def _identity_names(identity: dict[str, Any] | None) -> str:
    ids = (identity or {}).get("userAssignedIdentities") or {}
    return ", ".join(sorted(str(k).rstrip("/").rsplit("/", 1)[-1] for k in ids)) or "no identity"


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
    have = {m.get("name"): m.get("value") for m in actual or [] if isinstance(m, dict)}
    return all(have.get(m["name"]) == m["value"] for m in desired)


def diff_pool(
    desired: dict[str, Any], actual: dict[str, Any], *, desired_scale: dict[str, Any]
) -> PoolDiff:
    """Differences between the desired PUT body and the pool Azure returned (REST shape)."""
    want = desired["properties"]
    raw = actual.get("properties")
    have: dict[str, Any] = raw if isinstance(raw, dict) else {}
    disruptive: list[str] = []
    changes: list[str] = []
    if _lower(want["vmSize"]) != _lower(have.get("vmSize")):
        disruptive.append("vmSize")
        changes.append(_change("vmSize", have.get("vmSize"), want["vmSize"]))
    if _fill_type(want) != _fill_type(have):
        disruptive.append("taskSchedulingPolicy")
        changes.append(_change("nodeFillType", _fill_type(have), _fill_type(want)))
    want_deployment, have_deployment = (
        want["deploymentConfiguration"],
        have.get("deploymentConfiguration"),
    )
    extensions_differ = _extensions_key(want_deployment) != _extensions_key(have_deployment)
    image_differs = _image_key(want_deployment) != _image_key(have_deployment)
    if extensions_differ or image_differs:
        disruptive.append("deploymentConfiguration")
    if _image_key(want_deployment)[:4] != _image_key(have_deployment)[:4]:
        changes.append(
            _change("image", image_text(_vmc(have_deployment)), image_text(_vmc(want_deployment)))
        )
    if _image_key(want_deployment)[4] != _image_key(have_deployment)[4]:
        changes.append(
            _change(
                "nodeAgentSkuId",
                _vmc(have_deployment).get("nodeAgentSkuId"),
                _vmc(want_deployment).get("nodeAgentSkuId"),
            )
        )
    if extensions_differ:
        changes.append("the Key Vault extension's settings (certificates, polling, store)")
    if _identity_key(desired.get("identity")) != _identity_key(actual.get("identity")):
        disruptive.append("identity")
        changes.append(
            _change(
                "identity",
                _identity_names(actual.get("identity")),
                _identity_names(desired.get("identity")),
            )
        )
    return PoolDiff(
        disruptive=tuple(disruptive),
        changes=tuple(changes),
        requires_recreate=("extensions",) if extensions_differ else (),
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
    "extension_client_id",
    "is_same_scale",
    "settings_object",
]
