"""The real local control plane as tests use it: kubectl, CRDs, unprivileged identities.

``running_kube_cluster(state_dir)`` brings etcd + kube-apiserver up (``batchdev.devcluster``),
installs every YAML in ``crds/`` and waits until those CRDs are Established, yields a
``KubeCluster``, and always brings the control plane down again, whatever the test did. The
servers are also tied to the test process (``die_with_parent``), so even a killed pytest leaves
no control plane behind.

kubectl is ``/usr/bin/kubectl`` (the machine's); every call has a timeout so a wedged call fails
a test instead of hanging the run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchdev.devcluster.cluster import Cluster
from batchdev.devcluster.identity import parse_serviceaccount_ref
from batchdev.devcluster.processes import read_proc_stat

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
KUBECTL = "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else "kubectl"
KUBECTL_TIMEOUT = 60.0


class KubeCluster:
    """A running control plane plus the helpers tests need around it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._identities: dict[str, Path] = {}
        self._identity_dir = cluster.state_dir / "identities"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``O=system:masters``)."""
        return self.cluster.kubeconfig

    @property
    def server(self) -> str:
        return self.cluster.server

    @property
    def kubernetes_version(self) -> str:
        return self.cluster.kubernetes_version

    def serviceaccount_kubeconfig(self, ref: str) -> Path:
        """A token kubeconfig for ServiceAccount ``"NS/NAME"`` (created with its namespace if
        missing, with no RBAC granted here)."""
        if ref not in self._identities:
            namespace, name = parse_serviceaccount_ref(ref)
            out = self._identity_dir / f"{namespace}.{name}.kubeconfig"
            self._identities[ref] = self.cluster.write_serviceaccount_kubeconfig(
                namespace, name, out
            )
        return self._identities[ref]

    def kubectl(
        self,
        *args: str,
        as_: str | None = None,
        input: str | None = None,
        check: bool = False,
        timeout: float = KUBECTL_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin, or as ServiceAccount ``as_="NS/NAME"``; text output."""
        kubeconfig = self.kubeconfig if as_ is None else self.serviceaccount_kubeconfig(as_)
        result = subprocess.run(
            [KUBECTL, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def apply(self, manifest: str, *, as_: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of a YAML text; fails the test if the server refuses it."""
        return self.kubectl("apply", "-f", "-", as_=as_, input=manifest, check=True)

    def install_crds(self, directory: Path = CRD_DIR) -> list[str]:
        """Apply every ``*.yaml``/``*.yml`` in ``directory`` and wait until its CRDs serve."""
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        crds: list[str] = []
        for path in files:
            applied = self.kubectl("apply", "-o", "name", "-f", str(path), check=True)
            crds += [n for n in applied.stdout.split() if n.startswith("customresourcedefinition")]
        if crds:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds, check=True)
        return crds


@contextmanager
def running_kube_cluster(state_dir: Path, crd_dir: Path = CRD_DIR) -> Iterator[KubeCluster]:
    """Up, install CRDs, yield, and down, even when the body fails."""
    cluster = Cluster.up(state_dir)
    try:
        kube = KubeCluster(cluster)
        kube.install_crds(crd_dir)
        yield kube
    finally:
        cluster.down()


def live_processes_mentioning(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``text``.

    A state dir's path appears in its etcd's and kube-apiserver's arguments, so this finds any
    server a test failed to stop, even one no state file remembers.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        stat = read_proc_stat(int(entry.name))
        if text in cmdline and stat is not None and stat.state not in ("Z", "X"):
            found.append(int(entry.name))
    return found
