"""The etcd and kube-apiserver command lines: loopback only, given ports, the flags this machine needs.

Covers: every listener bound to 127.0.0.1 on the ports passed in (never etcd's default
2379/2380), no-fsync storage, absolute paths, and the kube-apiserver flags control-plane.md
requires (RBAC, client CA, ServiceAccount keys and issuer, loopback advertise address, the
ServiceAccount admission plugin off).
"""

from __future__ import annotations

from pathlib import Path

from batchdev.devcluster.flags import (
    EtcdPorts,
    build_etcd_args,
    build_kube_apiserver_args,
    etcd_client_url,
)
from batchdev.devcluster.pki import PkiPaths


def as_flags(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv[1:])


def test_etcd_listens_only_on_the_given_loopback_ports() -> None:
    argv = build_etcd_args(Path("/bin/etcd"), Path("/state/etcd-data"), EtcdPorts(41001, 41002))
    flags = as_flags(argv)

    assert argv[0] == "/bin/etcd"
    assert flags["listen-client-urls"] == "http://127.0.0.1:41001"
    assert flags["advertise-client-urls"] == "http://127.0.0.1:41001"
    assert flags["listen-peer-urls"] == "http://127.0.0.1:41002"
    assert flags["initial-cluster"] == "batchcert-dev=http://127.0.0.1:41002"
    assert not any(":2379" in arg or ":2380" in arg for arg in argv)


def test_etcd_is_a_throwaway_member_without_fsync() -> None:
    flags = as_flags(build_etcd_args(Path("/e"), Path("/state/etcd-data"), EtcdPorts(1, 2)))

    assert flags["unsafe-no-fsync"] == "true"
    assert flags["data-dir"] == "/state/etcd-data"
    assert flags["initial-cluster-state"] == "new"


def test_kube_apiserver_flags_follow_control_plane_md() -> None:
    pki = PkiPaths.in_directory(Path("/state/pki"))
    argv = build_kube_apiserver_args(
        Path("/bin/kube-apiserver"), 42000, "http://127.0.0.1:41001", pki
    )
    flags = as_flags(argv)

    assert flags["advertise-address"] == "127.0.0.1"
    assert flags["bind-address"] == "127.0.0.1"
    assert flags["secure-port"] == "42000"
    assert flags["etcd-servers"] == "http://127.0.0.1:41001"
    assert flags["authorization-mode"] == "RBAC"
    assert flags["client-ca-file"] == "/state/pki/ca.crt"
    assert flags["service-account-key-file"] == "/state/pki/sa.pub"
    assert flags["service-account-signing-key-file"] == "/state/pki/sa.key"
    # The issuer is the API server itself, so its discovery document and keys are reachable.
    assert flags["service-account-issuer"] == "https://127.0.0.1:42000"
    assert flags["service-account-jwks-uri"] == "https://127.0.0.1:42000/openid/v1/jwks"
    assert flags["disable-admission-plugins"] == "ServiceAccount"
    assert flags["service-cluster-ip-range"] == "10.0.0.0/24"
    # 1.37 refuses a loopback advertise address for the endpoint reconciler.
    assert flags["endpoint-reconciler-type"] == "none"


def test_paths_are_absolute_whatever_the_working_directory() -> None:
    pki = PkiPaths.in_directory(Path("relative/pki"))
    argv = build_kube_apiserver_args(Path("/k"), 1, "http://127.0.0.1:2", pki)
    etcd = build_etcd_args(Path("/e"), Path("relative/etcd-data"), EtcdPorts(1, 2))

    for arg in [*argv, *etcd]:
        if "relative" in arg:
            assert arg.split("=", 1)[1].startswith("/"), arg


def test_etcd_client_url() -> None:
    assert etcd_client_url(EtcdPorts(5, 6)) == "http://127.0.0.1:5"
