"""Objects captured from real runs (``tests/data/status/``), refreshed by the tests that see them.

The integration tests call :func:`capture` at each state they reach. Normally it checks that the
committed file still has the shape the running operator produces now (which summary conditions
hold, whether the status is for the current generation), so a change to what the operator writes
cannot leave stale captures behind: the test fails and says how to refresh them. With
``BATCHCERT_CAPTURE_STATUS=tests/data/status`` it writes the files instead (never by hand).
tests/consumers feeds every capture to kstatus, Argo CD and Flux; tests/unit/test_metrics reads
them too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "status"
SUMMARY_TYPES = ("Ready", "Reconciling", "Stalled")


def trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {k: metadata[k] for k in ("name", "namespace", "generation") if k in metadata},
        "spec": obj["spec"],
        "status": obj.get("status", {}),
    }


def shape(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    return {
        "observed": status.get("observedGeneration") == obj["metadata"]["generation"],
        "summaries": {c["type"]: c["status"] for c in conditions if c["type"] in SUMMARY_TYPES},
        "types": sorted(c["type"] for c in conditions),
    }


def capture(obj: dict[str, Any], label: str) -> None:
    keep = trimmed(obj)
    target = os.environ.get("BATCHCERT_CAPTURE_STATUS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        text = json.dumps(keep, indent=2, sort_keys=True) + "\n"
        (Path(target) / f"{label}.json").write_text(text)
        return
    committed = CAPTURED / f"{label}.json"
    refresh = "refresh with BATCHCERT_CAPTURE_STATUS=tests/data/status (never by hand)"
    assert committed.exists(), f"no {committed}: {refresh}"
    was, now = shape(json.loads(committed.read_text())), shape(keep)
    assert was == now, f"{committed} is stale ({was} != {now}): {refresh}"
