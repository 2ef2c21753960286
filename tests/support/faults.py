"""Helpers for the fault suite (``tests/faults``): a stack whose operator can be killed and
restarted, request-log queries that prove "one pool, one successful PUT", and a figures recorder.

``FaultStack`` is an ``OperatorStack`` whose operator watches one namespace only, so objects left
behind by other test modules (integration tests do not delete theirs) never reach this module's
simulator and never pollute its request counts. ``fault_stack`` always kills whichever operator
process is current when it exits, including one a test restarted.

``Figures`` collects one row per scenario (what was injected, what the operator did, the numbers);
the fault suite's conftest writes them to JSON and ``benchmarks/reliability_table.py`` prints the
table that ``docs/reliability.md`` carries.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.cluster import KubeCluster
from support.operator import OperatorProcess, start_operator
from support.stack import OperatorStack, fast_simulator


@dataclass
class FaultStack(OperatorStack):
    home: str = ""  # the one namespace this stack's operator watches
    sim_json: Path = Path()
    log_path: Path = Path()
    restarts: int = 0

    def namespace(self, prefix: str = "") -> str:
        return self.home

    # --- the operator process -------------------------------------------------------------

    def kill_operator(self) -> None:
        """SIGKILL: no cleanup handlers, no finalizer removal, no status write."""
        self.operator.kill(signal.SIGKILL)

    def start_operator(self) -> None:
        assert not self.operator.is_running(), "kill the operator before starting another"
        self.operator = start_operator(
            self.cluster.kubeconfig, self.sim_json, self.log_path, namespaces=(self.home,)
        )
        self.restarts += 1

    def restart_operator(self) -> None:
        self.kill_operator()
        self.start_operator()

    def assert_operator_healthy(self) -> None:
        log = self.operator.log()
        assert self.operator.is_running(), "the operator process died:\n" + log[-4000:]
        assert "Traceback" not in log, log[-6000:]

    # --- the simulator's view -------------------------------------------------------------

    def ids(self, pool: str) -> tuple[str, str, str, str]:
        demo = self.demo
        return (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], pool)

    def pool_path_regex(self, pool: str) -> str:
        return f"/pools/{re.escape(pool)}$"

    def pools_named(self, pool: str) -> list[dict[str, Any]]:
        return [
            p for p in self.control.pools() if p["id"].lower().endswith(f"/pools/{pool.lower()}")
        ]

    def successful_creates(self, pool: str) -> list[dict[str, Any]]:
        """Pool PUTs the simulator answered 200: more than one would be a second pool or a
        clobbered one."""
        return self.control.requests(
            operation="Pool_Create", status=200, pathRegex=self.pool_path_regex(pool)
        )

    def wait_for_request(
        self, *, since: int, timeout: float = 60, poll: float = 0.02, **filters: Any
    ) -> dict[str, Any]:
        """The first logged request after ``since`` matching ``filters``; polls fast so a test can
        act (kill) in the window right after Azure answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.control.requests(sinceSeq=since, limit=1, **filters)
            if found:
                return dict(found[0])
            time.sleep(poll)
        raise AssertionError(
            f"no request {filters} within {timeout}s\n{self.operator.log()[-3000:]}"
        )

    def last_seq(self) -> int:
        entries = self.control.requests(limit=1)  # the log answers the newest `limit` entries
        return int(entries[-1]["seq"]) if entries else 0

    # --- the Kubernetes view --------------------------------------------------------------

    def exists(self, name: str) -> bool:
        result = self.cluster.kubectl("get", "bcp", name, "-n", self.home, "-o", "name")
        return result.returncode == 0

    def reasons_for(self, name: str) -> list[str]:
        return [
            e["reason"]
            for e in self.events(self.home)
            if e.get("involvedObject", {}).get("name") == name
        ]

    def reason(self, name: str, type_: str) -> str | None:
        value = self.condition(name, self.home, type_).get("reason")
        return str(value) if value is not None else None

    def wait_reason(self, name: str, type_: str, reason: str, timeout: float = 90) -> float:
        """Wait until condition ``type_`` has ``reason``; returns the seconds it took."""
        start = time.monotonic()
        self.wait_until(
            f"{type_}={reason}",
            lambda: self.reason(name, type_) == reason,
            name=name,
            namespace=self.home,
            timeout=timeout,
        )
        return time.monotonic() - start

    def timed_ready(self, name: str, timeout: float = 120) -> float:
        start = time.monotonic()
        self.wait_ready(name, self.home, timeout=int(timeout))
        return time.monotonic() - start

    def delete(self, name: str, *, wait: bool = True, timeout: int = 90) -> None:
        args = ["delete", "bcp", name, "-n", self.home, "--ignore-not-found"]
        args += [f"--timeout={timeout}s"] if wait else ["--wait=false"]
        result = self.cluster.kubectl(*args, timeout=timeout + 15)
        assert result.returncode == 0, self.explain(name, self.home, result.stderr)

    def delete_all(self) -> None:
        """Remove every object (best effort, bounded), so the next test's counts are its own."""
        self.cluster.kubectl("delete", "bcp", "--all", "-n", self.home, "--timeout=60s", timeout=75)


