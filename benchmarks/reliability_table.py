"""Print the fault suite's figures as the Markdown table docs/reliability.md carries.

Usage::

    BATCHCERT_RELIABILITY_JSON=benchmarks/results/reliability.json .venv/bin/pytest -m faults
    python benchmarks/reliability_table.py benchmarks/results/reliability.json

The JSON is written by ``tests/faults/conftest.py`` (one row per scenario, marked passed only when
its test passed); this script only formats it, so the table always shows what a run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _figure(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value}{unit}"


def _row(s: dict[str, Any]) -> str:
    cells = [
        s["group"].removeprefix("test_"),
        s["name"].removeprefix("test_"),
        s["injected"],
        s["operatorDid"],
        "pass" if s["passed"] else "**FAIL**",
        str(s["duplicatePools"]),
        str(s["lostResources"]),
        _figure(s["requestsPerMinute"]),
        _figure(s["convergeSeconds"], " s"),
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render(data: dict[str, Any]) -> str:
    summary = data["summary"]
    lines = [
        "| group | scenario | injected | operator did | result | duplicate pools | lost resources "
        "| requests/min during fault | converged after fault cleared |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(s) for s in data["scenarios"]),
        "",
        f"**{summary['passed']}/{summary['scenarios']} scenarios passed; duplicate pools: "
        f"{summary['duplicatePools']}; lost resources: {summary['lostResources']}.**",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "benchmarks/results/reliability.json")
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
