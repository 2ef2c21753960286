"""Day-2 experience through the real operator process, the real API server and the simulator.

Covers: ``batchcert status`` shows the VM size the pool runs (not the spec's) during a refused
disruptive change, flagged as differing.
"""

from __future__ import annotations

import os
import subprocess
import sys

from support.stack import OperatorStack


def _batchcert_status(stack: OperatorStack, name: str, ns: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchcert", "status", name, "-n", ns],
        env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _no_tracebacks(stack: OperatorStack) -> None:
    assert stack.operator.is_running()
    assert "Traceback" not in stack.operator.log(), stack.operator.log()[-4000:]


def test_status_shows_the_size_that_runs_during_a_refused_change(stack: OperatorStack) -> None:
    ns = stack.namespace("runs")
    manifest = stack.manifest("runs", ns)
    stack.apply(manifest)
    stack.wait_ready("runs", ns)
    manifest["spec"]["vmSize"] = "STANDARD_D4S_V3"  # disruptive; the policy is Report
    stack.apply(manifest)

    def refused() -> bool:
        reason = stack.condition("runs", ns, "PoolReady").get("reason")
        return reason == "UpdateRequiresDisruption"

    stack.wait_until("UpdateRequiresDisruption", refused, name="runs", namespace=ns)
    shown = _batchcert_status(stack, "runs", ns)
    assert shown.returncode == 3, shown.stdout + shown.stderr  # Stalled: a person must choose
    vm_line = next(line for line in shown.stdout.splitlines() if "VM size:" in line)
    assert "STANDARD_D2S_V3" in vm_line.upper(), shown.stdout
    assert "DIFFERS: the spec asks for STANDARD_D4S_V3" in vm_line, shown.stdout
    image_line = next(line for line in shown.stdout.splitlines() if "Image:" in line)
    assert "canonical/0001-com-ubuntu-server-jammy/22_04-lts/latest" in image_line
    assert "DIFFERS" not in image_line
    _no_tracebacks(stack)
