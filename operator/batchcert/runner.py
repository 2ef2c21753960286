"""``batchcert run``: start the operator (a thin wrapper over kopf with the project's settings).

Process-level concerns live here and nowhere else: the kubeconfig, log format, the C allocator
(``batchcert.allocator``: TLS buffers tuned at start, the heap trimmed while running unless
``BATCHCERT_MALLOC_TRIM=false``; glibc itself is tuned by the environment), the liveness
endpoint kopf serves, and the Prometheus endpoint (``batchcert.metrics``). The metrics endpoint is
off unless ``--metrics-port`` is given, so several operators on one machine (tests, the demo)
never fight over a port; the Deployment in ``deploy/`` turns it on.

A debugging aid, off unless ``BATCHCERT_DEBUG_DUMP_DIR`` names a directory: on ``SIGUSR1`` the
process writes ``memory-<n>.json`` there (RSS, object counts by type after a full collection,
glibc's heap in use and free, CPython's arenas and their live blocks)
and, when tracemalloc traces (``PYTHONTRACEMALLOC=N``), ``memory-<n>.tracemalloc`` (a snapshot).
``benchmarks/memory_probe.py`` uses it to break the memory per owned object down.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchcert.config import Config


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator",
        description="Run the BatchCertPool operator against the current kubeconfig/cluster.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--cloud-file",
        help="JSON description of a custom Azure cloud (overrides BATCHCERT_CLOUD_FILE)",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig to use (default: in-cluster or KUBECONFIG)"
    )
    _add_replica_arguments(parser)
    _add_output_arguments(parser)
    parser.set_defaults(func=run)


def _add_replica_arguments(parser: argparse.ArgumentParser) -> None:
    """High availability (kopf peering) and shards."""
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas coordinated by kopf's peering object NAME "
        "(a KopfPeering in the watched namespace, or a ClusterKopfPeering cluster-wide; "
        "CRDs in crds/kopf-peering.yaml); without it the operator assumes it is alone",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="with --peering: the live replica with the highest priority acts, the others wait "
        "(default: random, so identical replicas of a Deployment get distinct priorities; kopf "
        "pauses every replica whose priority equals another's)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split the BatchCertPools into this many shards by a hash of their uid, one "
        "operator Deployment per shard (default 1: this operator owns every object)",
    )
    parser.add_argument(
        "--shard", type=int, default=0, help="with --shards: this operator's shard, 0..N-1"
    )
    parser.add_argument(
        "--previous-shards",
        type=int,
        default=None,
        help="while changing the shard count (the first of two rolls; docs/operating.md): the "
        "count before, so an object is acted on only by a shard that owns it under both",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The log, metrics and liveness."""
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text (default) or one JSON object per line, with the object's reference",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on this port at /metrics (0, the default: off)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )


def configure_logging(args: argparse.Namespace) -> None:
    import logging

    import kopf

    if args.log_format == "json":
        # kopf's own JSON formatter: adds the object reference (namespace/name/uid) to each line.
        kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    else:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    quiet = ["azure.core.pipeline.policies.http_logging_policy", "azure.identity"]
    if not args.verbose:
        quiet.append("kopf.objects")  # kopf's per-object handler lines otherwise
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve_metrics(port: int, config: Config) -> None:
    from batchcert.metrics import keep_series_for, serve

    serve(port)
    # An object's turns come at least every resync interval (the shortest of drift, cert and
    # node): its series must outlive that gap; a paused replica forgets them at once.
    keep_series_for(
        min(
            config.drift_interval_seconds,
            config.cert_interval_seconds,
            config.node_interval_seconds,
        )
    )


