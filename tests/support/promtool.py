"""promtool for the tests: built by tools/promtool/build.sh (once, into the user cache)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def promtool() -> Path:
    """The binary's path; builds it on first use (minutes cold, instant once cached)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "promtool" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return Path(built.stdout.strip().splitlines()[-1])


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], input=stdin, capture_output=True, text=True, timeout=300
    )
