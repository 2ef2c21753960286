"""The operator's User-Agent tag, end to end: ``AzureClients`` → the simulator's request log.

Covers: every SDK client the operator builds (ARM, Key Vault, Batch) sends
``batchcert-operator/<version>`` plus ``BATCHCERT_USER_AGENT_SUFFIX`` in front of the SDK's own
User-Agent; the simulator records it per request and counts per user agent (``/counters``'
``byUserAgent``), which is how the benchmark splits a sharded run's requests by shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from batchcert import __version__
from batchcert.adapters.azure_clients import AzureClients, build_user_agent
from batchcert.config import load_cloud_file, load_config
from batchsim.client import SimControl


def test_user_agent_carries_the_suffix_only_when_set() -> None:
    assert build_user_agent({}) == f"batchcert-operator/{__version__}"
    tagged = build_user_agent({"BATCHCERT_USER_AGENT_SUFFIX": "shard/1-of-2"})
    assert tagged == f"batchcert-operator/{__version__} shard/1-of-2"


def test_every_client_sends_the_tag_and_the_simulator_counts_it(
    info: dict[str, Any],
    demo: dict[str, Any],
    control: SimControl,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud_file = tmp_path / "sim.json"
    cloud_file.write_text(json.dumps(info))
    principal = info["principals"]["operator"]
    monkeypatch.setenv("AZURE_TENANT_ID", info["tenantId"])
    monkeypatch.setenv("AZURE_CLIENT_ID", principal["clientId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", principal["clientSecret"])
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    monkeypatch.setenv("BATCHCERT_USER_AGENT_SUFFIX", "shard/1-of-2")
    config = load_config({}).with_cloud(load_cloud_file(cloud_file))
    since = int(control.requests(limit=1)[-1]["seq"]) if control.requests(limit=1) else 0

    async def call_each_service() -> None:
        clients = AzureClients(config)
        try:
            arm = clients.arm(demo["subscriptionId"])
            account = await arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
            await clients.vault(demo["vaultUrl"]).get_certificate(demo["certificate"])
            batch = clients.batch(str(account.account_endpoint))
            # The simulator has no pool list on the data plane: its 404 is logged all the same.
            with contextlib.suppress(ResourceNotFoundError):
                async for _ in batch.list_pools():
                    pass
        finally:
            await clients.close()

    asyncio.run(call_each_service())
    tag = f"batchcert-operator/{__version__} shard/1-of-2 "
    seen = {
        r["service"]: r["user_agent"]
        for r in control.requests(sinceSeq=since)
        if r["service"] in ("arm", "keyvault", "batch")
    }
    assert set(seen) == {"arm", "keyvault", "batch"}
    assert all(str(agent).startswith(tag) for agent in seen.values()), seen
    counted = {
        row["service"]
        for row in control.counters()["byUserAgent"]
        if str(row["userAgent"]).startswith(tag)
    }
    assert counted == {"arm", "keyvault", "batch"}
