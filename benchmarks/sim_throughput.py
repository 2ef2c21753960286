"""Throughput of the Azure simulator itself, so later benchmarks know it is not their bottleneck.

Starts ``batchcert-dev sim`` as a separate process (so the load generator does not share its GIL),
seeds a pool with nodes running the Key Vault extension, then sends a bounded number of
requests to 127.0.0.1 only — ARM GET pool, Key Vault GET certificate, Batch list node
extensions — at concurrency 1 and N over keep-alive HTTPS connections, and prints requests/s
and latency percentiles. ARM and Key Vault throttling are switched off for the run (they would
otherwise cap the figures at the simulated Azure limits, which is not what is measured here).

Run:  .venv/bin/python benchmarks/sim_throughput.py [--requests 2000] [--concurrency 16]
This is a benchmark, not a test: it asserts nothing and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from batchsim.client import SimControl  # noqa: E402
from batchsim.hostaliases import install_host_aliases  # noqa: E402


def start_simulator(state_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "operator"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchcert",
            "sim",
            "--state-dir",
            str(state_dir),
            "--seed",
            "demo",
            "--clock-scale",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (state_dir / "sim.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the simulator did not start")
        time.sleep(0.05)
    return proc


def prepare(info: dict[str, Any], control: SimControl) -> dict[str, str]:
    """Seed a pool with two nodes and return the bearer tokens and URLs to hammer."""
    from batchsim.client import management_client, operator_credential

    demo = info["demo"]
    cred = operator_credential(info)
    arm = management_client(info, cred)
    extension = {
        "name": "KVExtensions",
        "publisher": "Microsoft.Azure.KeyVault",
        "type": "KeyVaultForLinux",
        "typeHandlerVersion": "2.0",
        "settings": {
            "secretsManagementSettings": {
                "pollingIntervalInS": "300",
                "requireInitialSync": True,
                "observedCertificates": [demo["secretId"]],
            },
            "authenticationSettings": {"msiClientId": demo["identity"]["clientId"]},
        },
    }
    arm.pool.create(
        demo["resourceGroup"],
        demo["batchAccount"],
        "bench",
        {
            "properties": {
                "vmSize": "STANDARD_D2S_V3",
                "deploymentConfiguration": {
                    "virtualMachineConfiguration": {
                        "imageReference": {
                            "publisher": "canonical",
                            "offer": "ubuntuserver",
                            "sku": "20.04-lts",
                            "version": "latest",
                        },
                        "nodeAgentSkuId": "batch.node.ubuntu 20.04",
                        "extensions": [extension],
                    }
                },
                "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 2}},
            },
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {demo["identity"]["resourceId"]: {}},
            },
        },
    )
    control.advance(600)
    control.set_throttle(arm={"enabled": False}, keyvault={"enabled": False})
    node = control.pools()[0]["nodes"][0]["id"]
    return {
        "arm_token": cred.get_token("https://management.azure.com/.default").token,
        "kv_token": cred.get_token(f"{info['keyVaultAudience']}/.default").token,
        "batch_token": cred.get_token("https://batch.core.windows.net//.default").token,
        "ARM GET pool": (
            f"{info['resourceManager']}subscriptions/{demo['subscriptionId']}/resourceGroups/"
            f"{demo['resourceGroup']}/providers/Microsoft.Batch/batchAccounts/"
            f"{demo['batchAccount']}/pools/bench?api-version=2025-06-01"
        ),
        "KV GET certificate": (
            f"{demo['vaultUrl']}/certificates/{demo['certificate']}/?api-version=2026-04-01"
        ),
        "Batch list node extensions": (
            f"https://{demo['accountEndpoint']}/pools/bench/nodes/{node}/extensions"
            "?api-version=2025-06-01"
        ),
    }


async def hammer(
    url: str, token: str, total: int, concurrency: int, ssl_context: ssl.SSLContext
) -> tuple[float, list[float]]:
    import aiohttp

    latencies: list[float] = []
    remaining = total
    connector = aiohttp.TCPConnector(
        ssl=ssl_context, limit=concurrency, resolver=aiohttp.ThreadedResolver()
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"{url} answered {response.status}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per operation and level")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        proc = start_simulator(Path(tmp))
        try:
            info = json.loads((Path(tmp) / "sim.json").read_text())
            install_host_aliases(info["hostAliases"])
            control = SimControl(Path(tmp) / "sim.json")
            targets = prepare(info, control)
            tokens = {
                "ARM": targets.pop("arm_token"),
                "KV": targets.pop("kv_token"),
                "Batch": targets.pop("batch_token"),
            }
            context = ssl.create_default_context(cafile=info["caBundle"])
            print(f"simulator on 127.0.0.1:{info['port']}, {args.requests} requests per row")
            print(f"{'operation':<28}{'conc.':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
            for name, url in targets.items():
                token = tokens[name.split()[0]]
                for level in (1, args.concurrency):
                    elapsed, lat = asyncio.run(hammer(url, token, args.requests, level, context))
                    lat.sort()
                    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                    print(
                        f"{name:<28}{level:>6}{args.requests / elapsed:>10.0f}"
                        f"{statistics.median(lat) * 1000:>9.2f}{p99 * 1000:>9.2f}"
                    )
            reads = control.counters()["secretReads"]
            print(f"secret reads during the run: {reads}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
