"""Pure builders of the etcd and kube-apiserver command lines (what envtest does, plus one flag).

Invariants: every listener is bound to 127.0.0.1 on a port given here (no default port such as
etcd's 2379/2380 is ever used, so two clusters never collide); every path is absolute so the
processes do not depend on their working directory. The functions do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchdev.devcluster.pki import PkiPaths

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


def service_account_issuer(port: int) -> str:
    """The API server itself: it serves ``/.well-known/openid-configuration`` and
    ``/openid/v1/jwks`` there, so a relying party (Entra, or the Azure simulator standing in for
    it) verifies service-account tokens by discovery from ``iss``, as Entra does for AKS."""
    return f"https://{LOOPBACK}:{port}"


@dataclass(frozen=True)
class EtcdPorts:
    client: int
    peer: int


def etcd_client_url(ports: EtcdPorts) -> str:
    return f"http://{LOOPBACK}:{ports.client}"


def build_etcd_args(etcd: Path, data_dir: Path, ports: EtcdPorts) -> list[str]:
    """etcd as a single throwaway member: loopback only, no fsync (tests never need durability)."""
    client = etcd_client_url(ports)
    peer = f"http://{LOOPBACK}:{ports.peer}"
    return [
        str(etcd),
        "--name=batchcert-dev",
        f"--data-dir={data_dir.resolve()}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=batchcert-dev={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def build_kube_apiserver_args(
    kube_apiserver: Path, port: int, etcd_url: str, pki: PkiPaths
) -> list[str]:
    """kube-apiserver with RBAC, client-certificate and ServiceAccount-token authentication.

    ``--advertise-address`` is required on a machine without a default route (it otherwise fails
    to pick one and exits). Kubernetes 1.37 refuses a loopback advertise address for the endpoint
    reconciler (which publishes the ``kubernetes`` Service's endpoints for pods; no pod runs
    here), hence ``--endpoint-reconciler-type=none``; older releases accept it too, so every
    supported release (1.30-1.37) gets the same command line. The ServiceAccount admission plugin
    is disabled because it would wait for the token controller of a controller-manager that does
    not run here.
    """
    return [
        str(kube_apiserver),
        f"--advertise-address={LOOPBACK}",
        "--endpoint-reconciler-type=none",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving_cert.resolve()}",
        f"--tls-private-key-file={pki.serving_key.resolve()}",
        f"--client-ca-file={pki.ca_cert.resolve()}",
        f"--etcd-servers={etcd_url}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={service_account_issuer(port)}",
        f"--service-account-jwks-uri={service_account_issuer(port)}/openid/v1/jwks",
        f"--service-account-key-file={pki.service_account_public_key.resolve()}",
        f"--service-account-signing-key-file={pki.service_account_private_key.resolve()}",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
    ]
