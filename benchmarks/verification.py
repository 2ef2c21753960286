"""Node verification on one 100-node pool: how long proof takes, what it costs, what it leaves.

Issue 21's targets, measured through the real operator process, a real API server and the
simulator (its own latencies: 0.1 s per Batch data-plane request, as ``run.py`` injects):

1. **idle nodes**: a renewal → every node proven current (``status.nodes.verification.current``
   = nodes, ``NodesReady`` ``RotationVerified``); target ≤ the extension's polling interval
   + 60 s;
2. **every slot busy** (each node's one task slot held by the user's work across the renewal,
   for ``BUSY_HOLD_SECONDS`` after it): ``Ready`` again within polling interval + ``taskTimeout``
   + 30 s (``requireProof: false``: ``RotationUnverified``), and proof within 60 s after the
   slots free;
3. **cost**: Batch data-plane requests of verification (jobs, tasks, task files) per node per run,
   target ≤ 3, from the simulator's request log, idle and with every slot busy (where the run's
   tasks wait queued and its polls back off); node and extension reads are the node pass's and
   are counted apart;
4. **standing jobs**: active Batch jobs for the pool while no run is in progress, target 0, from
   the simulator's world.

Run from the repository root (about 10 minutes; ``make install binaries`` first):

    PYTHONPATH=operator:tests .venv/bin/python benchmarks/verification.py [--nodes 100] \\
        [--out benchmarks/results/issue21/verification.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from latencies import LATENCIES  # noqa: E402

POLLING_SECONDS = 60  # the smallest pollingIntervalSeconds the CRD allows
TASK_TIMEOUT = "PT1M"
TASK_TIMEOUT_SECONDS = 60
BUSY_HOLD_SECONDS = 240  # slots held this long after the renewal: waiting is what costs polls
NAMESPACE = "bench-verify"
POOL = "verified"
# What the node pass reads (counted apart: it is not verification's cost).
NODE_PASS_OPERATIONS = ("ComputeNode_List", "ComputeNode_Get", "ComputeNodeExtension_Get",
                        "ComputeNodeExtension_List")  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``check`` held, polled every 0.5 s; None when it never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    log(f"  {what}: not within {timeout:.0f} s")
    return None


class Bench:
    def __init__(self, stack: Any, nodes: int) -> None:
        self.stack = stack
        self.nodes = nodes
        demo = stack.demo
        self.ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], POOL)
        self.cert = "bench-verify-cert"

    def status(self) -> dict[str, Any]:
        return dict(self.stack.get(POOL, NAMESPACE).get("status") or {})

    def verification(self) -> dict[str, Any]:
        return dict((self.status().get("nodes") or {}).get("verification") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        found = [c for c in self.status().get("conditions") or [] if c.get("type") == type_]
        return dict(found[0]) if found else {}

    def all_current(self) -> bool:
        """Every node proven to hold the rotated version (after a renewal)."""
        return (
            self.verification().get("current") == self.nodes
            and self.condition("NodesReady").get("reason") == "RotationVerified"
        )

    def node_ids(self) -> list[str]:
        return sorted(n["id"] for n in self.stack.control.pool(*self.ids)["nodes"])

    def active_jobs(self) -> int:
        """Active jobs on this pool's account that run on this pool (the simulator's world)."""
        world = self.stack.sim.sim.world
        account = next(a for a in world.accounts.values() if a.name.lower() == self.ids[2].lower())
        return sum(
            1
            for job in account.jobs.values()
            if job.state == "active" and job.pool_id.lower() == POOL.lower()
        )

    def verification_requests(self, since: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for request in self.stack.control.requests(service="batch", sinceSeq=since):
            operation = request["operation"]
            if operation not in NODE_PASS_OPERATIONS:
                counts[operation] = counts.get(operation, 0) + 1
        return counts

    def last_seq(self) -> int:
        requests = self.stack.control.requests(limit=1)
        return max((r["seq"] for r in requests), default=0)

    def set_busy(self, slots: int) -> None:
        for node_id in self.node_ids():
            self.stack.control.set_node(*self.ids, node_id=node_id, busySlots=slots)


def measure(nodes: int, out: Path | None) -> dict[str, Any]:
    from support.cluster import running_kube_cluster
    from support.operator import running_operator
    from support.stack import OperatorStack, fast_simulator

    results: dict[str, Any] = {"nodes": nodes, "pollingIntervalSeconds": POLLING_SECONDS}
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        work = Path(tmp)
        with (
            running_kube_cluster(work / "cluster") as kube,
            fast_simulator(work / "sim") as sim,
            running_operator(kube.kubeconfig, Path(sim.sim_json), work / "operator.log") as op,
        ):
            stack = OperatorStack(kube, sim, op)
            for service, method, path, seconds in LATENCIES:
                match = {"service": service, "method": method}
                if path:
                    match["pathRegex"] = path
                stack.control.add_fault(match=match, latencySeconds=seconds)
            bench = Bench(stack, nodes)
            demo = stack.demo
            stack.control.add_certificate(demo["vault"], bench.cert)
            kube.kubectl("create", "namespace", NAMESPACE, check=True)
            manifest = stack.manifest(
                POOL,
                NAMESPACE,
                scale={"fixed": {"targetDedicatedNodes": nodes}},
                certificates=[{"vaultUrl": demo["vaultUrl"], "name": bench.cert}],
                keyVaultExtension={"pollingIntervalSeconds": POLLING_SECONDS},
                verification={"enabled": True, "taskTimeout": TASK_TIMEOUT},
            )
            log(f"applying a {nodes}-node pool with verification")
            stack.apply(manifest)
            first = wait_for(
                "first proof on every node",
                lambda: bench.verification().get("current") == nodes,
                600,
            )
            results["first_proof_seconds"] = first
            log(f"  every node proven current {first} s after the apply")

            # --- 1. idle nodes: renewal -> every node proven current ----------------------
            wait_for("no run in progress", lambda: bench.active_jobs() == 0, 120)
            results["active_jobs_outside_runs"] = bench.active_jobs()
            since = bench.last_seq()
            renewed_at = time.monotonic()
            stack.control.renew_certificate(demo["vault"], bench.cert)
            proven = wait_for(
                "renewal proven on every node",
                lambda: bench.all_current() and bench.verification().get("stale") == 0,
                POLLING_SECONDS + 300,
            )
            results["idle"] = {
                "renewal_to_all_proven_seconds": proven,
                "target_seconds": POLLING_SECONDS + 60,
            }
            log(f"  idle: renewal -> {nodes} nodes proven current in {proven} s")
            requests = bench.verification_requests(since)
            results["idle"]["verification_requests"] = requests
            total, tasks = sum(requests.values()), max(1, requests.get("Task_Add", 0))
            # A run adds one task per node: requests per task are requests per node per run.
            results["idle"]["requests_per_node"] = total / nodes
            results["idle"]["runs"] = tasks / nodes
            results["idle"]["requests_per_node_per_run"] = total / tasks
            log(
                f"  verification requests {requests}: {total / nodes:.2f}/node over "
                f"{tasks / nodes:.1f} runs, {total / tasks:.2f}/node/run (target <= 3)"
            )
            wait_for("no run in progress", lambda: bench.active_jobs() == 0, 120)
            results["active_jobs_after_run"] = bench.active_jobs()

            # --- 2. every slot busy across a renewal --------------------------------------
            bench.set_busy(1)
            since = bench.last_seq()
            renewed_at = time.monotonic()
            stack.control.renew_certificate(demo["vault"], bench.cert)
            not_ready = wait_for(
                "Ready=False after the renewal",
                lambda: bench.condition("Ready").get("status") == "False",
                120,
            )
            ready_again = wait_for(
                "Ready=True with every slot busy",
                lambda: bench.condition("Ready").get("status") == "True",
                POLLING_SECONDS + TASK_TIMEOUT_SECONDS + 300,
            )
            busy_ready = time.monotonic() - renewed_at if ready_again is not None else None
            results["busy"] = {
                "ready_false_seconds": not_ready,
                "renewal_to_ready_seconds": busy_ready,
                "ready_reason": bench.condition("NodesReady").get("reason"),
                "unverified": bench.verification().get("unverified"),
                "target_seconds": POLLING_SECONDS + TASK_TIMEOUT_SECONDS + 30,
            }
            log(f"  busy: renewal -> Ready in {busy_ready} s ({results['busy']['ready_reason']})")
            time.sleep(max(0.0, renewed_at + BUSY_HOLD_SECONDS - time.monotonic()))
            results["busy"]["slots_held_seconds"] = time.monotonic() - renewed_at
            bench.set_busy(0)
            freed = wait_for("proof after the slots free", bench.all_current, 300)
            results["busy"]["slots_freed_to_all_proven_seconds"] = freed
            results["busy"]["freed_target_seconds"] = 60
            log(f"  busy: slots freed -> every node proven in {freed} s")
            wait_for("no run in progress", lambda: bench.active_jobs() == 0, 120)
            results["active_jobs_after_busy_run"] = bench.active_jobs()
            requests = bench.verification_requests(since)
            total, tasks = sum(requests.values()), max(1, requests.get("Task_Add", 0))
            results["busy"]["verification_requests"] = requests
            results["busy"]["runs"] = tasks / nodes
            results["busy"]["requests_per_node_per_run"] = total / tasks
            log(f"  busy: verification requests {requests}: {total / tasks:.2f}/node/run")
            results["operator_alive"] = op.is_running()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = measure(args.nodes, args.out)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
