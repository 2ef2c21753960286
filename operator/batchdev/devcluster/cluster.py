"""Bring a real etcd + kube-apiserver up on loopback, and down again, from one state dir.

``Cluster.up(state_dir)`` is what tests call in-process (it is also a context manager);
``batchcert-dev cluster up|down|status`` wraps the same functions.

Invariants:

* ``up`` either returns a cluster whose ``/readyz`` is OK and whose ``default`` namespace exists,
  or raises one ``DevClusterError`` naming the cause and the log to read, after stopping whatever
  it started. Every wait has a deadline; nothing hangs.
* Ports are chosen free on 127.0.0.1; if another process grabs one between the choice and the bind,
  the component is restarted on fresh ports (explicitly requested ports are never swapped).
* A state dir left by a killed run is cleaned up by the next ``up``: recorded processes that are
  still alive (recognised by pid *and* start time) are stopped first. A state dir whose cluster is
  fully running is refused: ``down`` it first.
* ``down`` stops the API server before its storage, escalates to SIGKILL after a grace period, and
  fails loudly if a process or one of its ports survives. Running it when nothing runs succeeds.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType

from batchdev.devcluster import processes
from batchdev.devcluster.binaries import (
    ControlPlaneBinaries,
    build_binaries,
    require_binaries,
)
from batchdev.devcluster.errors import (
    ClusterAlreadyRunningError,
    ClusterNotRunningError,
    ClusterStartError,
    ClusterStopError,
    PortInUseError,
)
from batchdev.devcluster.flags import (
    EtcdPorts,
    build_etcd_args,
    build_kube_apiserver_args,
    etcd_client_url,
)
from batchdev.devcluster.identity import (
    DEFAULT_TOKEN_SECONDS,
    write_serviceaccount_kubeconfig,
)
from batchdev.devcluster.kubeconfig import build_client_certificate_kubeconfig, write_kubeconfig
from batchdev.devcluster.pki import PkiPaths, build_cluster_pki, write_pki
from batchdev.devcluster.processes import ProcessRecord
from batchdev.devcluster.rest import AdminClient
from batchdev.devcluster.state import (
    ClusterState,
    Liveness,
    StateDir,
    assess,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".state/cluster")
ETCD_READY_TIMEOUT = 30.0
# A cold kube-apiserver on two busy cores takes ~10 s; leave ample room before calling it hung.
APISERVER_READY_TIMEOUT = 120.0
PORT_ATTEMPTS = 4
_LOG_TAIL_LINES = 12

Handles = dict[str, "subprocess.Popen[bytes]"]


class Cluster:
    """A running dev control plane: its kubeconfig, server URL and state dir."""

    def __init__(
        self,
        state_dir: StateDir,
        state: ClusterState,
        handles: Handles | None = None,
        startup_seconds: float | None = None,
    ) -> None:
        self._dir = state_dir
        self._state = state
        self._handles: Handles = handles or {}
        self.startup_seconds = startup_seconds

    @property
    def state_dir(self) -> Path:
        return self._dir.root

    @property
    def kubeconfig(self) -> Path:
        return self._dir.kubeconfig

    @property
    def server(self) -> str:
        server = self._state.server
        assert server is not None, "a Cluster object always has an API server port"
        return server

    @property
    def service_account_issuer(self) -> str:
        """The ``iss`` of this cluster's service-account tokens: the API server, which serves
        the OIDC discovery document and JWKS there to anyone (``allow_issuer_discovery``)."""
        return self.server

    @property
    def ca_pem(self) -> bytes:
        """The CA of the API server's serving certificate (what a relying party must trust)."""
        return PkiPaths.in_directory(self._dir.pki).ca_cert.read_bytes()

    @property
    def state(self) -> ClusterState:
        return self._state

    @property
    def kubernetes_version(self) -> str:
        return self._state.kubernetes_version

    def admin_client(self) -> AdminClient:
        assert self._state.apiserver_port is not None
        return _admin_client(self._dir, self._state.apiserver_port)

    def write_serviceaccount_kubeconfig(
        self, namespace: str, name: str, out: Path | str, *, seconds: int = DEFAULT_TOKEN_SECONDS
    ) -> Path:
        """Create (if missing) the ServiceAccount and write a token kubeconfig for it to ``out``."""
        ca_pem = PkiPaths.in_directory(self._dir.pki).ca_cert.read_bytes()
        return write_serviceaccount_kubeconfig(
            self.admin_client(), self.server, ca_pem, namespace, name, Path(out), seconds
        )

    @classmethod
    def up(
        cls,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        binaries: ControlPlaneBinaries | None = None,
        build_if_missing: bool = False,
        kubernetes_version: str | None = None,
        apiserver_port: int | None = None,
        etcd_client_port: int | None = None,
        die_with_parent: bool = True,
        timeout: float = APISERVER_READY_TIMEOUT,
    ) -> Cluster:
        """Start etcd and kube-apiserver from ``state_dir`` and wait until they serve.

        ``kubernetes_version`` (``vX.Y.Z``) selects the release when ``binaries`` is not given;
        by default ``BATCHCERT_KUBERNETES_VERSION``, else the pinned one.
        ``die_with_parent`` (the default, for in-process use by tests) has the kernel kill the
        servers if the calling thread's process dies; the CLI turns it off so they outlive it.
        """
        if binaries is None:
            binaries = (
                build_binaries(kubernetes_version)
                if build_if_missing
                else require_binaries(kubernetes_version)
            )
        directory = StateDir(Path(state_dir).resolve())
        started = time.monotonic()
        with directory.locked():
            _clear_previous_run(directory)
            directory.remove_run(keep_logs=False)
            pki = write_pki(build_cluster_pki(datetime.now(UTC)), directory.pki)
            handles: Handles = {}
            state = ClusterState(
                kubernetes_version=binaries.versions.kubernetes,
                etcd_version=binaries.versions.etcd,
                etcd_ports=EtcdPorts(0, 0),
            )
            try:
                state = _start_etcd(
                    directory, binaries, state, handles, etcd_client_port, die_with_parent
                )
                state = _start_kube_apiserver(
                    directory,
                    binaries,
                    pki,
                    state,
                    handles,
                    apiserver_port,
                    die_with_parent,
                    timeout,
                )
                assert state.server is not None
                allow_issuer_discovery(_admin_client(directory, state.apiserver_port or 0))
                write_kubeconfig(
                    build_client_certificate_kubeconfig(
                        state.server,
                        pki.ca_cert.read_bytes(),
                        "admin",
                        pki.admin_cert.read_bytes(),
                        pki.admin_key.read_bytes(),
                    ),
                    directory.kubeconfig,
                )
                state = state.with_changes(ready=True)
                save_state(directory, state)
            except BaseException:
                # Including KeyboardInterrupt: a half-started cluster must not outlive the error.
                # state.json, saved right after each spawn, knows a process the local ``state``
                # may not have seen yet.
                _stop_recorded(directory, load_state(directory) or state, handles)
                directory.remove_run(keep_logs=True)
                raise
        elapsed = time.monotonic() - started
        log.info("control plane ready at %s in %.1fs", state.server, elapsed)
        return cls(directory, state, handles, startup_seconds=elapsed)

    @classmethod
    def attach(cls, state_dir: Path | str = DEFAULT_STATE_DIR) -> Cluster:
        """The cluster running from ``state_dir`` (started by the CLI or another process)."""
        directory = StateDir(Path(state_dir).resolve())
        state = load_state(directory)
        if assess(state, processes.is_alive) is not Liveness.RUNNING or state is None:
            raise ClusterNotRunningError(
                f"no control plane is running from {directory.root}; start one with "
                f"`batchcert-dev cluster up --state-dir {directory.root}`"
            )
        return cls(directory, state)

    def down(self) -> None:
        """Stop both servers and remove the run's files (logs stay for a post-mortem)."""
        with self._dir.locked():
            _stop_recorded(self._dir, self._state, self._handles)
            self._dir.remove_run(keep_logs=True)
        self._handles.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()


