"""The API server goes away under the operator: restarted (SIGKILL + start), and paused long
enough for every watch to stall.

Covers: a certificate renewed while kube-apiserver is down is recorded once the server is back
(rotations 1, the CertificateRotated Event), the object returns to Ready, the operator process
survives without a restart of its own; a server frozen (SIGSTOP) for longer than a tick, during
which a pool is deleted out of band, resumes and the pool is recreated. Each runs on a control
plane of its own, so the session's cluster is never disturbed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchdev.devcluster.cluster import Cluster
from batchdev.devcluster.processes import start_detached
from support.cluster import KubeCluster
from support.faults import Scenario
from support.operator import running_operator
from support.stack import OperatorStack


class RestartableStack(OperatorStack):
    """An operator stack on a private control plane whose kube-apiserver can be killed."""

    workdir: Path
    own_cluster: Cluster
    restarted: list[Any]

    def apiserver_pid(self) -> int:
        if self.restarted:
            return int(self.restarted[-1].pid)
        record = self.own_cluster.state.kube_apiserver
        assert record is not None
        return record.pid

    def kill_apiserver(self) -> list[str]:
        pid = self.apiserver_pid()
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        return argv

    def start_apiserver(self, argv: list[str]) -> None:
        process, _ = start_detached(
            "kube-apiserver",
            argv,
            self.workdir / "kube-apiserver.restarted.log",
            die_with_parent=True,
        )
        self.restarted.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.cluster.kubectl("get", "--raw", "/readyz", timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("kube-apiserver did not come back within 60 s")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def rstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableStack]:
    from support.stack import fast_simulator

    workdir = tmp_path_factory.mktemp("apiserver")
    cluster = Cluster.up(workdir / "cluster")
    restarted: list[Any] = []
    try:
        kube = KubeCluster(cluster)
        kube.install_crds()
        with (
            fast_simulator(workdir / "sim") as sim,
            running_operator(
                cluster.kubeconfig, Path(sim.sim_json), workdir / "operator.log"
            ) as op,
        ):
            stack = RestartableStack(kube, sim, op)
            stack.workdir, stack.own_cluster, stack.restarted = workdir, cluster, restarted
            yield stack
    finally:
        for process in restarted:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        cluster.down()


def test_a_rotation_during_an_apiserver_restart_is_recorded(
    rstack: RestartableStack, scenario_row: Scenario
) -> None:
    ns, demo = rstack.namespace("restart"), rstack.demo
    rstack.control.add_certificate(demo["vault"], "restartcert")
    rstack.apply(
        rstack.manifest(
            "restart", ns, certificates=[{"vaultUrl": demo["vaultUrl"], "name": "restartcert"}]
        )
    )
    rstack.wait_ready("restart", ns)
    scenario_row.injected = (
        "kube-apiserver SIGKILLed; the certificate renewed while it is down; restarted 10 s later"
    )
    argv = rstack.kill_apiserver()
    new_version = rstack.control.renew_certificate(demo["vault"], "restartcert")
    time.sleep(10)  # the operator's watches and status writes fail meanwhile
    cleared = time.monotonic()
    rstack.start_apiserver(argv)

    def recorded() -> bool:
        item = rstack.get("restart", ns).get("status", {}).get("certificates", [{}])[0]
        return bool(item.get("version") == new_version and item.get("rotations") == 1)

    rstack.wait_until("the rotation in status", recorded, name="restart", namespace=ns, timeout=120)
    rstack.wait_ready("restart", ns, timeout=150)
    scenario_row.converge_seconds = round(time.monotonic() - cleared, 1)
    assert "CertificateRotated" in rstack.event_reasons(ns)
    assert rstack.operator.is_running(), rstack.operator.log()[-4000:]
    scenario_row.operator_did = (
        "kept running; recorded rotations=1 and the Event once the server was back; Ready"
    )


def test_a_frozen_apiserver_resumes_and_drift_is_corrected(
    rstack: RestartableStack, scenario_row: Scenario
) -> None:
    ns, demo = rstack.namespace("frozen"), rstack.demo
    rstack.apply(rstack.manifest("frozen", ns))
    rstack.wait_ready("frozen", ns)
    scenario_row.injected = (
        "kube-apiserver SIGSTOPped for 20 s (watches stall); the pool deleted out of band meanwhile"
    )
    pid = rstack.apiserver_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        rstack.control.delete_pool_out_of_band(
            demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "frozen"
        )
        time.sleep(20)
    finally:
        os.kill(pid, signal.SIGCONT)
    cleared = time.monotonic()

    def recreated() -> bool:
        return rstack.event_reasons(ns).count("PoolCreated") == 2

    rstack.wait_until("the pool recreated", recreated, name="frozen", namespace=ns, timeout=120)
    rstack.wait_ready("frozen", ns, timeout=120)
    scenario_row.converge_seconds = round(time.monotonic() - cleared, 1)
    assert rstack.pool_in_azure("frozen") is not None
    assert rstack.operator.is_running(), rstack.operator.log()[-4000:]
    scenario_row.operator_did = (
        "watches resumed; the out-of-band delete was seen and the pool recreated; Ready"
    )
