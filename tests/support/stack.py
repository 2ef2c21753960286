"""The whole stack for operator integration tests: simulator + real operator process + cluster.

``OperatorStack`` gives tests the user's tools (kubectl through the cluster), the simulator's
control API, a real Azure SDK client for checking what Azure holds, and small waiters that fail
with the operator's log and the object's status attached, so a red test explains itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.cluster import KubeCluster
from support.operator import OperatorProcess

GROUP = "batchcert.dev"

# Real-time clock, but nodes that arrive and boot in seconds rather than minutes.
FAST_NODES = {
    "arrivalDelaySeconds": 2,
    "bootSeconds": 1,
    "removalDelaySeconds": 2,
    "deleteDurationSeconds": 2,
    "lroRetryAfterSeconds": 1,
    "extensionRetryIntervalSeconds": 1,
    "extensionMaxAttempts": 3,
}


@contextmanager
def fast_simulator(state_dir: Path) -> Iterator[Any]:
    """The simulator (demo world, real-time clock) on a thread, with FAST_NODES behaviour."""
    from batchsim.server import simulator

    with simulator(state_dir=state_dir, seed="demo", clock_scale=1.0) as sim:
        sim.control.set_node_behaviour(**FAST_NODES)
        yield sim


def forget_objects(cluster: KubeCluster, namespaces: tuple[str, ...] = ()) -> None:
    """Drop the BatchCertPools left in the shared control plane (all, or those in
    ``namespaces``), finalizers and all, once their operator and simulator are gone: else the
    next module's operator (it watches every namespace) keeps reconciling them against a
    simulator that no longer listens, and its log and CPU are no longer its own tests'."""
    found = cluster.kubectl("get", "bcp", "-A", "-o", "json", check=True)
    for item in json.loads(found.stdout).get("items", []):
        meta = item["metadata"]
        if namespaces and meta["namespace"] not in namespaces:
            continue
        where = ("-n", meta["namespace"], f"bcp/{meta['name']}")
        if meta.get("finalizers"):
            patch = '{"metadata":{"finalizers":null}}'
            cluster.kubectl("patch", *where, "--type=merge", "-p", patch)
        cluster.kubectl("delete", *where, "--wait=false", "--ignore-not-found")


@dataclass
class OperatorStack:
    cluster: KubeCluster
    sim: Any  # batchsim.server.RunningSimulator
    operator: OperatorProcess

    @property
    def demo(self) -> dict[str, Any]:
        return dict(self.sim.info["demo"])

    @property
    def control(self) -> Any:
        return self.sim.control

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.kubectl("create", "namespace", name, check=True)
        return name

    def manifest(self, name: str, namespace: str, **spec_overrides: Any) -> dict[str, Any]:
        demo = self.demo
        spec: dict[str, Any] = {
            "account": {
                "subscriptionId": demo["subscriptionId"],
                "resourceGroup": demo["resourceGroup"],
                "name": demo["batchAccount"],
            },
            "vmSize": "STANDARD_D2S_V3",
            "image": {
                "publisher": "canonical",
                "offer": "0001-com-ubuntu-server-jammy",
                "sku": "22_04-lts",
                "version": "latest",
            },
            "nodeAgentSkuId": "batch.node.ubuntu 22.04",
            "scale": {"fixed": {"targetDedicatedNodes": 1}},
            "identity": {"resourceId": demo["identity"]["resourceId"]},
            "certificates": [{"secretId": demo["secretId"]}],
            "keyVaultExtension": {"pollingIntervalSeconds": 60},
        }
        spec.update(spec_overrides)
        return {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "BatchCertPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.apply(yaml.safe_dump(manifest))

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        result = self.cluster.kubectl("get", "bcp", name, "-n", namespace, "-o", "json", check=True)
        return dict(json.loads(result.stdout))

    def condition(self, name: str, namespace: str, type_: str) -> dict[str, Any]:
        for condition in self.get(name, namespace).get("status", {}).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return {}

    def events(self, namespace: str) -> list[dict[str, Any]]:
        result = self.cluster.kubectl("get", "events", "-n", namespace, "-o", "json", check=True)
        return list(json.loads(result.stdout)["items"])

    def event_reasons(self, namespace: str) -> list[str]:
        return [e["reason"] for e in self.events(namespace)]

    def status_command(self, name: str, namespace: str) -> subprocess.CompletedProcess[str]:
        """``batchcert status NAME -n NAMESPACE`` as a user runs it against this cluster."""
        return subprocess.run(
            [sys.executable, "-m", "batchcert", "status", name, "-n", namespace],
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_ready(self, name: str, namespace: str, timeout: int = 90) -> None:
        result = self.cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            f"bcp/{name}",
            "-n",
            namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 15,
        )
        if result.returncode != 0:
            raise AssertionError(self.explain(name, namespace, f"never Ready: {result.stderr}"))

    def wait_until(
        self,
        what: str,
        check: Callable[[], bool],
        *,
        name: str,
        namespace: str,
        timeout: float = 90,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(1)
        raise AssertionError(self.explain(name, namespace, f"timed out waiting for {what}"))

    def explain(self, name: str, namespace: str, message: str) -> str:
        status = self.cluster.kubectl("get", "bcp", name, "-n", namespace, "-o", "yaml").stdout
        log_tail = "\n".join(self.operator.log().splitlines()[-40:])
        return f"{message}\n--- object ---\n{status}\n--- operator log (tail) ---\n{log_tail}"

    def pool_in_azure(self, pool_name: str) -> dict[str, Any] | None:
        """The pool as Azure (the simulator) returns it, read with the real management SDK."""
        from azure.core.exceptions import ResourceNotFoundError

        from batchsim.client import management_client

        demo = self.demo
        client = management_client(self.sim.info)
        try:
            pool = client.pool.get(demo["resourceGroup"], demo["batchAccount"], pool_name)
        except ResourceNotFoundError:
            return None
        finally:
            client.close()
        return dict(pool.as_dict())