@contextmanager
def fault_stack(kube_cluster: KubeCluster, workdir: Path, prefix: str) -> Iterator[FaultStack]:
    home = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", home, check=True)
    with fast_simulator(workdir / "sim") as sim:
        sim_json, log_path = Path(sim.sim_json), workdir / "operator.log"
        first = start_operator(kube_cluster.kubeconfig, sim_json, log_path, namespaces=(home,))
        stack = FaultStack(
            kube_cluster, sim, first, home=home, sim_json=sim_json, log_path=log_path
        )
        try:
            yield stack
        finally:
            try:
                stack.delete_all()
            finally:
                _stop(stack.operator)


def _stop(op: OperatorProcess) -> None:
    op.stop()


# --- figures --------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One row of docs/reliability.md."""

    name: str
    group: str
    injected: str = ""
    operator_did: str = ""
    passed: bool = False
    duplicate_pools: int = 0
    lost_resources: int = 0
    requests_per_minute: float | None = None  # during the fault, to the faulted surface
    converge_seconds: float | None = None  # from the fault clearing to the level reached
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "injected": self.injected,
            "operatorDid": self.operator_did,
            "passed": self.passed,
            "duplicatePools": self.duplicate_pools,
            "lostResources": self.lost_resources,
            "requestsPerMinute": self.requests_per_minute,
            "convergeSeconds": self.converge_seconds,
            "extra": self.extra,
        }


@dataclass
class Figures:
    scenarios: list[Scenario] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [s.to_json() for s in self.scenarios]
        summary = {
            "scenarios": len(rows),
            "passed": sum(1 for r in rows if r["passed"]),
            "duplicatePools": sum(r["duplicatePools"] for r in rows),
            "lostResources": sum(r["lostResources"] for r in rows),
        }
        path.write_text(json.dumps({"summary": summary, "scenarios": rows}, indent=2) + "\n")


def per_minute(count: int, seconds: float) -> float:
    return round(count * 60.0 / seconds, 1) if seconds > 0 else float(count)


def timed(check: Callable[[], bool], timeout: float, poll: float = 0.5) -> float | None:
    """Seconds until ``check`` holds, or None at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(poll)
    return None


@dataclass
class FaultWindow:
    """A fault rule with a real-time window: when it started, when it clears, what it hit."""

    stack: FaultStack
    rule: dict[str, Any]
    since: int
    started: float
    seconds: float

    @property
    def clears_at(self) -> float:
        return self.started + self.seconds

    def injected(self) -> list[dict[str, Any]]:
        """Every request the fault answered (or dropped) in place of Azure."""
        return [
            r
            for r in self.stack.control.requests(sinceSeq=self.since)
            if r["operation"] in ("InjectedFault", "InjectedDrop")
        ]

    def rate_per_minute(self) -> float:
        return per_minute(len(self.injected()), self.seconds)

    def seconds_since_cleared(self) -> float:
        return round(max(0.0, time.monotonic() - self.clears_at), 1)


def open_fault(stack: FaultStack, seconds: float, **spec: Any) -> FaultWindow:
    since = stack.last_seq()
    rule = stack.control.add_fault(durationSeconds=seconds, **spec)
    return FaultWindow(stack, rule, since, time.monotonic(), seconds)


def start_replica(
    stack: FaultStack,
    *,
    peering: str | None,
    priority: int,
    log_path: Path,
    metrics_port: int = 0,
    extra_args: tuple[str, ...] = (),
) -> OperatorProcess:
    """One more operator process on the same namespace, as a replica under kopf peering
    (serving /metrics on ``metrics_port`` when given), or, with ``peering=None``, standalone:
    a shard given its ``--shards``/``--shard`` in ``extra_args``."""
    import sys

    from support.operator import FAST_INTERVALS, operator_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "BATCHCERT_"))}
    env.update(FAST_INTERVALS)
    env.update(operator_env(stack.sim_json))
    args = [sys.executable, "-m", "batchcert", "run", "--kubeconfig", str(stack.cluster.kubeconfig)]
    args += ["--namespace", stack.home, *extra_args]
    if peering is not None:
        args += ["--peering", peering, "--priority", str(priority)]
    if metrics_port:
        args += [f"--metrics-port={metrics_port}"]
    log = log_path.open("ab")
    process = subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return OperatorProcess(process, log_path)


def stop_operator(op: OperatorProcess) -> None:
    _stop(op)
