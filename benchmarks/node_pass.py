"""One full node pass of the operator's Batch data-plane adapter, alone: seconds and CPU.

Measures ``BatchNodesAdapter.list_nodes`` + ``read_extensions`` over every node of one pool
(1 list request + N extension reads), with the operator's real clients (``AzureClients``: the
azure-batch SDK over HTTPS, one shared aiohttp session) at the operator's default concurrency
(``BATCHCERT_NODE_CONCURRENCY``, 8), against the simulator started and seeded as
``benchmarks/run.py`` does (its latencies: 0.1 s per Batch data-plane request; its node timing).

Why: issue 15's target is a 1000-node pass within 1.3× the latency floor,
ceil(requests / concurrency) × 0.1 s. The full benchmark (``run.py``, node status phase)
measures the pass inside the operator, under the load of 1000 other pools; this measures the
adapter on its own, so a ratio above the target here is the adapter's (SDK, pipeline, parsing,
event loop) and not the rest of the operator's. Each pass prints its seconds, the requests
(as the simulator counted them), the floor, the ratio, and the CPU seconds this process spent
(``time.process_time``) per pass and per request; the simulator's CPU over the pass is shown too,
as it shares the machine's cores. ``--profile FILE`` runs one more pass under cProfile (wall
clock: the waits are epoll's poll) and writes to FILE its own time by package, then the top 40
functions by cumulative time and by own time. cProfile counts each resumption of a coroutine as
a call: a request's coroutines show about three "calls" each.

Run from the repository root (about 90 s for 1000 nodes and 5 passes; the simulator's state
directory, ``.state/node-pass-<pid>``, is removed after a clean run and kept after a failure):

    PYTHONPATH=operator:tests .venv/bin/python benchmarks/node_pass.py --nodes 1000 --passes 5 \\
        [--profile /tmp/node_pass_profile.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import benchmath  # noqa: E402
import psutil  # type: ignore[import-untyped]  # noqa: E402
import run  # noqa: E402  (the benchmark's simulator, world and latencies; not modified here)

from batchcert.adapters.azure_clients import AzureClients  # noqa: E402
from batchcert.adapters.batchnodes import BatchNodesAdapter  # noqa: E402
from batchcert.config import load_config  # noqa: E402
from batchcert.models.spec import parse_spec  # noqa: E402
from batchcert.translate.pool_body import Owner, build_pool_body  # noqa: E402
from batchsim.client import SimControl, management_client  # noqa: E402

POOL = "node-pass"


@dataclass
class Target:
    endpoint: str  # the account's data-plane host, as ARM returns it
    pool: str
    extension: str
    ids: tuple[str, str, str, str]  # subscription, resource group, account, pool


def create_pool(control: SimControl, world: run.World, nodes: int) -> Target:
    """One pool of ``nodes`` nodes with our Key Vault extension, PUT through ARM with the body
    the operator itself would send (``build_pool_body`` from a benchmark manifest's spec)."""
    sub, account = world.accounts[0]
    # Our own identity: seed_world keeps only resource ids, and the extension needs the clientId.
    ident = control.add_identity(sub, run.RESOURCE_GROUP, "node-pass-identity")
    control.grant(world.vault, str(ident["principalId"]), {"secrets": ["get", "list"]})
    manifest = run.manifest(world, POOL, "bench", 0, nodes=nodes)
    manifest["spec"]["identity"] = {"resourceId": str(ident["id"])}
    spec = parse_spec(manifest["spec"])
    body = build_pool_body(
        spec,
        identity_client_id=str(ident["clientId"]),
        owner=Owner("bench", POOL, "00000000-0000-0000-0000-00000000cafe"),
    )
    arm = management_client(control.info, subscription_id=sub)
    arm.pool.create(run.RESOURCE_GROUP, account, POOL, body)
    endpoint = str(arm.batch_account.get(run.RESOURCE_GROUP, account).account_endpoint)
    arm.close()
    ids = (sub, run.RESOURCE_GROUP, account, POOL)
    return Target(endpoint, POOL, spec.key_vault_extension.name, ids)


def wait_until_steady(control: SimControl, target: Target, nodes: int, timeout: float) -> None:
    """Every node idle with our extension Succeeded: a healthy pool, as a steady pass sees it."""
    deadline = time.monotonic() + timeout
    while True:
        listed = control.pool(*target.ids)["nodes"]
        ready = sum(
            n["state"] == "idle"
            and (n["extensions"].get(target.extension) or {}).get("provisioningState")
            == "Succeeded"
            for n in listed
        )
        if len(listed) == nodes and ready == nodes:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{ready}/{nodes} nodes steady after {timeout:.0f} s")
        run.log(f"{len(listed)} nodes, {ready} idle with the extension Succeeded")
        time.sleep(3)


@dataclass
class PassFigures:
    seconds: float
    requests: int  # as the simulator logged them
    floor: float
    cpu_seconds: float
    sim_cpu_seconds: float
    errors: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.requests

    def line(self, label: str) -> str:
        return (
            f"{label}: {self.seconds:.2f} s, {self.requests} requests, floor {self.floor:.1f} s, "
            f"ratio {self.ratio:.2f}, CPU {self.cpu_seconds:.2f} s "
            f"({self.cpu_ms_per_request:.2f} ms/request), simulator CPU "
            f"{self.sim_cpu_seconds:.2f} s, {self.errors} node errors"
        )


def cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def one_pass(
    adapter: BatchNodesAdapter,
    target: Target,
    control: SimControl,
    sim: psutil.Process,
    concurrency: int,
    profiler: cProfile.Profile | None = None,
) -> PassFigures:
    since = run.last_seq(control)  # blocking control calls stay outside the measured window
    sim_cpu = cpu_of(sim)
    cpu, t0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    listed = await adapter.list_nodes(target.endpoint, target.pool)
    reports = await adapter.read_extensions(target.endpoint, target.pool, listed, target.extension)
    if profiler:
        profiler.disable()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    sim_cpu = cpu_of(sim) - sim_cpu
    requests = run.last_seq(control) - since
    return PassFigures(
        seconds=seconds,
        requests=requests,
        floor=benchmath.latency_floor_seconds(requests, concurrency, run.BATCH_LATENCY),
        cpu_seconds=cpu,
        sim_cpu_seconds=sim_cpu,
        errors=sum(1 for r in reports if r.error or not r.extension_found),
    )


PACKAGES = (
    "azure/core/pipeline",
    "azure/core",
    "azure/batch",
    "azure/identity",
    "aiohttp",
    "multidict",
    "yarl",
    "asyncio",
    "ssl",
    "batchcert",
)


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own (``tottime``) seconds summed by the package a function is in, largest first."""
    totals: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace("\\", "/")
        name = next((p for p in PACKAGES if f"/{p}/" in path or path.endswith(f"/{p}.py")), None)
        if name is None and filename == "~":
            name = f"C: {function}"  # a builtin, by itself (socket send, epoll's wait, ...)
        elif name is None and "/site-packages/" in path:
            name = path.split("/site-packages/", 1)[1].split("/", 1)[0]
        elif name is None:
            name = f"stdlib {Path(path).name}"
        totals[name] = totals.get(name, 0.0) + row[2]
    return sorted(totals.items(), key=lambda kv: -kv[1])


async def measure(
    control: SimControl, target: Target, sim: psutil.Process, args: argparse.Namespace
) -> None:
    # The operator's own configuration and clients, pointed at the simulator as
    # tests/support/operator.py points the operator process (credentials from the environment).
    creds = control.info["principals"]["operator"]
    os.environ.pop("AZURE_FEDERATED_TOKEN_FILE", None)  # else workload identity is chosen
    os.environ.update(
        AZURE_TENANT_ID=control.info["tenantId"],
        AZURE_CLIENT_ID=creds["clientId"],
        AZURE_CLIENT_SECRET=creds["clientSecret"],
    )
    config = load_config({"BATCHCERT_CLOUD_FILE": str(args.sim_json)})
    concurrency = args.concurrency or config.node_concurrency
    clients = AzureClients(config)
    try:
        adapter = BatchNodesAdapter(clients, concurrency)
        # Warm-up, not reported: the token and the pool of connections a long-running operator
        # already holds (a node read per connection).
        listed = await adapter.list_nodes(target.endpoint, target.pool)
        await adapter.read_extensions(
            target.endpoint, target.pool, listed[:concurrency], target.extension
        )
        run.log(f"{len(listed)} nodes listed; concurrency {concurrency}; {args.passes} passes")
        figures = []
        for i in range(args.passes):
            figures.append(await one_pass(adapter, target, control, sim, concurrency))
            print(figures[-1].line(f"pass {i + 1}"), flush=True)
        print(
            f"summary: {len(listed)} nodes, {len(figures)} passes, median "
            f"{statistics.median(f.seconds for f in figures):.2f} s, ratio "
            f"{statistics.median(f.ratio for f in figures):.2f} (target ≤ "
            f"{run.NODE_PASS_TARGET}), CPU "
            f"{statistics.median(f.cpu_ms_per_request for f in figures):.2f} ms/request",
            flush=True,
        )
        if args.profile:
            # The default (wall) timer: a CPU timer is a system call per event and tripled the
            # pass's CPU, skewing the shares; the waits show up as epoll's poll alone.
            profiler = cProfile.Profile()
            profiled = await one_pass(adapter, target, control, sim, concurrency, profiler)
            label = "profiled pass (slowed by cProfile)"
            print(profiled.line(label), flush=True)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            out.write(f"{profiled.line(label)}\n\nOwn (tottime) seconds by package, top 20:\n")
            out.writelines(f"  {name:<28} {sec:6.2f}\n" for name, sec in by_package(stats)[:20])
            stats.strip_dirs().sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(40)
            args.profile.write_text(out.getvalue())
            run.log(f"profile written to {args.profile}")
    finally:
        await clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument(
        "--concurrency", type=int, default=0, help="default: the operator's (config.py)"
    )
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile one more pass")
    args = parser.parse_args()
    state = run.REPO / ".state" / f"node-pass-{os.getpid()}"
    args.sim_json = state / "sim" / "sim.json"
    sim = run.start_simulator(state / "sim")
    try:
        control = SimControl(args.sim_json)
        world = run.seed_world(control, 1)  # latencies, node timing, a vault, accounts
        target = create_pool(control, world, args.nodes)
        run.log(f"pool {target.pool} of {args.nodes} nodes created; waiting for steady nodes")
        wait_until_steady(control, target, args.nodes, timeout=420 + args.nodes)
        asyncio.run(measure(control, target, psutil.Process(sim.pid), args))
    finally:
        run.stop_process(sim)
    shutil.rmtree(state, ignore_errors=True)  # kept on failure: sim.log says why


if __name__ == "__main__":
    main()
