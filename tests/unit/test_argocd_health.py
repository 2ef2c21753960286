"""The Argo CD health check (deploy/gitops/argocd/health.lua), executed by a real Lua runtime.

Covers: the verdict on objects captured from the integration story (Reconciling → Progressing,
Ready → Healthy, RotationPropagating → Progressing, CertificateNotFound → Degraded with the
condition's message), a Ready for an older generation, no status, a paused object, an unknown
failure reason (Degraded, never hidden as Progressing); and that argocd-cm.yaml embeds exactly
this Lua under the key Argo CD looks up.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LUA = REPO_ROOT / "deploy" / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = REPO_ROOT / "deploy" / "gitops" / "argocd" / "argocd-cm.yaml"
CAPTURED = REPO_ROOT / "tests" / "data" / "status"
KEY = "resource.customizations.health.batchcert.dev_BatchCertPool"


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the check as Argo CD does: ``obj`` is a global, the chunk returns ``hs``."""
    from lupa import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    # Argo CD hands the object over as nested Lua tables (arrays 1-based): so does this.
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def captured(name: str) -> dict[str, Any]:
    return dict(json.loads((CAPTURED / f"{name}.json").read_text()))


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("reconciling", "Progressing"),
        ("ready", "Healthy"),
        ("rotation-propagating", "Progressing"),
        ("certificate-not-found", "Degraded"),
    ],
)
def test_captured_objects(capture: str, expected: str) -> None:
    assert health(captured(capture))["status"] == expected


def test_degraded_says_which_condition_and_why() -> None:
    obj = captured("certificate-not-found")
    (condition,) = [c for c in obj["status"]["conditions"] if c["type"] == "CertificateReady"]
    message = health(obj)["message"]
    assert message.startswith("CertificateReady CertificateNotFound: ")
    assert condition["message"] in message


def test_ready_for_an_older_generation_is_progressing() -> None:
    obj = captured("ready")
    obj["metadata"]["generation"] += 1
    verdict = health(obj)
    assert verdict["status"] == "Progressing"
    assert str(obj["metadata"]["generation"]) in verdict["message"]


def test_no_status_is_progressing() -> None:
    obj = captured("ready")
    del obj["status"]
    assert health(obj)["status"] == "Progressing"
    obj["status"] = {"conditions": []}
    assert health(obj)["status"] == "Progressing"


def test_paused_is_suspended() -> None:
    obj = captured("ready")
    ready = obj["status"]["conditions"][0]
    ready.update(status="False", reason="ReconcilePaused", message="paused by annotation")
    assert health(obj) == {"status": "Suspended", "message": "paused by annotation"}


def test_an_unknown_failure_reason_is_degraded_not_progressing() -> None:
    obj = copy.deepcopy(captured("rotation-propagating"))
    for condition in obj["status"]["conditions"]:
        if condition["type"] == "NodesReady":
            condition["reason"] = "SomethingNew"
    assert health(obj)["status"] == "Degraded"


def test_argocd_cm_embeds_this_lua() -> None:
    config = yaml.safe_load(ARGOCD_CM.read_text())
    assert config["metadata"]["name"] == "argocd-cm"
    assert config["data"][KEY] == LUA.read_text()
