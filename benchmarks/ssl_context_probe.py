"""Does a CA-bundle path cost the operator memory and connection reuse? A focused probe.

``make bench`` showed the operator's RSS growing with the number of Azure requests it makes in a
burst. azure-core's aiohttp transport builds a new ``ssl.SSLContext`` (loading the CA file) for
every request when ``connection_verify`` is a *path*, and aiohttp pools connections per SSL
context, so none is reused. This probe runs the operator's own ``BatchNodesAdapter`` (the real
``AzureClients``, bounded concurrency 8) against a simulator in two child processes:

* ``path``: the cloud file's ``caBundle`` is passed as ``connection_verify`` (what the operator
  does for any custom cloud, the simulator included);
* ``default``: no ``caBundle``; the same CA is trusted through ``SSL_CERT_FILE`` instead, so the
  SDK gets ``verify=True`` and aiohttp's one shared default context (the public-cloud path).

and prints, for each, the child's RSS growth and the requests per second.

Run:  .venv/bin/python benchmarks/ssl_context_probe.py [--passes 400]
A benchmark, not a test: it asserts nothing and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "tests"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def child_main(
    mode: str, sim_json: str, info: dict[str, Any], passes: int
) -> dict[str, float | str]:
    from batchcert.adapters.azure_clients import AzureClients
    from batchcert.adapters.batchnodes import BatchNodesAdapter
    from batchcert.config import load_config
    from batchsim.hostaliases import install_host_aliases

    install_host_aliases(info["hostAliases"])
    config = load_config({"BATCHCERT_CLOUD_FILE": sim_json})
    if mode == "default":
        config = config.with_cloud(replace(config.cloud, ca_bundle=None))
    clients = AzureClients(config)
    nodes = BatchNodesAdapter(clients, concurrency=8)
    endpoint = info["demo"]["accountEndpoint"]

    async def one_pass() -> int:
        reading = await nodes.read_nodes(endpoint, "bench", "KVExtensions", datetime.now(UTC))
        return 1 + len(reading.nodes)

    await one_pass()  # warm: token, imports, first connection
    before = rss_mb()
    started = time.perf_counter()
    requests = sum(await asyncio.gather(*(one_pass() for _ in range(passes))))
    elapsed = time.perf_counter() - started
    after = rss_mb()
    await clients.close()
    await clients.credential.close()
    return {
        "mode": mode,
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_growth_mb": round(after - before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=400, help="node passes (3 requests each)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SIM_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, sim_json = args.child
        info = json.loads(Path(sim_json).read_text())
        print(json.dumps(asyncio.run(child_main(mode, sim_json, info, args.passes))))
        return

    import sim_throughput

    from batchsim.client import SimControl
    from support.operator import operator_env

    with tempfile.TemporaryDirectory(prefix="ssl-probe-") as tmp:
        proc = sim_throughput.start_simulator(Path(tmp))
        try:
            sim_json = Path(tmp) / "sim.json"
            info = json.loads(sim_json.read_text())
            sim_throughput.prepare(info, SimControl(sim_json))  # pool "bench", 2 nodes
            for mode in ("path", "default"):
                env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
                env.update(operator_env(sim_json))
                env.pop("BATCHCERT_CLOUD_FILE", None)
                if mode == "default":
                    env["SSL_CERT_FILE"] = info["caBundle"]
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--passes",
                        str(args.passes),
                        "--child",
                        mode,
                        str(sim_json),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=600,
                )
                print(out.stdout.strip() or out.stderr[-2000:])
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