def _log_start(args: argparse.Namespace, config: Config, shard: Any, peering: str | None) -> None:
    from batchcert import __version__
    from batchcert.oplog import log_start

    namespaces = args.namespace or None
    log_start(
        version=__version__,
        namespaces=",".join(namespaces) if namespaces else "all",
        shard=f"{shard.index}/{shard.count}" if shard.count > 1 else "-",
        peering=peering or "-",
        metrics_port=args.metrics_port or "off",
        liveness=args.liveness or "off",
        cloud=config.cloud.name,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import random

    import kopf

    from batchcert import allocator
    from batchcert.config import load_cloud_file, load_config
    from batchcert.handlers import register_handlers
    from batchcert.reconcile.sharding import ShardAssignment, peering_name

    allocator.tune()  # TLS read buffers of every connection made from now on: see allocator.py
    config = load_config()
    if os.environ.get("BATCHCERT_DEBUG_DUMP_DIR"):
        install_memory_dump(os.environ["BATCHCERT_DEBUG_DUMP_DIR"])
    if args.cloud_file:
        config = config.with_cloud(load_cloud_file(args.cloud_file))
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    configure_logging(args)

    if args.metrics_port:
        serve_metrics(args.metrics_port, config)
    shard = ShardAssignment(args.shard, args.shards, args.previous_shards)
    peering = peering_name(args.peering, shard) if args.peering else None
    registry = kopf.OperatorRegistry()
    priority = args.priority
    if priority is None:
        priority = random.SystemRandom().randint(1, 1_000_000) if peering else 0
    register_handlers(registry, config, peering=peering, priority=priority, shard=shard)
    namespaces = args.namespace or None
    _log_start(args, config, shard, peering)

    async def operate() -> None:
        trimmer = asyncio.ensure_future(
            allocator.trim_periodically() if config.malloc_trim else asyncio.sleep(0)
        )
        try:
            await kopf.operator(
                registry=registry,
                clusterwide=namespaces is None,
                namespaces=namespaces or (),
                standalone=peering is None,
                peering_name=peering,
                priority=priority,
                liveness_endpoint=args.liveness,
            )
        finally:
            trimmer.cancel()

    asyncio.run(operate())
    return 0


def _pymalloc_info(path: Any) -> dict[str, int]:
    """CPython's small-object allocator: arenas held vs bytes in live blocks (its own report,
    which it prints to the C-level stderr, so fd 2 is pointed at ``path`` meanwhile)."""
    import os
    import re
    import sys

    saved = os.dup(2)
    try:
        with open(path, "w") as sink:
            os.dup2(sink.fileno(), 2)
            sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = path.read_text()
    wanted = {
        "arenas": r"# arenas allocated current\s*=\s*([\d,]+)",
        "arena_bytes": r"arenas \* \d+ bytes/arena\s*=\s*([\d,]+)",
        "allocated_block_bytes": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
        "available_block_bytes": r"# bytes in available blocks\s*=\s*([\d,]+)",
        "empty_pool_bytes": r"unused pools \* \d+ bytes\s*=\s*([\d,]+)",
    }
    found = {k: re.search(pattern, text) for k, pattern in wanted.items()}
    return {k: int(m.group(1).replace(",", "")) for k, m in found.items() if m}


def install_memory_dump(directory: str) -> None:
    """On SIGUSR1, write what the process holds into ``directory`` (see the module docstring)."""
    import collections
    import gc
    import json
    import signal
    import tracemalloc
    from pathlib import Path

    from batchcert import allocator

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    dumps = iter(range(1_000_000))

    def dump(*_: Any) -> None:
        n = next(dumps)
        gc.collect()
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        rss = allocator.resident_bytes()
        rollup = Path("/proc/self/smaps_rollup")
        smaps = {
            line.split(":")[0]: int(line.split()[1]) * 1024
            for line in (rollup.read_text().splitlines()[1:] if rollup.exists() else [])
            if line.split()[1:2] and line.split()[1].isdigit()
        }
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(out / f"memory-{n}.tracemalloc"))
        report = {
            "rss_bytes": rss,
            "traced_bytes": tracemalloc.get_traced_memory()[0]
            if tracemalloc.is_tracing()
            else None,
            "gc_objects": sum(types.values()),
            "smaps": {k: smaps[k] for k in ("Anonymous", "Rss") if k in smaps},
            "malloc": allocator.info(),
            "pymalloc": _pymalloc_info(out / f"pymalloc-{n}.txt"),
            "types": dict(types.most_common(60)),
        }
        (out / f"memory-{n}.json.tmp").write_text(json.dumps(report, indent=1))
        (out / f"memory-{n}.json.tmp").rename(out / f"memory-{n}.json")

    signal.signal(signal.SIGUSR1, dump)
