"""The chart's copies of files that have one source elsewhere (deploy/helm/batchcert-operator/files).

Covers: the CRDs the chart installs are byte-for-byte the repository's ``crds/`` (a chart can read
only files inside itself, so it carries a copy; the fix for a failure here is to copy the file);
the chart's alerting rules are ``deploy/prometheus/rules.yaml``; every top-level value in
values.yaml is declared by values.schema.json, and the schema refuses unknown keys everywhere it
describes an object, so a misspelt value fails instead of doing nothing. The renders themselves
(helm template, install, upgrade, schema refusals) are tests/integration/test_helm.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "batchcert-operator"

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("source", "copy"),
    [
        ("crds/batchcertpools.yaml", "files/crds/batchcertpools.yaml"),
        ("crds/kopf-peering.yaml", "files/crds/kopf-peering.yaml"),
        ("deploy/prometheus/rules.yaml", "files/prometheus/rules.yaml"),
    ],
)
def test_chart_copies_equal_their_source(source: str, copy: str) -> None:
    assert (CHART / copy).read_bytes() == (REPO_ROOT / source).read_bytes(), (
        f"cp {source} {CHART.relative_to(REPO_ROOT)}/{copy}"
    )


def test_chart_carries_every_crd() -> None:
    shipped = {p.name for p in (REPO_ROOT / "crds").glob("*.yaml")}
    assert shipped == {p.name for p in (CHART / "files" / "crds").glob("*.yaml")}


def _closed_objects(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of objects with declared properties that still accept unknown keys."""
    open_ = []
    is_open = "properties" in schema and schema.get("additionalProperties") is not False
    if is_open and path not in (".resources", ".affinity"):
        open_.append(path or "(root)")
    for key, sub in (schema.get("properties") or {}).items():
        open_ += _closed_objects(sub, f"{path}.{key}")
    return open_


def test_schema_declares_every_value_and_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert _closed_objects(schema) == []
