"""The README's demo, end to end, exactly as a user runs it (``batchcert-dev demo``).

Covers the user's whole path in one process tree: a real control plane, the simulator, the
operator, ``kubectl apply`` of examples/batchcertpool.yaml, ``Ready=True``, a renewal by the
simulated clock seen as a new version with the ``CertificateRotated`` Event, Ready again after
propagation, deletion, and a clean stop (no process left behind).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_readme_demo_runs_end_to_end(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "batchdev", "demo", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in state.glob("*.log"))
    assert result.returncode == 0, f"{out}\n{result.stderr}\n{logs}"
    assert "CertificateRotated" in out
    assert "RotationPropagating" in out  # kubectl get bcp right after the rotation
    assert out.count("Waiting for Ready=True") == 2
    assert "rotations 1" in out
    assert "deleted" in out  # the BatchCertPool, and with it the pool
    assert "Demo finished" in out
    leftovers = subprocess.run(
        ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], f"processes left behind: {leftovers}"
