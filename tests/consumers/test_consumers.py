"""What kstatus, Argo CD and Flux show for a BatchCertPool, read by their own libraries.

Covers, through ``go test`` in ``tools/consumers`` (sigs.k8s.io/cli-utils kstatus, gitops-engine's
GetResourceHealth with our Lua in gopher-lua opened as Argo CD opens it, Flux's CEL StatusReader
with our healthCheckExprs):

- every reason in the registry (``batchcert.reasons``) on the condition that carries it, built by
  the operator's own condition helper: Current/Healthy for successes, Failed/Degraded for user
  actions (the message naming the component that blocks), in progress for transient reasons,
  Suspended in Argo CD when paused;
- the lifecycle: just created (the status the CRD's default gives before the operator wrote
  anything), the first reconcile, ready, a stale generation, a spec refused after an edit, a
  transient and a user-action failure at once, paused, deleting;
- every status captured from real operator runs in ``tests/data/status/`` (refreshed by
  tests/integration/test_deploy.py), judged by the same rules.

The Go side writes each tool's verdict for each case; this module checks that every case ran and
that the table in docs/gitops.md (which the README points to) is the one these verdicts give.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchcert.conditions import ConditionUpdate, apply_conditions, apply_refusal
from batchcert.reasons import (
    CERTIFICATE_READY,
    COMPONENT_TYPES,
    NODES_READY,
    POOL_READY,
    READY,
    REASONS,
    Action,
    action_of,
)
from support.gitops_table import STATES, render_table

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "tools" / "consumers"
CAPTURED = REPO / "tests" / "data" / "status"
LUA = REPO / "deploy" / "gitops" / "argocd" / "health.lua"
FLUX = REPO / "deploy" / "gitops" / "flux" / "kustomizations.yaml"
CRD = REPO / "crds" / "batchcertpools.yaml"
T0 = "2026-11-28T10:00:00Z"

EXPECT = {
    # what each tool must show, by what the registry says about the blocking reason
    Action.NONE: {"kstatus": "Current", "argocd": "Healthy", "flux": "Current"},
    Action.USER: {"kstatus": "Failed", "argocd": "Degraded", "flux": "Failed"},
    Action.TRANSIENT: {"kstatus": "InProgress", "argocd": "Progressing", "flux": "InProgress"},
    Action.PAUSED: {"kstatus": "InProgress", "argocd": "Suspended", "flux": "InProgress"},
    "deleting": {"kstatus": "Terminating", "argocd": "Progressing", "flux": "InProgress"},
}


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def _object(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "batchcert.dev/v1alpha1",
        "kind": "BatchCertPool",
        "metadata": {
            "name": "render-pool",
            "namespace": "team-a",
            "generation": generation,
            "uid": "6f1c1a0e-0000-4000-8000-000000000001",
            "creationTimestamp": T0,
        },
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


HEALTHY = {
    POOL_READY: ConditionUpdate(POOL_READY, True, "PoolReady", "pool render-pool matches the spec"),
    CERTIFICATE_READY: ConditionUpdate(
        CERTIFICATE_READY, True, "CertificatesReady", "every certificate is current"
    ),
    NODES_READY: ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "1/1 nodes healthy"),
}


def _status(*updates: ConditionUpdate, generation: int = 1) -> dict[str, Any]:
    """The status the operator writes for these component verdicts (healthy elsewhere)."""
    by_type = dict(HEALTHY)
    for update in updates:
        by_type[update.type] = update
    conditions = apply_conditions(
        [], [by_type[t] for t in COMPONENT_TYPES], generation=generation, now=_now()
    )
    return {"observedGeneration": generation, "conditions": conditions}


def _crd_status_default() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["status"]["default"])


def registry_cases() -> list[dict[str, Any]]:
    cases = []
    for reason in REASONS:
        name = f"reason/{reason.type}/{reason.name}"
        if reason.type == READY:
            if reason.action is Action.NONE:
                obj = _object(1, _status())
            else:  # refusals and the pause: decided before any component is looked at
                ready = _status()
                refused = apply_refusal(
                    ready["conditions"],
                    reason.name,
                    f"{reason.name} for the test",
                    generation=2,
                    now=_now(),
                )
                obj = _object(2, {"observedGeneration": 2, "conditions": refused})
        else:
            status: bool | None = reason.action is Action.NONE
            if reason.name == "Reconciling":
                status = None
            obj = _object(1, _status(ConditionUpdate(reason.type, status, reason.name, "why")))
        case: dict[str, Any] = {"name": name, "object": obj, "expect": EXPECT[reason.action]}
        if reason.action is Action.USER:
            # the message says which component blocks, and why
            blocking = reason.type if reason.type != READY else reason.name
            case["messageContains"] = {"kstatus": blocking, "argocd": reason.name}
        cases.append(case)
    return cases


def lifecycle_cases() -> list[dict[str, Any]]:
    ready = _status()
    first_visit = apply_conditions(
        [],
        [
            ConditionUpdate(t, None, "Reconciling", "first reconcile in progress")
            for t in COMPONENT_TYPES
        ],
        generation=1,
        now=_now(),
    )
    deleting = _object(1, ready)
    deleting["metadata"].update(
        deletionTimestamp=T0, finalizers=["kopf.zalando.org/KopfFinalizerMarker"]
    )
    deleting_stalled = _object(
        1, _status(ConditionUpdate(CERTIFICATE_READY, False, "CertificateNotFound", "gone"))
    )
    deleting_stalled["metadata"].update(deletionTimestamp=T0, finalizers=["x"])
    no_observed = _object(1, _status())
    for condition in no_observed["status"]["conditions"]:
        del condition["observedGeneration"]  # optional in the CRD: read safely
    mixed = _status(
        ConditionUpdate(POOL_READY, False, "PoolCreated", "pool render-pool created; resizing"),
        ConditionUpdate(CERTIFICATE_READY, False, "CertificateNotFound", "mycert does not exist"),
        ConditionUpdate(NODES_READY, False, "PoolNotReady", "the pool does not exist yet"),
    )
    edited = apply_refusal(
        ready["conditions"], "VaultNotAllowed", "evil.example.com", generation=2, now=_now()
    )
    return [
        {
            # The window that remains, documented in the README: an object never read back from
            # the API (a rendered manifest) has no status at all, not even the CRD's default.
            "name": "window/manifest-never-read-back",
            "object": _object(1, None),
            "expect": {"kstatus": "Current", "argocd": "Progressing", "flux": "Unknown"},
        },
        {
            "name": "lifecycle/just-created",
            "object": _object(1, _crd_status_default()),
            "expect": EXPECT[Action.TRANSIENT],
        },
        {
            "name": "lifecycle/converging",
            "object": _object(1, {"observedGeneration": 1, "conditions": first_visit}),
            "expect": EXPECT[Action.TRANSIENT],
        },
        {"name": "lifecycle/ready", "object": _object(1, ready), "expect": EXPECT[Action.NONE]},
        {
            "name": "lifecycle/ready-without-condition-generations",
            "object": no_observed,
            "expect": EXPECT[Action.NONE],
        },
        {
            "name": "lifecycle/stale-generation",
            "object": _object(2, ready),
            "expect": EXPECT[Action.TRANSIENT],
        },
        {
            "name": "lifecycle/refused-after-edit",
            "object": _object(2, {"observedGeneration": 2, "conditions": edited}),
            "expect": EXPECT[Action.USER],
            "messageContains": {"kstatus": "evil.example.com", "argocd": "VaultNotAllowed"},
        },
        {
            "name": "lifecycle/creating-with-missing-certificate",
            "object": _object(1, mixed),
            "expect": EXPECT[Action.USER],
            "messageContains": {"kstatus": "CertificateReady", "argocd": "CertificateNotFound"},
        },
        {
            "name": "lifecycle/paused",
            "object": _object(
                2,
                {
                    "observedGeneration": 2,
                    "conditions": apply_refusal(
                        ready["conditions"], "ReconcilePaused", "paused", generation=2, now=_now()
                    ),
                },
            ),
            "expect": EXPECT[Action.PAUSED],
        },
        {"name": "lifecycle/deleting", "object": deleting, "expect": EXPECT["deleting"]},
        {
            "name": "lifecycle/deleting-while-stalled",
            "object": deleting_stalled,
            "expect": EXPECT["deleting"],
        },
    ]


def expected_for(obj: dict[str, Any]) -> dict[str, str]:
    """The registry's verdict on any status (used for captured objects)."""
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp"):
        return EXPECT["deleting"]
    if status.get("observedGeneration", 0) < obj["metadata"]["generation"]:
        return EXPECT[Action.TRANSIENT]
    ready = next(c for c in status["conditions"] if c["type"] == READY)
    if ready["status"] == "True":
        return EXPECT[Action.NONE]
    if ready["status"] == "Unknown":
        return EXPECT[Action.TRANSIENT]
    return EXPECT[action_of(ready["reason"])]