def down(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    """Stop the cluster recorded in ``state_dir``; False if nothing was running (not an error)."""
    directory = StateDir(Path(state_dir).resolve())
    if not directory.state_file.exists():
        return False
    with directory.locked():
        state = load_state(directory)
        if state is None:
            # Not (or no longer) a cluster's dir: touch nothing, it may hold someone else's files.
            return False
        liveness = assess(state, processes.is_alive)
        _stop_recorded(directory, state, {})
        directory.remove_run(keep_logs=True)
    return liveness in (Liveness.RUNNING, Liveness.PARTIAL)


@dataclass(frozen=True)
class ClusterStatus:
    state_dir: Path
    liveness: Liveness
    state: ClusterState | None
    ready: bool  # /readyz answered OK just now
    alive: list[ProcessRecord]  # the recorded processes that still run

    @property
    def kubeconfig(self) -> Path:
        return StateDir(self.state_dir).kubeconfig


def status(state_dir: Path | str = DEFAULT_STATE_DIR) -> ClusterStatus:
    directory = StateDir(Path(state_dir).resolve())
    state = load_state(directory)
    liveness = assess(state, processes.is_alive)
    ready = False
    if liveness is Liveness.RUNNING and state is not None and state.apiserver_port is not None:
        ready = _probe_apiserver(_admin_client(directory, state.apiserver_port), "/readyz")
    alive = [] if state is None else [p for p in state.processes() if processes.is_alive(p)]
    return ClusterStatus(directory.root, liveness, state, ready, alive)


def _clear_previous_run(directory: StateDir) -> None:
    state = load_state(directory)
    liveness = assess(state, processes.is_alive)
    if state is None or liveness is Liveness.ABSENT:
        return
    if liveness is Liveness.RUNNING:
        raise ClusterAlreadyRunningError(
            f"a control plane is already running from {directory.root} (kube-apiserver at "
            f"{state.server}); use {directory.kubeconfig}, or stop it first with "
            f"`batchcert-dev cluster down --state-dir {directory.root}`"
        )
    if liveness is Liveness.PARTIAL:
        survivors = ", ".join(
            f"{r.name} pid {r.pid}" for r in state.processes() if processes.is_alive(r)
        )
        log.warning(
            "%s holds a half-running control plane from an earlier run (%s alive); stopping it",
            directory.root,
            survivors,
        )
        _stop_recorded(directory, state, {})
    else:
        log.warning(
            "cleaning up %s: its earlier run was killed (none of its processes is running)",
            directory.root,
        )


def _start_etcd(
    directory: StateDir,
    binaries: ControlPlaneBinaries,
    state: ClusterState,
    handles: Handles,
    requested_port: int | None,
    die_with_parent: bool,
) -> ClusterState:
    for attempt in range(1, PORT_ATTEMPTS + 1):
        client = requested_port or processes.allocate_port()
        peer = _another_port(client)
        _refuse_taken_port("etcd", client, directory.etcd_log, requested_port)
        ports = EtcdPorts(client=client, peer=peer)
        # A failed attempt may have bootstrapped the data dir with other peer URLs.
        shutil.rmtree(directory.etcd_data, ignore_errors=True)
        directory.etcd_data.mkdir(parents=True, mode=0o700)  # etcd warns about anything wider
        proc, record = processes.start_detached(
            "etcd",
            build_etcd_args(binaries.etcd, directory.etcd_data, ports),
            directory.etcd_log,
            die_with_parent=die_with_parent,
        )
        handles["etcd"] = proc
        state = state.with_changes(etcd_ports=ports, etcd=record)
        save_state(directory, state)
        try:
            _wait_until_ready(
                record,
                proc,
                directory.etcd_log,
                partial(_etcd_is_healthy, ports),
                ETCD_READY_TIMEOUT,
            )
            log.info("etcd %s ready on 127.0.0.1:%d", binaries.versions.etcd, client)
            return state
        except PortInUseError:
            if requested_port is not None or attempt == PORT_ATTEMPTS:
                raise
            log.info("etcd lost a port race (%d/%d); retrying on fresh ports", client, peer)
            processes.stop_process(record, handle=handles.pop("etcd"))
            state = state.with_changes(etcd=None)
            save_state(directory, state)
    raise AssertionError("unreachable")


def _start_kube_apiserver(
    directory: StateDir,
    binaries: ControlPlaneBinaries,
    pki: PkiPaths,
    state: ClusterState,
    handles: Handles,
    requested_port: int | None,
    die_with_parent: bool,
    timeout: float,
) -> ClusterState:
    log_path = directory.kube_apiserver_log
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = requested_port or _another_port(*state.ports())
        _refuse_taken_port("kube-apiserver", port, log_path, requested_port)
        proc, record = processes.start_detached(
            "kube-apiserver",
            build_kube_apiserver_args(
                binaries.kube_apiserver, port, etcd_client_url(state.etcd_ports), pki
            ),
            log_path,
            die_with_parent=die_with_parent,
        )
        handles["kube-apiserver"] = proc
        state = state.with_changes(apiserver_port=port, kube_apiserver=record)
        save_state(directory, state)
        client = _admin_client(directory, port)
        try:
            _wait_until_ready(record, proc, log_path, partial(_apiserver_is_ready, client), timeout)
            log.info("kube-apiserver %s ready on 127.0.0.1:%d", binaries.versions.kubernetes, port)
            return state
        except PortInUseError:
            if requested_port is not None or attempt == PORT_ATTEMPTS:
                raise
            log.info("kube-apiserver lost a port race (%d); retrying on a fresh port", port)
            processes.stop_process(record, handle=handles.pop("kube-apiserver"))
            state = state.with_changes(kube_apiserver=None, apiserver_port=None)
            save_state(directory, state)
    raise AssertionError("unreachable")


def allow_issuer_discovery(client: AdminClient) -> None:
    """Let anyone read the service-account issuer's discovery document and keys, as a relying
    party must (Kubernetes binds ``system:service-account-issuer-discovery`` only to service
    accounts by default; AKS publishes them anonymously)."""
    client.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "batchcert-dev:service-account-issuer-discovery"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:service-account-issuer-discovery",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "system:unauthenticated",
                }
            ],
        },
    )


