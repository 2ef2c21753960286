"""The CRD (``crds/batchcertpools.yaml``) and the operator's spec model describe one API.

Covers, without a cluster: the CRD parses and carries the contract's fixed names (group,
version, kind, plural, short name, categories, scope, status subresource, printer columns);
every property of the pydantic spec model exists in the CRD's ``spec`` schema and vice versa,
required in one exactly when required in the other, with the same defaults (the CRD's defaults
applied the way the API server applies them) and the same enum values; the status schema holds
what the operator writes; every field is documented and every string and list is bounded; the
``examples/`` manifests use only fields the CRD knows and parse with the spec model.

What the API server itself does with the CRD (CEL rules, refusals, defaulting on create) is
covered by ``tests/integration/test_crd_admission.py``.
"""

from __future__ import annotations

import copy
import types
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from batchcert.models.spec import (
    BatchCertPoolSpec,
    DeletionPolicy,
    DisruptiveUpdatePolicy,
    OsType,
    parse_spec,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "batchcertpools.yaml"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("batchcertpool*.yaml"))

Schema = dict[str, Any]


def load_crd() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    assert len(documents) == 1, "crds/batchcertpools.yaml holds exactly one CRD"
    crd: dict[str, Any] = documents[0]
    return crd


CRD = load_crd()
VERSION = CRD["spec"]["versions"][0]
ROOT: Schema = VERSION["schema"]["openAPIV3Schema"]
SPEC: Schema = ROOT["properties"]["spec"]
STATUS: Schema = ROOT["properties"]["status"]


