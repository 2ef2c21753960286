"""The local control plane is a real Kubernetes API server, and it starts and stops cleanly.

Covers, against the shared ``kube_cluster``: the server reports the selected version (the pinned
one unless ``BATCHCERT_KUBERNETES_VERSION`` says otherwise) to kubectl; a CRD's OpenAPI schema and
its CEL ``x-kubernetes-validations`` rule refuse invalid objects with the server's own messages;
an unprivileged ServiceAccount (TokenRequest token) is forbidden until a Role and RoleBinding grant
it.

Covers, with private state dirs: ``batchcert-dev cluster up`` / ``down`` twice in a row through
the CLI with no process or port left; ``up`` refuses a running dir; a state dir left by a killed
run (fully or half dead) is cleaned up; a taken port, a lost port race, a server dying at start
and a server that never gets ready each end in one clear error naming the log, never a hang, and
leave no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchdev.devcluster import processes
from batchdev.devcluster.binaries import (
    ControlPlaneBinaries,
    require_binaries,
    selected_kubernetes_version,
)
from batchdev.devcluster.cluster import Cluster
from batchdev.devcluster.errors import ClusterStartError, PortInUseError
from batchdev.devcluster.state import StateDir, load_state
from support.cluster import KUBECTL, KubeCluster, live_processes_mentioning

GROUP = "controlplane.test.batchcert.dev"
WIDGET_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [minNodes, maxNodes]
              x-kubernetes-validations:
                - rule: "self.minNodes <= self.maxNodes"
                  message: "minNodes must not exceed maxNodes"
              properties:
                minNodes: {{type: integer, minimum: 0}}
                maxNodes: {{type: integer, minimum: 1, maximum: 100}}
"""


def widget(name: str, min_nodes: int, max_nodes: int) -> str:
    return f"""
apiVersion: {GROUP}/v1
kind: Widget
metadata: {{name: {name}, namespace: default}}
spec: {{minNodes: {min_nodes}, maxNodes: {max_nodes}}}
"""


@pytest.fixture(scope="module")
def widgets(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    kube_cluster.apply(WIDGET_CRD)
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s", check=True
    )
    yield kube_cluster
    # CRD deletion is served by the API server itself (no controller-manager needed).
    kube_cluster.kubectl("delete", f"crd/widgets.{GROUP}", "--wait=false")


# --- the shared cluster is a real API server -----------------------------------------------


def test_kubectl_reports_the_selected_server_version(kube_cluster: KubeCluster) -> None:
    # The pinned release, or the one BATCHCERT_KUBERNETES_VERSION selects (make k8s-oldest).
    selected = selected_kubernetes_version()
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kube_cluster.kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["serverVersion"]["gitVersion"] == selected
    plain = kube_cluster.kubectl("version", check=True)
    assert f"Server Version: {selected}" in plain.stdout


def test_a_valid_object_is_stored(widgets: KubeCluster) -> None:
    widgets.apply(widget("fine", 1, 3))
    stored = widgets.kubectl("get", f"widgets.{GROUP}", "fine", "-o", "json", check=True)
    assert json.loads(stored.stdout)["spec"] == {"minNodes": 1, "maxNodes": 3}


def test_a_cel_rule_refuses_an_invalid_object_with_the_servers_message(
    widgets: KubeCluster,
) -> None:
    refused = widgets.kubectl("apply", "-f", "-", input=widget("inverted", 5, 2))

    assert refused.returncode != 0
    assert "minNodes must not exceed maxNodes" in refused.stderr
    assert "Invalid value" in refused.stderr
    assert widgets.kubectl("get", f"widgets.{GROUP}", "inverted").returncode != 0


def test_the_openapi_schema_refuses_an_out_of_range_field(widgets: KubeCluster) -> None:
    refused = widgets.kubectl("apply", "-f", "-", input=widget("huge", 1, 500))

    assert refused.returncode != 0
    assert "spec.maxNodes" in refused.stderr
    assert "should be less than or equal to 100" in refused.stderr


def test_an_unprivileged_identity_is_forbidden_until_rbac_grants_it(
    kube_cluster: KubeCluster,
) -> None:
    # A probe account of its own: the operator's account gets exactly deploy/'s RBAC elsewhere.
    probe = "rbac-probe/probe"
    whoami = kube_cluster.kubectl("auth", "whoami", "-o", "json", as_=probe, check=True)
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        "system:serviceaccount:rbac-probe:probe"
    )

    denied = kube_cluster.kubectl("get", "configmaps", "-n", "rbac-probe", as_=probe)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert 'User "system:serviceaccount:rbac-probe:probe" cannot list' in denied.stderr

    kube_cluster.apply(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-configmaps, namespace: rbac-probe}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: probe-reads-configmaps, namespace: rbac-probe}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}
subjects:
  - {kind: ServiceAccount, name: probe, namespace: rbac-probe}
"""
    )
    # The RBAC authorizer reads roles from an informer: allow it a moment to see the new ones.
    deadline = time.monotonic() + 15
    while (
        granted := kube_cluster.kubectl("get", "configmaps", "-n", "rbac-probe", as_=probe)
    ).returncode:
        assert time.monotonic() < deadline, granted.stderr
        time.sleep(0.2)
    # Only what was granted: writing is still forbidden.
    still_denied = kube_cluster.kubectl("create", "configmap", "x", "-n", "rbac-probe", as_=probe)
    assert "cannot create resource" in still_denied.stderr


# --- the CLI, in private state dirs --------------------------------------------------------


def batchcert_dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchdev", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def cli(action: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return batchcert_dev("cluster", action, "--state-dir", str(state_dir))


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A private state dir, brought down (and checked for leftovers) whatever the test did."""
    directory = tmp_path / "cluster"
    yield directory
    cli("down", directory)
    leftovers = live_processes_mentioning(str(directory))
    for pid in leftovers:
        os.killpg(pid, signal.SIGKILL)
    assert not leftovers, f"processes survived the test: {leftovers}"


