"""Run the real operator (``batchcert run``) as a separate process for integration tests.

The process gets its Azure credentials and custom cloud from the simulator's ``sim.json`` through
the environment, exactly as a user's process would; short intervals keep tests fast. The process
group is killed on exit, and its log is kept for the failure report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batchcert.allocator import GLIBC_TUNABLES_ENV
from batchdev.devcluster.processes import start_detached

FAST_INTERVALS = {
    "BATCHCERT_TICK_SECONDS": "1",
    "BATCHCERT_DRIFT_INTERVAL_SECONDS": "5",
    "BATCHCERT_CERT_INTERVAL_SECONDS": "2",
    "BATCHCERT_NODE_INTERVAL_SECONDS": "3",
    # Every healthy node re-read every pass: tests that change a node behind its back see it.
    "BATCHCERT_NODE_RECHECK_SECONDS": "3",
    "BATCHCERT_BUSY_INTERVAL_SECONDS": "1",
    # Progress written within a second, as the other intervals are short (test_writes measures the
    # installed default).
    "BATCHCERT_STATUS_SETTLE_SECONDS": "1",
}


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.is_running():
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to its process group; SIGKILL if it has not exited within ``timeout``."""
        if not self.is_running():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def operator_env(sim_json: Path, principal: str = "operator") -> dict[str, str]:
    info = json.loads(sim_json.read_text())
    creds = info["principals"][principal]
    return {
        # glibc's tunables, as the image and deploy/ set them (batchcert.allocator).
        **GLIBC_TUNABLES_ENV,
        "BATCHCERT_CLOUD_FILE": str(sim_json),
        "AZURE_TENANT_ID": info["tenantId"],
        "AZURE_CLIENT_ID": creds["clientId"],
        "AZURE_CLIENT_SECRET": creds["clientSecret"],
    }


def start_operator(
    kubeconfig: Path,
    sim_json: Path,
    log_path: Path,
    *,
    namespaces: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    wrap: Sequence[str] = (),
    args: Sequence[str] = (),
) -> OperatorProcess:
    """``wrap`` prefixes the command (a profiler that runs the operator as its child); ``args``
    are appended to ``batchcert run``'s (e.g. ``--shards 2 --shard 1``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "BATCHCERT_"))}
    env.update(FAST_INTERVALS)
    env.update(operator_env(sim_json))
    env.update(extra_env or {})
    command = [*wrap, sys.executable, "-m", "batchcert", "run", "--kubeconfig", str(kubeconfig)]
    for namespace in namespaces:
        command += ["--namespace", namespace]
    command += list(args)
    # Dies with the test process even if pytest itself is killed: no orphaned operator.
    process, _ = start_detached("operator", command, log_path, die_with_parent=True, env=env)
    return OperatorProcess(process, log_path)


@contextmanager
def running_operator(
    kubeconfig: Path, sim_json: Path, log_path: Path, **kwargs: object
) -> Iterator[OperatorProcess]:
    op = start_operator(kubeconfig, sim_json, log_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield op
    finally:
        op.stop()