def captured_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CAPTURED.glob("*.json")):
        obj = json.loads(path.read_text())
        cases.append({"name": f"captured/{path.stem}", "object": obj, "expect": expected_for(obj)})
    return cases


def all_cases() -> list[dict[str, Any]]:
    return [*lifecycle_cases(), *registry_cases(), *captured_cases()]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, str]]]:
    go = shutil.which("go")
    assert go, "Go (>= 1.26) must be on PATH: the control plane needs it too"
    work = tmp_path_factory.mktemp("consumers")
    cases = all_cases()
    results = work / "results.json"
    (work / "cases.json").write_text(
        json.dumps(
            {"lua": str(LUA), "flux": str(FLUX), "results": str(results), "cases": cases},
            indent=1,
        )
    )
    env = {**os.environ, "BATCHCERT_CONSUMER_CASES": str(work / "cases.json"), "GOWORK": "off"}
    # -count=1: the cases file changes with the registry, and go test caches by inputs it can see
    run = subprocess.run(
        [go, "test", "-count=1", "-run", "TestConsumersReadEveryState", "."],
        cwd=MODULE,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # a cold build compiles Kubernetes libraries: minutes on 2 cores
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    got: dict[str, dict[str, dict[str, str]]] = json.loads(results.read_text())
    assert set(got) == {c["name"] for c in cases}, "every case evaluated by every tool"
    return got


def test_every_registry_reason_and_lifecycle_state_reads_right(
    verdicts: dict[str, dict[str, dict[str, str]]],
) -> None:
    # go test asserted each expectation; here: the registry is covered entirely
    names = set(verdicts)
    for reason in REASONS:
        assert f"reason/{reason.type}/{reason.name}" in names
    assert {
        f"lifecycle/{s}"
        for s in ("just-created", "converging", "ready", "stale-generation", "paused", "deleting")
    } <= names
    assert any(n.startswith("captured/") for n in names)


def test_no_tool_errors(verdicts: dict[str, dict[str, dict[str, str]]]) -> None:
    errors = {
        (case, tool): v["error"]
        for case, by_tool in verdicts.items()
        for tool, v in by_tool.items()
        if v.get("error") and not case.startswith("window/")
    }
    assert not errors


def test_readme_gitops_table_is_what_the_tools_show(
    verdicts: dict[str, dict[str, dict[str, str]]],
) -> None:
    gitops = (REPO / "docs" / "gitops.md").read_text()
    table = render_table(verdicts)
    assert table in gitops, "docs/gitops.md's table differs; it should read:\n" + table
    assert len(table.splitlines()) == len(STATES) + 2