def _another_port(*taken: int) -> int:
    """A free port distinct from ``taken`` (the kernel may hand the same one out twice)."""
    while True:
        port = processes.allocate_port()
        if port not in taken:
            return port


def _refuse_taken_port(name: str, port: int, log_path: Path, requested: int | None) -> None:
    # Only a requested port is checked up front: a chosen one was free a moment ago, and a lost
    # race shows up as the process exiting with "address already in use", which is retried.
    if requested is not None and processes.is_listening(port):
        raise PortInUseError(
            f"{name} cannot start: port {port} on 127.0.0.1 is already in use by another "
            f"process (see `ss -ltnp 'sport = :{port}'`); its log would be {log_path}"
        )


def _wait_until_ready(
    record: ProcessRecord,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    is_ready: Callable[[], bool],
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path)
            if "address already in use" in tail:
                raise PortInUseError(
                    f"{record.name} exited at start: a port it needs is already in use; "
                    f"read {log_path}. Last lines:\n{_indent(tail)}"
                )
            raise ClusterStartError(
                f"{record.name} exited with code {code} during start; read {log_path}. "
                f"Last lines:\n{_indent(tail)}"
            )
        if is_ready():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClusterStartError(
                f"{record.name} (pid {record.pid}) did not become ready within {timeout:.0f}s; "
                f"read {log_path}. Last lines:\n{_indent(_log_tail(log_path))}"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.5)


