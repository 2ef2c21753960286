"""What ``batchcert-dev demo --keep`` prints for the user to carry on with.

Covers: every command line works pasted into a plain shell without the venv activated (absolute
paths, the venv's bin folder put on PATH, so ``kubectl batchcert`` finds its plugin), the metrics
port is named, and the accelerated intervals and the simulator's settings file are said.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchdev.demo import DEMO_INTERVALS, handoff_lines

BIN = Path(sys.executable).parent


def lines(tmp_path: Path) -> list[str]:
    return handoff_lines(
        kubeconfig=tmp_path / "cluster" / "kubeconfig",
        bin_dir=BIN,
        state_dir=tmp_path,
        sim_json=tmp_path / "sim" / "sim.json",
        metrics_port=9123,
        pids=[101, 102],
    )


def test_commands_need_no_activated_venv(tmp_path: Path) -> None:
    commands = [line for line in lines(tmp_path) if line and not line.startswith("#")]
    exports = [c.split("#", 1)[0] for c in commands if c.startswith("export ")]
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed to check what a plain shell makes of the lines")
    # A plain shell: no venv on PATH, only the system's folders.
    script = "; ".join([*exports, "command -v kubectl-batchcert batchcert batchcert-dev"])
    found = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.split() == [
        str(BIN / "kubectl-batchcert"),
        str(BIN / "batchcert"),
        str(BIN / "batchcert-dev"),
    ]
    stop = commands[-1]
    assert stop.startswith("kill 101 102; ")
    assert f"{BIN}/batchcert-dev cluster down --state-dir {tmp_path / 'cluster'}" in stop


def test_says_where_things_are_and_that_intervals_are_accelerated(tmp_path: Path) -> None:
    text = "\n".join(lines(tmp_path))
    assert "http://127.0.0.1:9123/metrics" in text
    assert str(tmp_path / "sim" / "sim.json") in text
    assert str(tmp_path / "operator.log") in text
    assert "accelerated" in text
    for name, value in DEMO_INTERVALS.items():
        assert f"{name}={value}" in text
    assert "kubectl batchcert status render-pool -n demo" in text
    assert f"batchcert-dev sim --state-dir {tmp_path / 'sim'} pools" in text
