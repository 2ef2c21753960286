"""The operator as ``deploy/`` runs it, for the deploy tests: the manifests' own arguments, the
ServiceAccount's token instead of the admin's certificate, and the metrics endpoint on.

``running_deployed_operator`` starts ``batchcert run`` with the flags the Deployment passes
(JSON logs, metrics, liveness) on free ports, with the simulator's cloud and credentials from the
environment exactly as ``support.operator`` does; the process group is stopped on exit.
``forbidden_lines`` finds every sign of a 403 in its log, so a missing RBAC rule fails the test
by name rather than as a mysterious timeout.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.operator import FAST_INTERVALS, OperatorProcess, operator_env

_FORBIDDEN = re.compile(r"forbidden|Not enough permissions|\b403\b", re.IGNORECASE)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DeployedOperator(OperatorProcess):
    metrics_port: int = 0
    liveness_port: int = 0

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def liveness(self) -> int:
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)

    def forbidden_lines(self) -> list[str]:
        # kopf's APIForbiddenError, the API server's "is forbidden", kopf's fallback warnings
        # ("Not enough permissions"), or a bare status code (not digits inside a timestamp).
        return [line for line in self.log().splitlines() if _FORBIDDEN.search(line)]


@contextmanager
def running_deployed_operator(
    kubeconfig: Path,
    sim_json: Path,
    log_path: Path,
    *,
    scope: Sequence[str] = ("--all-namespaces",),
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[DeployedOperator]:
    """``extra_env``: settings a manifest passes (say the chart's verification switch), on top."""
    metrics_port, liveness_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "BATCHCERT_"))}
    env.update(FAST_INTERVALS)
    env.update(operator_env(sim_json))
    env.update(extra_env or {})
    args = [
        sys.executable,
        "-m",
        "batchcert",
        "run",
        *scope,
        "--kubeconfig",
        str(kubeconfig),
        "--log-format=json",
        f"--metrics-port={metrics_port}",
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    op = DeployedOperator(process, log_path, metrics_port, liveness_port)
    try:
        yield op
    finally:
        if op.is_running():
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                op.kill()
