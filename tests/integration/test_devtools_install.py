"""The dev tooling works installed, not only from a checkout.

Covers: the batchcert-devtools wheel (operator/pyproject.toml) carries the simulator, the dev
cluster with the Go modules that pin the control plane, and the demo with the CRD and example it
applies; installed into a clean venv from the same constraints, ``batchcert-dev`` runs and finds
all of them without the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_devtools_wheel_installs_and_runs_without_the_checkout(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    # The copy follows the package-data links (CRD, example) as a wheel build does.
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT / "operator",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "batchcert"),
    )
    wheels = tmp_path / "wheels"
    run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
        str(source), cwd=tmp_path,
    )  # fmt: skip
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    wheel = next(wheels.glob("batchcert_devtools-*.whl"))
    run(
        str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
        "-c", str(REPO_ROOT / "constraints.txt"), str(wheel), cwd=tmp_path,
    )  # fmt: skip
    assert "cluster" in run(str(venv / "bin" / "batchcert-dev"), "--help", cwd=tmp_path)
    # Run from elsewhere, so nothing can be found through the checkout.
    probe = (
        "from batchdev import demo\n"
        "from batchdev.devcluster import binaries\n"
        "import batchdev, batchsim\n"
        "assert 'site-packages' in batchdev.__file__ and 'site-packages' in batchsim.__file__\n"
        "pins = binaries.read_pinned_versions()\n"
        "assert demo.CRD.is_file() and demo.EXAMPLE.is_file()\n"
        "assert 'kind: CustomResourceDefinition' in demo.CRD.read_text()\n"
        "print(pins.kubernetes, pins.etcd)\n"
    )
    versions = run(str(venv / "bin" / "python"), "-c", probe, cwd=tmp_path).split()
    assert versions[0].startswith("v1.") and versions[1].startswith("v3.")
