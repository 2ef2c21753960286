"""``batchcert-dev demo``: the whole story on embedded defaults, from a fresh clone.

1. a real kube-apiserver + etcd (built from Go modules on first use) with the CRD installed;
2. the Azure simulator with its demo world (Batch account, identity, vault, a certificate that
   auto-renews at 80 % of its lifetime);
3. the operator, as its own process, signed in to the simulator's Entra ID;
4. ``examples/batchcertpool.yaml``, pointed at the simulator's account, identity and vault;
5. waits for ``Ready=True``; advances the simulated clock past the renewal point; shows the new
   version and the ``CertificateRotated`` Event; waits for Ready again after propagation, which
   with the example's ``spec.verification`` means a Batch task on the node proved it holds the
   new version (``NodesReady`` ``RotationVerified``, Event ``NodesVerified``), and prints how
   long that took from the rotation;
6. deletes the object (the pool goes with it) and stops everything (``--keep`` leaves it up).

Dev tooling: it drives the operator from outside, as a user would; the operator never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

# The CRD and the example ship inside this package (links to crds/ and examples/ in a checkout).
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = DATA / "batchcertpool.yaml"
CRD = DATA / "batchcertpools.yaml"
NAMESPACE = "demo"
# The demo's polling interval: the smallest the CRD allows, so propagation takes a minute.
DEMO_POLLING_SECONDS = 60
DEMO_INTERVALS = {
    "BATCHCERT_TICK_SECONDS": "2",
    "BATCHCERT_DRIFT_INTERVAL_SECONDS": "30",
    "BATCHCERT_CERT_INTERVAL_SECONDS": "5",
    "BATCHCERT_NODE_INTERVAL_SECONDS": "10",
    "BATCHCERT_BUSY_INTERVAL_SECONDS": "2",
    "BATCHCERT_STATUS_SETTLE_SECONDS": "3",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def handoff_lines(
    *,
    kubeconfig: Path,
    bin_dir: Path,
    state_dir: Path,
    sim_json: Path,
    metrics_port: int,
    pids: list[int],
) -> list[str]:
    """What ``--keep`` prints: lines that work pasted into a plain shell (no venv activated),
    with every path absolute, and what makes this world differ from a real install."""
    intervals = ", ".join(f"{k}={v}" for k, v in DEMO_INTERVALS.items())
    return [
        "# paste into a shell:",
        f"export KUBECONFIG={kubeconfig}",
        f"export PATH={bin_dir}:$PATH   # batchcert, kubectl-batchcert, batchcert-dev",
        f"kubectl get bcp -n {NAMESPACE} -o wide",
        f"kubectl batchcert status render-pool -n {NAMESPACE}",
        f"curl -s http://127.0.0.1:{metrics_port}/metrics | grep ^batchcert_",
        "",
        f"# operator and simulator logs: {state_dir}/operator.log, {state_dir}/sim.log",
        f"# the simulator's addresses, principals and demo world: {sim_json}",
        f"batchcert-dev sim --state-dir {sim_json.parent} pools   # shape the simulated world:",
        "#   clock --advance 30d | node POOL NODE --busy 1 | grant VAULT PRINCIPAL --revoke | "
        "cert VAULT NAME --renew (batchcert-dev sim --help)",
        f"# intervals are accelerated for the demo: {intervals}",
        "#   (production defaults: 300 s drift, certificate and node intervals, 15 s busy);",
        f"#   the extension polls every {DEMO_POLLING_SECONDS} s, the smallest the CRD allows",
        "",
        "# stop everything:",
        f"kill {' '.join(str(p) for p in pids)}; "
        f"{bin_dir}/batchcert-dev cluster down --state-dir {state_dir / 'cluster'}",
    ]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole story locally: cluster, simulator, operator, Ready, rotation",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--state-dir", default=".state/demo", help="(default: %(default)s)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the cluster, simulator and operator running at the end",
    )
    parser.set_defaults(func=run)


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


class Demo:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.kubectl_bin = shutil.which("kubectl") or "/usr/bin/kubectl"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.cluster: Any = None
        self.rotated_at = 0.0
        self.metrics_port = 0
        self.sim_json = state_dir / "sim" / "sim.json"

    # --- plumbing -----------------------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        check: bool = True,
        show: bool = False,
        stdin: str | None = None,
        timeout: float = 180,
    ) -> str:
        cmd = [self.kubectl_bin, f"--kubeconfig={self.cluster.kubeconfig}", *args]
        if show:
            print("$ kubectl " + " ".join(args), flush=True)
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if show:
            print(result.stdout.rstrip(), flush=True)
        if check and result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.state_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        if self.cluster is not None:
            self.cluster.down()

    def wait_for(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise SystemExit(
                        f"a demo process exited early; see the logs in {self.state_dir}"
                    )
            if check():
                return
            time.sleep(1)
        raise SystemExit(f"timed out waiting for {what}; see the logs in {self.state_dir}")

    def status(self) -> dict[str, Any]:
        body = json.loads(self.kubectl("get", "bcp", "render-pool", "-n", NAMESPACE, "-o", "json"))
        return dict(body.get("status") or {})

    def ready(self) -> bool:
        status = self.status()
        return any(
            c["type"] == "Ready"
            and c["status"] == "True"
            and c.get("observedGeneration") == status.get("observedGeneration")
            for c in status.get("conditions", [])
        )

    # --- the story ----------------------------------------------------------------------------
    def start_cluster(self, keep: bool) -> None:
        from batchdev.devcluster.cluster import Cluster

        step("Starting a real kube-apiserver + etcd (built from Go modules on first use)")
        # With --keep the servers must outlive this process (by default they die with it).
        self.cluster = Cluster.up(
            self.state_dir / "cluster", build_if_missing=True, die_with_parent=not keep
        )
        print(f"Kubernetes {self.cluster.kubernetes_version} at {self.cluster.server}")
        self.kubectl("apply", "-f", str(CRD), show=True)
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/batchcertpools.batchcert.dev",
            "--timeout=60s",
        )

    def start_simulator(self) -> dict[str, Any]:
        step("Starting the Azure simulator (Entra ID, ARM, Key Vault, Batch) with its demo world")
        sim_dir = self.state_dir / "sim"
        shutil.rmtree(sim_dir, ignore_errors=True)
        self.spawn(
            "sim",
            [
                sys.executable,
                "-m",
                "batchdev",
                "sim",
                "--state-dir",
                str(sim_dir),
                "--seed",
                "demo",
            ],
            dict(os.environ),
        )
        sim_json = sim_dir / "sim.json"
        self.wait_for("the simulator", sim_json.exists, 60)
        from batchsim.client import SimControl

        self.control = SimControl(sim_json)
        self.wait_for("the simulator's control API", self._control_answers, 30)
        # Nodes arrive and boot in seconds rather than minutes, so the story fits in minutes.
        self.control.set_node_behaviour(
            arrivalDelaySeconds=5, bootSeconds=2, deleteDurationSeconds=3, lroRetryAfterSeconds=2
        )
        info: dict[str, Any] = json.loads(sim_json.read_text())
        demo = info["demo"]
        print(
            f"simulator on {info['resourceManager']}; account {demo['batchAccount']}, "
            f"vault {demo['vaultUrl']}, certificate {demo['certificate']}"
        )
        self.sim_json = sim_json
        return info

    def _control_answers(self) -> bool:
        try:
            self.control.clock()
        except OSError:
            return False
        return True

    def start_operator(self, info: dict[str, Any]) -> None:
        step("Starting the operator (batchcert run), signed in to the simulator's Entra ID")
        operator = info["principals"]["operator"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "BATCHCERT_"))}
        env.update(DEMO_INTERVALS)
        env.update(
            {
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "BATCHCERT_CLOUD_FILE": str(self.sim_json),
                "AZURE_TENANT_ID": info["tenantId"],
                "AZURE_CLIENT_ID": operator["clientId"],
                "AZURE_CLIENT_SECRET": operator["clientSecret"],
            }
        )
        # A metrics port of its own, as a Deployment has, so /metrics can be explored.
        self.metrics_port = free_port()
        self.spawn(
            "operator",
            [sys.executable, "-m", "batchcert", "run", "--metrics-port", str(self.metrics_port)],
            env,
        )
        print(f"operator log: {self.state_dir / 'operator.log'}")
        print(f"operator metrics: http://127.0.0.1:{self.metrics_port}/metrics")

    def apply_example(self, info: dict[str, Any]) -> None:
        import yaml

        step("Applying examples/batchcertpool.yaml, pointed at the simulator")
        manifest = yaml.safe_load(EXAMPLE.read_text())
        demo = info["demo"]
        spec = manifest["spec"]
        spec["account"] = {
            "subscriptionId": demo["subscriptionId"],
            "resourceGroup": demo["resourceGroup"],
            "name": demo["batchAccount"],
        }
        spec["identity"] = {"resourceId": demo["identity"]["resourceId"]}  # clientId looked up
        spec["certificates"] = [{"vaultUrl": demo["vaultUrl"], "name": demo["certificate"]}]
        spec["keyVaultExtension"]["pollingIntervalSeconds"] = DEMO_POLLING_SECONDS
        print(
            "  spec.account, spec.identity (without clientId) and spec.certificates now name "
            "the simulator's resources"
        )
        self.kubectl("create", "namespace", NAMESPACE, check=False)
        self.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(manifest), show=True)

    def wait_ready(self, why: str) -> None:
        step(f"Waiting for Ready=True ({why})")
        self.wait_for("Ready", self.ready, 240)
        self.kubectl("get", "bcp", "-n", NAMESPACE, "-o", "wide", show=True)

    def rotate(self, info: dict[str, Any]) -> None:
        demo = info["demo"]
        cert = self.control.certificate(demo["vault"], demo["certificate"])
        current = cert["current"]
        lifetime = current["exp"] - current["nbf"]
        now = datetime.fromisoformat(self.control.clock()["now"]).timestamp()
        advance = current["nbf"] + 0.8 * lifetime - now + 3600
        step(
            f"Advancing the simulated clock {advance / 86400:.0f} days, past the AutoRenew point "
            "(80% of the certificate's lifetime)"
        )
        self.control.advance(advance)
        self.rotated_at = time.monotonic()
        renewed = self.control.certificate(demo["vault"], demo["certificate"])["current"]
        print(
            f"Key Vault renewed {demo['certificate']}: version {current['version'][:8]} → "
            f"{renewed['version'][:8]}"
        )
        step("Waiting for the operator to see the new version")
        self.wait_for(
            "the rotation in status",
            lambda: any(c.get("rotations") == 1 for c in self.status().get("certificates", [])),
            60,
        )
        self.kubectl("get", "bcp", "-n", NAMESPACE, show=True)
        item = self.status()["certificates"][0]
        print(
            f"status.certificates[0]: version {item['version']}, rotations {item['rotations']}, "
            f"lastRotationTime {item['lastRotationTime']}"
        )
        self.kubectl(
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "reason=CertificateRotated",
            show=True,
        )

    def show_verification(self) -> None:
        step("Verification: a Batch task on each node read the installed certificate")
        nodes_ready: dict[str, Any] = next(
            (c for c in self.status().get("conditions", []) if c.get("type") == "NodesReady"), {}
        )
        verification = self.status().get("nodes", {}).get("verification", {})
        print(
            f"NodesReady: {nodes_ready.get('status')} ({nodes_ready.get('reason')}): "
            f"{nodes_ready.get('message')}"
        )
        print(
            f"status.nodes.verification: {verification.get('current', 0)} current, "
            f"{verification.get('stale', 0)} stale, {verification.get('unverified', 0)} "
            f"unverified (last run {verification.get('lastRunTime')})"
        )
        if nodes_ready.get("reason") == "RotationVerified":
            print(
                f"Rotation → RotationVerified in {time.monotonic() - self.rotated_at:.0f}s "
                f"(the extension's polling interval is {DEMO_POLLING_SECONDS}s)"
            )
        self.kubectl(
            "get", "events", "-n", NAMESPACE, "--field-selector", "reason=NodesVerified", show=True
        )

    def finish(self, keep: bool) -> None:
        self.kubectl("describe", "bcp", "render-pool", "-n", NAMESPACE, show=True)
        if keep:
            step("Leaving everything running (--keep)")
            lines = handoff_lines(
                kubeconfig=Path(self.cluster.kubeconfig).resolve(),
                bin_dir=Path(sys.executable).parent.resolve(),
                state_dir=self.state_dir.resolve(),
                sim_json=self.sim_json.resolve(),
                metrics_port=self.metrics_port,
                pids=[p.pid for p in self.processes],
            )
            print("\n".join(f"  {line}" if line else "" for line in lines))
            self.processes.clear()
            self.cluster = None
            return
        step("Deleting the BatchCertPool (deletionPolicy Delete removes the pool in Azure)")
        self.kubectl("delete", "bcp", "render-pool", "-n", NAMESPACE, "--timeout=120s", show=True)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(state_dir)
    started = time.monotonic()
    try:
        demo.start_cluster(args.keep)
        info = demo.start_simulator()
        demo.start_operator(info)
        demo.apply_example(info)
        demo.wait_ready("pool created, nodes allocated, extension healthy")
        demo.rotate(info)
        demo.wait_ready(
            f"nodes had one {DEMO_POLLING_SECONDS}s polling interval to fetch it, and a task on "
            "each proved it"
        )
        demo.show_verification()
        demo.finish(args.keep)
    finally:
        if not args.keep:
            step("Stopping the operator, the simulator and the control plane")
            demo.stop()
    print(f"\nDemo finished in {time.monotonic() - started:.0f}s.")
    return 0
