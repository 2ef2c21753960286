"""``batchcert-dev cluster build|up|down|status|kubeconfig``: the local control plane from a shell.

Light at import time (``batchcert --help`` imports every subcommand module): the cluster machinery,
and with it ``cryptography``, is imported only when a subcommand runs. Every ``DevClusterError`` is
printed as one ``error: ...`` message and exits 1; no traceback for a failure we understand.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = ".state/cluster"


def parse_duration(text: str) -> int:
    """``"3600"``, ``"90s"``, ``"30m"``, ``"24h"`` → seconds."""
    match = re.fullmatch(r"(\d+)([smh]?)", text.strip())
    if match is None or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration like 3600, 90s, 30m or 24h: {text!r}")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def add_parser(subparsers: Any) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="a real local Kubernetes control plane (etcd + kube-apiserver)",
        description="Build, start and stop a real etcd + kube-apiserver on 127.0.0.1.",
    )
    actions = cluster.add_subparsers(dest="cluster_action", required=True, metavar="ACTION")

    def kubernetes_version_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--kubernetes-version",
            metavar="vX.Y.Z",
            help="the kube-apiserver release (default: $BATCHCERT_KUBERNETES_VERSION, else the "
            "pinned one); another release's Go modules are generated into the cache",
        )

    build = actions.add_parser(
        "build", help="build etcd and kube-apiserver (the pinned release by default) into the cache"
    )
    kubernetes_version_option(build)
    build.add_argument("--force", action="store_true", help="rebuild even if already built")
    build.set_defaults(func=_handler(_build))

    def state_dir_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=Path(DEFAULT_STATE_DIR),
            metavar="DIR",
            help=f"pids, ports, certificates, logs, kubeconfig (default {DEFAULT_STATE_DIR})",
        )

    up = actions.add_parser(
        "up", help="start etcd + kube-apiserver, wait until ready, write DIR/kubeconfig"
    )
    state_dir_option(up)
    kubernetes_version_option(up)
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)"
    )
    up.add_argument("--apiserver-port", type=int, help="a fixed API server port (default: free)")
    up.set_defaults(func=_handler(_up))

    down = actions.add_parser("down", help="stop the control plane and remove its state")
    state_dir_option(down)
    down.set_defaults(func=_handler(_down))

    status = actions.add_parser(
        "status", help="whether the control plane runs and is ready (exit 0) or not (exit 1)"
    )
    state_dir_option(status)
    status.set_defaults(func=_handler(_status))

    kubeconfig = actions.add_parser(
        "kubeconfig",
        help="write a kubeconfig for an unprivileged ServiceAccount (token via TokenRequest)",
    )
    state_dir_option(kubeconfig)
    kubeconfig.add_argument(
        "--serviceaccount",
        required=True,
        metavar="NS/NAME",
        help="created with its namespace if missing; it gets no RBAC from this command",
    )
    kubeconfig.add_argument("--out", required=True, type=Path, metavar="FILE")
    kubeconfig.add_argument(
        "--duration",
        type=parse_duration,
        default=24 * 3600,
        help="token lifetime, e.g. 3600, 90m, 24h (default 24h)",
    )
    kubeconfig.set_defaults(func=_handler(_kubeconfig))


def _handler(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from batchdev.devcluster.errors import DevClusterError

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return action(args)
        except DevClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _kubernetes_version(args: argparse.Namespace) -> str | None:
    from batchdev.devcluster.binaries import parse_kubernetes_version

    version: str | None = args.kubernetes_version
    return parse_kubernetes_version(version) if version else None


def _build(args: argparse.Namespace) -> int:
    from batchdev.devcluster.binaries import build_binaries

    binaries = build_binaries(_kubernetes_version(args), force=args.force)
    print(binaries.directory)
    return 0


def _up(args: argparse.Namespace) -> int:
    from batchdev.devcluster.cluster import Cluster

    cluster = Cluster.up(
        args.state_dir,
        build_if_missing=True,
        kubernetes_version=_kubernetes_version(args),
        apiserver_port=args.apiserver_port,
        die_with_parent=False,  # the servers must outlive this command
        timeout=args.timeout,
    )
    print(
        f"Kubernetes {cluster.kubernetes_version} ready at {cluster.server} "
        f"in {cluster.startup_seconds:.1f}s\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  stop it with: batchcert-dev cluster down --state-dir {args.state_dir}"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    from batchdev.devcluster.cluster import down

    stopped = down(args.state_dir)
    print("stopped" if stopped else f"no control plane was running from {args.state_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from batchdev.devcluster.cluster import status
    from batchdev.devcluster.state import Liveness

    report = status(args.state_dir)
    state = report.state
    if report.liveness is Liveness.PARTIAL and state is not None:
        alive = ", ".join(f"{p.name} pid {p.pid}" for p in report.alive)
        print(
            f"partial: only {alive} still runs from {report.state_dir}; "
            "`down` stops it, `up` cleans it up and starts afresh"
        )
        return 1
    if report.liveness is not Liveness.RUNNING or state is None:
        print(f"{report.liveness.value}: no control plane is running from {report.state_dir}")
        return 1
    pids = ", ".join(f"{p.name} pid {p.pid}" for p in state.processes())
    print(
        f"{'ready' if report.ready else 'running, not ready'}: Kubernetes "
        f"{state.kubernetes_version} at {state.server} ({pids}; etcd on 127.0.0.1:"
        f"{state.etcd_ports.client})\n  kubeconfig: {report.kubeconfig}"
    )
    return 0 if report.ready else 1


def _kubeconfig(args: argparse.Namespace) -> int:
    from batchdev.devcluster.cluster import Cluster
    from batchdev.devcluster.identity import parse_serviceaccount_ref, serviceaccount_username

    namespace, name = parse_serviceaccount_ref(args.serviceaccount)
    path = Cluster.attach(args.state_dir).write_serviceaccount_kubeconfig(
        namespace, name, args.out, seconds=args.duration
    )
    print(f"{path}: {serviceaccount_username(namespace, name)} (token for {args.duration}s)")
    return 0
