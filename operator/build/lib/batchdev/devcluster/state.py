"""The state dir of one dev cluster: its layout, ``state.json``, and whether a recorded run lives.

Layout of ``DIR`` (default ``.state/cluster``)::

    state.json           pids, start times, ports, versions (written before anything waits)
    kubeconfig           admin (O=system:masters), CA, certificate and key embedded
    pki/                 CA, serving, admin and ServiceAccount-signing keys
    etcd-data/           etcd's throwaway data dir
    etcd.log, kube-apiserver.log
    .lock                held while ``up`` or ``down`` works on the dir

Invariants:

* A process is recorded in ``state.json`` right after it is spawned, before any readiness wait, so
  a run killed at any point leaves enough behind to find and stop what it started.
* Cleaning a state dir removes only the entries listed here, never the dir itself or anything
  else in it: ``--state-dir`` may point somewhere the user keeps other files.
* ``assess`` is pure: it takes the liveness check as an argument.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchdev.devcluster.errors import DevClusterError
from batchdev.devcluster.flags import LOOPBACK, EtcdPorts
from batchdev.devcluster.processes import ProcessRecord

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StateDir:
    """The paths inside one state dir."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def etcd_log(self) -> Path:
        return self.root / "etcd.log"

    @property
    def kube_apiserver_log(self) -> Path:
        return self.root / "kube-apiserver.log"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def log_for(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def remove_run(self, *, keep_logs: bool) -> None:
        """Remove what a run left behind; logs stay for a post-mortem unless told otherwise."""
        for directory in (self.pki, self.etcd_data):
            shutil.rmtree(directory, ignore_errors=True)
        entries = [self.state_file, self.kubeconfig]
        if not keep_logs:
            entries += [self.etcd_log, self.kube_apiserver_log]
        for path in entries:
            path.unlink(missing_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the dir for one ``up``/``down``; a second one is refused, not queued."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DevClusterError(
                    f"another `batchcert-dev cluster up/down` is working on {self.root} right now"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ClusterState:
    """What ``state.json`` records about one run."""

    kubernetes_version: str
    etcd_version: str
    etcd_ports: EtcdPorts
    apiserver_port: int | None = None
    etcd: ProcessRecord | None = None
    kube_apiserver: ProcessRecord | None = None
    ready: bool = False

    @property
    def server(self) -> str | None:
        return None if self.apiserver_port is None else f"https://{LOOPBACK}:{self.apiserver_port}"

    def processes(self) -> list[ProcessRecord]:
        """Recorded processes, the API server first: it is stopped before its storage."""
        return [p for p in (self.kube_apiserver, self.etcd) if p is not None]

    def ports(self) -> list[int]:
        ports = [self.etcd_ports.client, self.etcd_ports.peer]
        return ports if self.apiserver_port is None else [self.apiserver_port, *ports]

    def with_changes(self, **changes: Any) -> ClusterState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        def process(record: ProcessRecord | None) -> dict[str, Any] | None:
            if record is None:
                return None
            return {"name": record.name, "pid": record.pid, "startTime": record.start_time}

        return {
            "schemaVersion": SCHEMA_VERSION,
            "kubernetesVersion": self.kubernetes_version,
            "etcdVersion": self.etcd_version,
            "ports": {
                "etcdClient": self.etcd_ports.client,
                "etcdPeer": self.etcd_ports.peer,
                "kubeApiserver": self.apiserver_port,
            },
            "processes": {
                "etcd": process(self.etcd),
                "kubeApiserver": process(self.kube_apiserver),
            },
            "ready": self.ready,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        def process(raw: dict[str, Any] | None) -> ProcessRecord | None:
            if raw is None:
                return None
            start = raw.get("startTime")
            start_time = None if start is None else int(start)
            return ProcessRecord(str(raw["name"]), int(raw["pid"]), start_time)

        if data.get("schemaVersion") != SCHEMA_VERSION:
            raise ValueError(f"unknown state schema {data.get('schemaVersion')!r}")
        ports = data["ports"]
        api_port = ports.get("kubeApiserver")
        return cls(
            kubernetes_version=str(data["kubernetesVersion"]),
            etcd_version=str(data["etcdVersion"]),
            etcd_ports=EtcdPorts(client=int(ports["etcdClient"]), peer=int(ports["etcdPeer"])),
            apiserver_port=None if api_port is None else int(api_port),
            etcd=process(data["processes"].get("etcd")),
            kube_apiserver=process(data["processes"].get("kubeApiserver")),
            ready=bool(data.get("ready", False)),
        )


def load_state(state_dir: StateDir) -> ClusterState | None:
    """The recorded state, or None if there is none; an unreadable file is an error to report."""
    try:
        text = state_dir.state_file.read_text()
    except FileNotFoundError:
        return None
    try:
        return ClusterState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise DevClusterError(
            f"{state_dir.state_file} is not a dev-cluster state file ({exc}); if no cluster runs "
            f"from {state_dir.root}, delete that file"
        ) from exc


def save_state(state_dir: StateDir, state: ClusterState) -> None:
    """Write ``state.json`` atomically: a reader never sees half a file."""
    state_dir.root.mkdir(parents=True, exist_ok=True)
    tmp = state_dir.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, state_dir.state_file)


class Liveness(enum.Enum):
    """What a state dir's recorded run amounts to now."""

    ABSENT = "absent"  # nothing recorded
    RUNNING = "running"  # both servers recorded and alive
    PARTIAL = "partial"  # some recorded server alive, some dead or never started
    STALE = "stale"  # recorded, but nothing alive: a killed run, a reboot


def assess(state: ClusterState | None, is_alive: Callable[[ProcessRecord], bool]) -> Liveness:
    if state is None:
        return Liveness.ABSENT
    alive = [record for record in state.processes() if is_alive(record)]
    if not alive:
        return Liveness.STALE
    complete = state.etcd is not None and state.kube_apiserver is not None
    return Liveness.RUNNING if complete and len(alive) == 2 else Liveness.PARTIAL