def test_up_then_down_twice_through_the_cli_leaves_nothing_behind(state_dir: Path) -> None:
    for round_ in (1, 2):
        up = cli("up", state_dir)
        assert up.returncode == 0, up.stderr
        state = load_state(StateDir(state_dir))
        assert state is not None
        assert state.ready
        kubectl = subprocess.run(
            [KUBECTL, "--kubeconfig", str(state_dir / "kubeconfig"), "get", "namespace", "default"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert kubectl.returncode == 0, kubectl.stderr
        assert cli("status", state_dir).returncode == 0
        if round_ == 1:
            again = cli("up", state_dir)
            assert again.returncode == 1
            assert "already running" in again.stderr

        down = cli("down", state_dir)

        assert down.returncode == 0, down.stderr
        assert not any(processes.is_alive(p) for p in state.processes())
        assert not any(processes.is_listening(port) for port in state.ports())
        assert live_processes_mentioning(str(state_dir)) == []
        assert not (state_dir / "state.json").exists()
        assert cli("status", state_dir).returncode == 1
    assert cli("down", state_dir).returncode == 0  # nothing running: still succeeds


def test_a_state_dir_left_by_a_killed_run_is_cleaned_up(state_dir: Path) -> None:
    assert cli("up", state_dir).returncode == 0
    first = load_state(StateDir(state_dir))
    assert first is not None
    assert first.kube_apiserver is not None
    assert first.etcd is not None

    # Half dead: the API server was killed, etcd still runs and must not be orphaned.
    os.kill(first.kube_apiserver.pid, signal.SIGKILL)
    _wait_dead(first.kube_apiserver)
    half = cli("up", state_dir)
    assert half.returncode == 0, half.stderr
    assert "half-running" in half.stderr
    assert not processes.is_alive(first.etcd)

    # Fully dead (kill -9 of everything, or a reboot): the next up just starts afresh.
    second = load_state(StateDir(state_dir))
    assert second is not None
    for record in second.processes():
        os.kill(record.pid, signal.SIGKILL)
        _wait_dead(record)
    fresh = cli("up", state_dir)
    assert fresh.returncode == 0, fresh.stderr
    assert "was killed" in fresh.stderr
    assert cli("status", state_dir).returncode == 0


def _wait_dead(record: processes.ProcessRecord) -> None:
    deadline = time.monotonic() + 10
    while processes.is_alive(record):
        assert time.monotonic() < deadline, f"{record} survived SIGKILL"
        time.sleep(0.05)


# --- failures at start: one clear error, no hang, nothing left -----------------------------


@pytest.fixture
def listening_socket() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_is_one_clear_error(tmp_path: Path, listening_socket: int) -> None:
    started = time.monotonic()
    with pytest.raises(PortInUseError) as failure:
        Cluster.up(tmp_path, apiserver_port=listening_socket)

    assert f"port {listening_socket}" in str(failure.value)
    assert "kube-apiserver.log" in str(failure.value)
    assert time.monotonic() - started < 30
    assert live_processes_mentioning(str(tmp_path)) == []  # etcd, already started, was stopped


def test_a_lost_port_race_is_retried_on_fresh_ports(
    tmp_path: Path, listening_socket: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first "free" port handed out is already taken, as if grabbed after the check: etcd
    # fails to bind, exits, and is restarted on fresh ports.
    real_allocate = processes.allocate_port
    handed_out: list[int] = []

    def allocate_taken_first() -> int:
        port = listening_socket if not handed_out else real_allocate()
        handed_out.append(port)
        return port

    monkeypatch.setattr(processes, "allocate_port", allocate_taken_first)

    with Cluster.up(tmp_path) as cluster:
        assert cluster.state.etcd_ports.client != listening_socket
        assert "address already in use" in (tmp_path / "etcd.log").read_text()
    assert live_processes_mentioning(str(tmp_path)) == []


def fake_binaries(tmp_path: Path, kube_apiserver_script: str) -> ControlPlaneBinaries:
    real = require_binaries()
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "etcd").symlink_to(real.etcd)
    fake = directory / "kube-apiserver"
    fake.write_text(f"#!/bin/sh\n{kube_apiserver_script}\n")
    fake.chmod(0o755)
    return ControlPlaneBinaries(directory, real.versions)


def test_a_server_dying_at_start_is_one_clear_error_naming_its_log(tmp_path: Path) -> None:
    binaries = fake_binaries(
        tmp_path, 'echo "E0101 run.go:72] command failed: bad flag" >&2; exit 3'
    )
    state_dir = tmp_path / "state"

    with pytest.raises(ClusterStartError) as failure:
        Cluster.up(state_dir, binaries=binaries)

    message = str(failure.value)
    assert "kube-apiserver exited with code 3" in message
    assert str(state_dir / "kube-apiserver.log") in message
    assert "command failed: bad flag" in message
    assert live_processes_mentioning(str(state_dir)) == []


def test_a_server_that_never_gets_ready_times_out_instead_of_hanging(tmp_path: Path) -> None:
    binaries = fake_binaries(tmp_path, "exec sleep 600")
    state_dir = tmp_path / "state"
    started = time.monotonic()

    with pytest.raises(ClusterStartError, match="did not become ready within 2s"):
        Cluster.up(state_dir, binaries=binaries, timeout=2)

    assert time.monotonic() - started < 30
    assert live_processes_mentioning(str(state_dir)) == []