# --- helpers -------------------------------------------------------------------------------------


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Structural defaulting as the API server does it: absent properties with a default get it,
    recursively, also inside defaults themselves."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for name, prop in schema["properties"].items():
            if name not in result and "default" in prop:
                result[name] = copy.deepcopy(prop["default"])
            if name in result:
                result[name] = apply_defaults(prop, result[name])
        return result
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """The inner type of ``X | None``, ``Annotated[X, ...]`` and ``list[X]``; and whether a list."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        elif origin is list:
            inner, _ = unwrap(get_args(annotation)[0])
            return inner, True
        else:
            return annotation, False


def dumped(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, Enum):
        return value.value
    return value


def model_pairs(
    model: type[BaseModel], schema: Schema, path: str = "spec"
) -> list[tuple[str, type[BaseModel], Schema]]:
    """Every (path, model, object schema) pair reachable from the spec model."""
    pairs = [(path, model, schema)]
    for name, info in model.model_fields.items():
        alias = info.alias or name
        inner, is_list = unwrap(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            prop = schema["properties"][alias]
            pairs += model_pairs(inner, prop["items"] if is_list else prop, f"{path}.{alias}")
    return pairs


PAIRS = model_pairs(BatchCertPoolSpec, SPEC)
# Fields the CRD still declares only to refuse them with a message (a pruned field would vanish
# silently): the model has no such field.
REFUSED_FIELDS = {"spec.verification": {"jobId"}}


def test_removed_verification_job_id_is_refused_by_a_rule_that_says_why() -> None:
    verification = SPEC["properties"]["verification"]
    (rule,) = [r for r in verification["x-kubernetes-validations"] if "jobId" in r["rule"]]
    assert rule["rule"] == "!has(self.jobId)"
    assert "removed" in rule["message"] and "another namespace" in rule["message"]
    assert "jobId" not in {
        info.alias
        for info in BatchCertPoolSpec.model_fields["verification"].annotation.model_fields.values()  # type: ignore[union-attr]
    }


def walk(schema: Schema, path: str) -> list[tuple[str, Schema]]:
    """Every (path, schema) node below and including ``schema``."""
    nodes = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        nodes += walk(prop, f"{path}.{name}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    return nodes


# --- the contract's fixed names ------------------------------------------------------------------


def test_crd_has_the_contract_names() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "batchcertpools.batchcert.dev"
    assert spec["group"] == "batchcert.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "BatchCertPool",
        "listKind": "BatchCertPoolList",
        "plural": "batchcertpools",
        "singular": "batchcertpool",
        "shortNames": ["bcp"],
        "categories": ["batchcert", "azure"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        ("v1alpha1", True, True)
    ]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_show_pool_nodes_version_expiry_ready_reason_age() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    default_view = [c["name"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")]

    assert default_view == ["Pool", "Nodes", "Cert-Version", "Expires", "Ready", "Reason", "Age"]
    assert columns["Pool"]["jsonPath"] == ".status.pool.name"
    assert columns["Nodes"]["jsonPath"] == ".status.nodes.summary"
    assert columns["Cert-Version"]["jsonPath"] == ".status.certificates[0].shortVersion"
    assert columns["Expires"]["jsonPath"] == ".status.certificates[0].notAfter"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


def test_paused_annotation_is_documented_at_the_top() -> None:
    assert 'batchcert.dev/paused: "true"' in ROOT["description"]


# --- spec: the CRD and the pydantic model agree --------------------------------------------------


@pytest.mark.parametrize(("path", "model", "schema"), PAIRS, ids=[p[0] for p in PAIRS])
def test_crd_and_model_have_the_same_properties(
    path: str, model: type[BaseModel], schema: Schema
) -> None:
    in_model = {info.alias or name for name, info in model.model_fields.items()}
    in_crd = set(schema["properties"]) - REFUSED_FIELDS.get(path, set())

    assert in_crd - in_model == set(), f"{path}: in the CRD, not in {model.__name__}"
    assert in_model - in_crd == set(), f"{path}: in {model.__name__}, not in the CRD"


@pytest.mark.parametrize(("path", "model", "schema"), PAIRS, ids=[p[0] for p in PAIRS])
def test_crd_and_model_agree_on_required_fields_and_defaults(
    path: str, model: type[BaseModel], schema: Schema
) -> None:
    required = set(schema.get("required", []))
    for name, info in model.model_fields.items():
        alias = info.alias or name
        prop = schema["properties"][alias]
        where = f"{path}.{alias}"
        if info.is_required():
            assert alias in required, f"{where} is required by the model, optional in the CRD"
            assert "default" not in prop, where
            continue
        assert alias not in required, f"{where} has a model default but the CRD requires it"
        if info.default is None:
            assert "default" not in prop, f"{where}: the model has no default, the CRD has one"
            continue
        assert "default" in prop, f"{where}: the model defaults it to {info.default!r}"
        assert apply_defaults(prop, prop["default"]) == dumped(info.default), where


@pytest.mark.parametrize(
    ("path", "enum"),
    [
        ("osType", OsType),
        ("deletionPolicy", DeletionPolicy),
        ("disruptiveUpdatePolicy", DisruptiveUpdatePolicy),
    ],
)
def test_crd_enums_are_the_model_enums(path: str, enum: type[Enum]) -> None:
    assert SPEC["properties"][path]["enum"] == [member.value for member in enum]


def test_an_empty_spec_defaults_to_the_models_defaults() -> None:
    """The minimal spec, defaulted by the CRD, is what the model makes of it."""
    minimal: dict[str, Any] = {
        "account": {"subscriptionId": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "resourceGroup": "g", "name": "acct"},
        "vmSize": "STANDARD_DS2_V2",
        "image": {"publisher": "canonical", "offer": "ubuntuserver", "sku": "20.04-lts"},
        "nodeAgentSkuId": "batch.node.ubuntu 20.04",
        "scale": {"fixed": {}},
        "identity": {"resourceId": "/subscriptions/x/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"},
        "certificates": [{"vaultUrl": "https://kv.vault.azure.net", "name": "c"}],
    }  # fmt: skip
    defaulted = apply_defaults(SPEC, minimal)

    assert defaulted == dumped(parse_spec(minimal))


# --- status: holds what the operator writes ------------------------------------------------------


def test_status_has_the_contract_fields() -> None:
    props = STATUS["properties"]
    assert set(props) == {
        "observedGeneration",
        "conditions",
        "pool",
        "certificates",
        "nodes",
        "kopf",
    }
    assert set(props["pool"]["properties"]) == {
        "name", "resourceId", "provisioningState", "allocationState",
        "currentDedicatedNodes", "currentLowPriorityNodes", "vmSize", "image", "nodeAgentSkuId",
    }  # fmt: skip
    assert set(props["certificates"]["items"]["properties"]) == {
        "name", "vaultUrl", "secretId", "version", "shortVersion", "thumbprint", "notBefore",
        "notAfter", "expectedRenewalTime", "lastRotationTime", "rotations",
    }  # fmt: skip
    assert set(props["nodes"]["properties"]) == {
        "total", "ready", "transitioning", "failed", "summary", "lastCheckTime", "failures",
        "verification",
    }  # fmt: skip
    assert set(props["nodes"]["properties"]["failures"]["items"]["properties"]) == {
        "nodeId", "code", "message", "time",
    }  # fmt: skip
    verification = props["nodes"]["properties"]["verification"]["properties"]
    # api.md "Node verification": fixed names.
    assert {"lastRunTime", "current", "stale", "unverified", "staleNodes"} <= set(verification)
    assert set(verification["staleNodes"]["items"]["properties"]) == {
        "nodeId", "certificate", "thumbprint", "version",
    }  # fmt: skip
    assert props["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def test_conditions_are_metav1_conditions_in_a_map_keyed_by_type() -> None:
    conditions = STATUS["properties"]["conditions"]
    item = conditions["items"]

    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert "observedGeneration" in item["properties"]


def test_status_bounds_match_what_the_operator_writes() -> None:
    from batchcert.assess.nodes import MAX_FAILURES
    from batchcert.reconcile.engine import STATUS_KEYS

    nodes = STATUS["properties"]["nodes"]["properties"]
    assert nodes["failures"]["maxItems"] == MAX_FAILURES == 10
    assert set(STATUS_KEYS) <= set(STATUS["properties"])
    assert (
        STATUS["properties"]["certificates"]["maxItems"]
        >= SPEC["properties"]["certificates"]["maxItems"]
    )


# --- documentation and bounds --------------------------------------------------------------------

NODES = [n for n in walk(ROOT, "") if n[0].count(".") >= 1]


@pytest.mark.parametrize(("path", "schema"), NODES, ids=[n[0] for n in NODES])
def test_every_field_is_documented_for_kubectl_explain(path: str, schema: Schema) -> None:
    if path == ".metadata":
        return  # the API server's own ObjectMeta documentation applies
    assert schema.get("description", "").strip(), f"{path} has no description"


@pytest.mark.parametrize(("path", "schema"), NODES, ids=[n[0] for n in NODES])
def test_every_string_and_list_is_bounded(path: str, schema: Schema) -> None:
    if schema.get("type") == "string" and path not in (".apiVersion", ".kind"):
        assert "maxLength" in schema or "enum" in schema or schema.get("format") == "date-time", (
            path
        )
    if schema.get("type") == "array":
        assert "maxItems" in schema, path


def test_unknown_fields_are_not_preserved_in_spec() -> None:
    preserving = [
        p for p, s in walk(SPEC, ".spec") if s.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserving == []


# --- examples ------------------------------------------------------------------------------------


def unknown_keys(value: Any, schema: Schema, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_keys(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_keys(item, schema["items"], f"{path}[{index}]")
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_uses_only_known_fields_and_parses_with_the_model(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())

    assert manifest["apiVersion"] == "batchcert.dev/v1alpha1"
    assert manifest["kind"] == "BatchCertPool"
    assert unknown_keys(manifest["spec"], SPEC, "spec") == []
    spec = parse_spec(apply_defaults(SPEC, manifest["spec"]))
    for cert in spec.certificates:
        assert cert.versionless_secret_uri.startswith("https://")
        assert "/secrets/" in cert.versionless_secret_uri


def test_there_is_a_linux_and_a_windows_example() -> None:
    os_types = {
        parse_spec(yaml.safe_load(p.read_text())["spec"]).resolved_os_type for p in EXAMPLES
    }
    assert os_types == {OsType.LINUX, OsType.WINDOWS}