def _etcd_is_healthy(ports: EtcdPorts) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", ports.client, timeout=2.0)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status == 200 and b'"true"' in response.read()
    except OSError:
        return False
    finally:
        conn.close()


def _apiserver_is_ready(client: AdminClient) -> bool:
    """``/readyz`` is OK *and* the ``default`` namespace exists (created by a post-start hook)."""
    return _probe_apiserver(client, "/readyz") and _probe_apiserver(
        client, "/api/v1/namespaces/default"
    )


def _probe_apiserver(client: AdminClient, path: str) -> bool:
    try:
        return client.get(path).status == 200
    except (OSError, http.client.HTTPException):
        return False


def _admin_client(directory: StateDir, port: int) -> AdminClient:
    pki = PkiPaths.in_directory(directory.pki)
    return AdminClient(port, pki.ca_cert, pki.admin_cert, pki.admin_key)


def _stop_recorded(directory: StateDir, state: ClusterState, handles: Handles) -> None:
    """Stop every recorded process (API server first), then check no process or port survived."""
    stopped: list[tuple[ProcessRecord, list[int]]] = []
    for record in state.processes():
        was_alive = processes.is_alive(record)
        processes.stop_process(record, handle=handles.pop(record.name, None))
        if was_alive:
            ports = (
                [state.apiserver_port or 0]
                if record.name == "kube-apiserver"
                else [state.etcd_ports.client, state.etcd_ports.peer]
            )
            stopped.append((record, ports))
    # Kept until everything is stopped so an error below still finds the pids to clean up.
    for record, ports in stopped:
        for port in ports:
            if port and processes.is_listening(port):
                raise ClusterStopError(
                    f"port {port} of {record.name} is still open after stopping pid {record.pid}; "
                    f"see `ss -ltnp 'sport = :{port}'` (state: {directory.state_file})"
                )
        log.info("stopped %s (pid %d)", record.name, record.pid)


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
