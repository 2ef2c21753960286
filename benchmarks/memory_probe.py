"""Memory per owned BatchCertPool (issue 15): the operator's RSS and traced bytes at N1 and N2.

Starts the simulator (benchmark world, latencies), the local control plane and the real operator
(production intervals, so only convergence runs), applies N1 pools, waits until all are Ready,
lets the operator settle, asks it for a memory dump (``BATCHCERT_DEBUG_DUMP_DIR`` + SIGUSR1, see
``batchcert/runner.py``), then the same at N2 (cumulative). The per-object figure is the
difference divided by N2 - N1, so the base (imports, clients, kopf's machinery) cancels out.

With ``--tracemalloc FRAMES`` the operator runs with ``PYTHONTRACEMALLOC=FRAMES`` and the two
snapshots are compared: bytes per object by component (the first frame, newest first, that
belongs to kopf, batchcert, aiohttp, prometheus_client, ... ; a frame in ``copy``/``json`` is
attributed to its nearest non-stdlib caller). Tracing slows the operator and adds its own
overhead to RSS: read RSS from a run without it.

Run from the repository root (2 cores: it takes ~5 minutes at 200/1000):

    PYTHONPATH=operator:tests .venv/bin/python benchmarks/memory_probe.py --sizes 200 1000 \\
        [--tracemalloc 12] [--out benchmarks/results/issue15/memory-<commit>]

Writes ``memory.json`` and ``memory.md`` into ``--out``. The dumps stay in
``.state/memory-probe-<pid>/dumps``; ``--breakdown SNAP1 SNAP2 N`` prints the table by holder
(``BREAKDOWN``) of two saved snapshots N objects apart, without starting anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import linecache
import os
import signal
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (the benchmark's world, processes and watch; not modified here)

from batchsim.client import SimControl  # noqa: E402
from support.cluster import running_kube_cluster  # noqa: E402
from support.operator import start_operator  # noqa: E402

STDLIB_PASS_THROUGH = ("/copy.py", "/json/", "/tracemalloc.py", "/_collections_abc.py")


def component(frames: tracemalloc.Traceback) -> str:
    """Who allocated: the newest frame outside the pass-through stdlib modules, by package."""
    for frame in reversed(frames) if frames else ():  # newest first
        name = frame.filename
        if any(part in name for part in STDLIB_PASS_THROUGH):
            continue
        for package in ("batchcert", "kopf", "aiohttp", "prometheus_client", "azure", "yarl"):
            marker = f"/{package}/"
            if marker in name:
                rel = name.split(marker, 1)[1]
                return f"{package}/{rel}:{frame.lineno}"
        if "/asyncio/" in name:
            return f"asyncio/{Path(name).name}:{frame.lineno}"
    return f"other:{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "other"


def caller_chain(frames: tracemalloc.Traceback, depth: int = 4) -> str:
    """The newest frames of kopf/batchcert code: a readable origin for the table."""
    out: list[str] = []
    for frame in reversed(frames):
        if "/kopf/" in frame.filename or "/batchcert/" in frame.filename:
            short = frame.filename.split("/site-packages/")[-1].split("/operator/")[-1]
            line = linecache.getline(frame.filename, frame.lineno).strip()[:60]
            out.append(f"{short}:{frame.lineno} `{line}`")
        if len(out) >= depth:
            break
    return " ← ".join(out)


def dump(pid: int, directory: Path, index: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while not directory.is_dir():  # the hook is installed (SIGUSR1 would kill it before)
        if time.monotonic() > deadline:
            raise SystemExit("the operator installed no memory dump hook")
        time.sleep(0.5)
    os.kill(pid, signal.SIGUSR1)
    target = directory / f"memory-{index}.json"
    deadline = time.monotonic() + 300
    while not target.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the operator wrote no {target}")
        time.sleep(0.5)
    return dict(json.loads(target.read_text()))


def allocators(point: dict[str, Any]) -> str:
    """Where the RSS is, in MB: glibc malloc's heap (in use / free) and CPython's arenas."""
    mb = 2**20
    parts = [f"anon {point.get('smaps', {}).get('Anonymous', 0) / mb:.1f}"]
    if point.get("malloc"):
        m = point["malloc"]
        parts.append(f"malloc in use {m['in_use_bytes'] / mb:.1f} free {m['free_bytes'] / mb:.1f}")
    if point.get("pymalloc"):
        p = point["pymalloc"]
        parts.append(
            f"pymalloc arenas {p.get('arena_bytes', 0) / mb:.1f} "
            f"live {p.get('allocated_block_bytes', 0) / mb:.1f}"
        )
    return ", ".join(parts)


def rotate(
    watch: run.PoolWatch, control: SimControl, world: run.World, pools: int, pid: int
) -> dict[str, Any]:
    """Renew the certificate every pool shares; the operator's write rate while they follow."""
    version = control.renew_certificate(world.vault, run.SHARED_CERT)
    sampler = run.ProcessSampler(pid).start()
    t0 = time.monotonic()

    def showing_new(items: list[dict[str, Any]]) -> int:
        return sum(
            cert.get("version") == version
            for obj in items
            for cert in (obj.get("status") or {}).get("certificates") or []
            if str(cert.get("secretId", "")).endswith(f"/{run.SHARED_CERT}")
        )

    seconds, series = watch.wait_until(None, showing_new, pools, 600, t0)
    sampler.stop()
    first = next((t for t, shown in series if shown > 0), None)
    spread = None if seconds is None or first is None else seconds - first
    return {
        "pools": pools,
        "seconds": seconds,
        "first_shown_seconds": first,
        "first_to_last_seconds": spread,
        "writes_per_second": None if not spread else round(pools / spread, 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "operator_cpu_seconds": round(sampler.samples[-1][1] - sampler.samples[0][1], 2)
        if sampler.samples
        else None,
    }


async def bare_status_writes(
    watch: run.PoolWatch, namespace: str, names: list[str], concurrency: int, rounds: int
) -> dict[str, Any]:
    """Status merge patches from a bare aiohttp client (no kopf): what the API server takes."""
    import aiohttp

    base = f"https://{watch._url.hostname}:{watch._url.port}"
    path = "/apis/batchcert.dev/v1alpha1/namespaces/{ns}/batchcertpools/{name}/status"
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for r in range(rounds):
        for name in names:
            queue.put_nowait((name, r))
    codes: dict[int, int] = defaultdict(int)
    connector = aiohttp.TCPConnector(ssl=watch._tls, limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                name, r = queue.get_nowait()
                body = {"status": {"observedGeneration": 1_000_000 + r}}
                async with session.patch(
                    path.format(ns=namespace, name=name),
                    data=json.dumps(body),
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as response:
                    await response.read()
                    codes[response.status] += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - t0
    writes = len(names) * rounds
    return {
        "writes": writes,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "writes_per_second": round(writes / seconds, 1),
        "codes": dict(codes),
    }


# Who holds the bytes, by the frames of the allocating traceback (first matching rule wins).
BREAKDOWN: list[tuple[str, Callable[[list[str]], bool]]] = [
    ("TLS connection buffers (asyncio sslproto, 256 KiB each)", lambda fs: any("sslproto.py" in f for f in fs[-2:])),
    ("kopf: the object's body (watch event JSON)", lambda fs: any("kopf/_cogs/clients/watching.py" in f for f in fs)),
    ("ours: status answer kept by write_status", lambda fs: any("batchcert/statuswriter.py" in f or "batchcert/kopfprivate.py" in f for f in fs) and any("patching.py" in f or "clients/api.py" in f for f in fs)),
    ("ours: ARM pool reading (ObjectMemory.pool)", lambda fs: any("batchcert/adapters/arm.py" in f or "reconcile/pool.py" in f for f in fs)),
    ("ours: node reading / diagnosis", lambda fs: any("batchnodes.py" in f or "diagnos" in f or "assess/nodes.py" in f for f in fs)),
    ("ours: metrics", lambda fs: any("batchcert/metrics.py" in f for f in fs)),
    ("ours: scheduler", lambda fs: any("reconcile/scheduler.py" in f for f in fs)),
    ("ours: reconcile memory (conditions, Backoff, spec, readings)", lambda fs: any("batchcert/" in f for f in fs) and not any("kopf/" in f for f in fs[-3:])),
    ("kopf: daemon (task, stopper, cause, logger, context)", lambda fs: any("kopf/_core/engines/daemons.py" in f or "aioenums.py" in f for f in fs)),
    ("kopf: per-object memory (ResourceMemory, memo)", lambda fs: any("kopf/_core/reactor/inventory.py" in f for f in fs)),
    ("ours: daemon loop", lambda fs: any("batchcert/daemon.py" in f or "batchcert/handlers.py" in f for f in fs)),
    ("kopf: other", lambda fs: any("/kopf/" in f for f in fs)),
    ("azure SDK: other", lambda fs: any("/azure/" in f for f in fs)),
    ("aiohttp: other", lambda fs: any("/aiohttp/" in f for f in fs)),
    ("imports and other", lambda fs: True),
]  # fmt: skip


def breakdown(first: Path, second: Path, objects: int) -> list[dict[str, Any]]:
    """Bytes per object by holder (``BREAKDOWN``), between two snapshots ``objects`` apart."""
    a = tracemalloc.Snapshot.load(str(first))
    b = tracemalloc.Snapshot.load(str(second))
    totals: dict[str, int] = defaultdict(int)
    for stat in b.compare_to(a, "traceback"):
        frames = [f"{frame.filename}:{frame.lineno}" for frame in stat.traceback]
        name = next(name for name, rule in BREAKDOWN if rule(frames))
        totals[name] += stat.size_diff
    return [
        {"holder": name, "bytes_per_object": round(totals[name] / objects)} for name, _ in BREAKDOWN
    ]


def compare(first: Path, second: Path, objects: int, top: int) -> list[dict[str, Any]]:
    a = tracemalloc.Snapshot.load(str(first))
    b = tracemalloc.Snapshot.load(str(second))
    by_component: dict[str, int] = defaultdict(int)
    chains: dict[str, tuple[int, str]] = {}
    for stat in b.compare_to(a, "traceback"):
        key = component(stat.traceback)
        by_component[key] += stat.size_diff
        best = chains.get(key)
        if best is None or stat.size_diff > best[0]:
            chains[key] = (stat.size_diff, caller_chain(stat.traceback))
    rows = sorted(by_component.items(), key=lambda kv: -kv[1])[:top]
    return [
        {
            "component": key,
            "bytes_per_object": round(size / objects),
            "largest_origin": chains[key][1],
        }
        for key, size in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[200, 1000])
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after Ready")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--breakdown",
        nargs=3,
        metavar=("SNAPSHOT1", "SNAPSHOT2", "OBJECTS"),
        help="only print the breakdown of two saved tracemalloc snapshots OBJECTS apart",
    )
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="after the N2 dump: renew the shared certificate (cert interval 20 s) and time the "
        "status writes until every pool shows it; then stop the operator and time status "
        "merge patches from a bare aiohttp client at concurrency 16",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "memory")
    args = parser.parse_args()
    if args.breakdown:
        first, second, objects = args.breakdown
        for row in breakdown(Path(first), Path(second), int(objects)):
            print(f"| {row['holder']} | {row['bytes_per_object'] / 1024:.1f} |")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = run.REPO / ".state" / f"memory-probe-{os.getpid()}"
    dumps = state / "dumps"
    n1, n2 = args.sizes
    sim = run.start_simulator(state / "sim")
    results: dict[str, Any] = {
        "argv": sys.argv[1:],
        "commit": run.git_describe(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "points": [],
    }
    try:
        sim_json = state / "sim" / "sim.json"
        control = SimControl(sim_json)
        world = run.seed_world(control, n2)
        with running_kube_cluster(state / "cluster") as kube:
            watch = run.PoolWatch(kube).start()
            env = run.operator_intervals(1.0)
            env["BATCHCERT_DEBUG_DUMP_DIR"] = str(dumps)
            if args.rotate:
                env["BATCHCERT_CERT_INTERVAL_SECONDS"] = "20"
            if args.tracemalloc:
                env["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
            op = start_operator(kube.kubeconfig, sim_json, state / "operator.log", extra_env=env)
            try:
                namespace = "memory"
                run.create_namespace(kube, namespace)
                time.sleep(5)
                results["points"].append({"n": 0, **dump(op.process.pid, dumps, 0)})
                applied = 0
                for index, n in enumerate((n1, n2), start=1):
                    manifests = [
                        run.manifest(world, f"m-{i:04d}", namespace, i) for i in range(applied, n)
                    ]
                    run.log(f"applying {len(manifests)} pools (total {n})")
                    t0 = time.monotonic()
                    run.apply_all(kube, manifests)
                    applied = n
                    seconds, _ = watch.wait_until(
                        namespace, lambda items: sum(map(run.is_ready, items)), n, args.timeout, t0
                    )
                    run.log(f"N={n} Ready after {run.seconds_text(seconds)}; settling")
                    time.sleep(args.settle)
                    point = dump(op.process.pid, dumps, index)
                    results["points"].append({"n": n, "ready_seconds": seconds, **point})
                    run.log(f"N={n}: RSS {point['rss_bytes'] / 2**20:.1f} MB {allocators(point)}")
                if args.rotate:
                    results["rotation"] = rotate(watch, control, world, n2, op.process.pid)
                    run.log(f"rotation: {results['rotation']}")
                    time.sleep(args.settle)
                    results["after_rotation"] = dump(op.process.pid, dumps, 3)
                    run.log(f"after rotation: {allocators(results['after_rotation'])}")
                    op.stop(timeout=60)
                    names = [f"m-{i:04d}" for i in range(n2)]
                    results["bare_writes"] = asyncio.run(
                        bare_status_writes(watch, namespace, names, 16, 2)
                    )
                    run.log(f"bare status writes: {results['bare_writes']}")
            finally:
                watch.stop()
                op.stop(timeout=20)
    finally:
        run.stop_process(sim)
    _, p1, p2 = results["points"]
    per = n2 - n1
    results["per_object"] = {
        "rss_bytes": round((p2["rss_bytes"] - p1["rss_bytes"]) / per),
        "gc_objects": round((p2["gc_objects"] - p1["gc_objects"]) / per, 1),
        "types": {
            t: round((p2["types"].get(t, 0) - p1["types"].get(t, 0)) / per, 2)
            for t in p2["types"]
            if abs(p2["types"].get(t, 0) - p1["types"].get(t, 0)) >= per * 0.5
        },
    }
    if args.tracemalloc:
        results["per_object"]["traced_bytes"] = round(
            (p2["traced_bytes"] - p1["traced_bytes"]) / per
        )
        results["components"] = compare(
            dumps / "memory-1.tracemalloc", dumps / "memory-2.tracemalloc", per, args.top
        )
        results["breakdown"] = breakdown(
            dumps / "memory-1.tracemalloc", dumps / "memory-2.tracemalloc", per
        )
    (out / "memory.json").write_text(json.dumps(results, indent=1))
    (out / "memory.md").write_text(render(results))
    print(render(results))


def render(results: dict[str, Any]) -> str:
    lines = [
        f"# Memory per owned BatchCertPool ({results['commit']})",
        "",
        f"`benchmarks/memory_probe.py {' '.join(results['argv'])}`, started {results['started']}",
        "",
        "| N | Ready after s | RSS MB | traced MB | gc objects |",
        "|---|---|---|---|---|",
    ]
    for p in results["points"]:
        traced = "" if p["traced_bytes"] is None else f"{p['traced_bytes'] / 2**20:.1f}"
        ready = p.get("ready_seconds")
        lines.append(
            f"| {p['n']} | {'' if ready is None else f'{ready:.0f}'} | "
            f"{p['rss_bytes'] / 2**20:.1f} | {traced} | {p['gc_objects']} |"
        )
    per = results["per_object"]
    lines += ["", f"Per object: RSS {per['rss_bytes']} B, {per['gc_objects']} gc-tracked objects"]
    if "traced_bytes" in per:
        lines += [f", traced {per['traced_bytes']} B"]
    lines += ["", "| type | per object |", "|---|---|"]
    lines += [f"| {t} | {c} |" for t, c in sorted(per["types"].items(), key=lambda kv: -kv[1])]
    if "breakdown" in results:
        lines += ["", "| held by | KiB per object |", "|---|---|"]
        lines += [
            f"| {r['holder']} | {r['bytes_per_object'] / 1024:.1f} |" for r in results["breakdown"]
        ]
    if "components" in results:
        lines += ["", "| allocated by | bytes per object | largest origin |", "|---|---|---|"]
        lines += [
            f"| {r['component']} | {r['bytes_per_object']} | {r['largest_origin']} |"
            for r in results["components"]
        ]
    for key in ("rotation", "bare_writes"):
        if key in results:
            lines += ["", f"{key}: `{json.dumps(results[key])}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
