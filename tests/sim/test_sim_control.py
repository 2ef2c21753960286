"""The simulator as a tool: control API, request log, drift, reset, persistence, process form.

Covers: clock advance/scale; request log filters (service, operation, status, principal,
sinceSeq) and counters per service/operation/status; the operator-style flow reading
certificate metadata leaves ``secretReads`` at 0 while a secret GET is counted; drift (a pool
changed or deleted out of band) visible through the SDK; reset; seeding errors; persistence of
the world, CA and port across restarts with a state dir; ``batchcert-dev sim`` as a subprocess that
writes sim.json and stops cleanly on SIGTERM; no threads left behind by the in-process form.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from batchsim.client import SimControl, SimControlError
from batchsim.server import run_simulator, simulator


def test_clock_advances_and_scales(control: Any) -> None:
    start = control.clock()
    assert start["scale"] == 0.0
    moved = control.advance(3600)
    assert moved["now"] > start["now"]
    assert control.set_clock_scale(60)["scale"] == 60
    with pytest.raises(SimControlError):
        control.advance(-1)


def test_request_log_filters_and_counters(
    arm: Any, demo: dict[str, Any], control: Any, info: dict[str, Any]
) -> None:
    control.clear_requests()
    arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    with pytest.raises(ResourceNotFoundError):
        arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "nope")
    everything = control.requests(service="arm")
    assert [r["operation"] for r in everything] == ["BatchAccount_Get", "Pool_Get"]
    first = everything[0]
    assert first["method"] == "GET"
    assert first["api_version"] == "2025-06-01"
    assert first["principal"] == info["principals"]["operator"]["objectId"]
    assert control.requests(status=404)[0]["operation"] == "Pool_Get"
    assert control.requests(sinceSeq=first["seq"], service="arm") == everything[1:]
    counters = {
        (c["service"], c["operation"], c["status"]): c["count"]
        for c in control.counters()["counters"]
    }
    assert counters[("arm", "Pool_Get", 404)] == 1
    assert counters[("arm", "BatchAccount_Get", 200)] == 1


def test_certificate_metadata_reads_are_not_secret_reads(
    info: dict[str, Any], demo: dict[str, Any], control: Any, operator_credential: Any, raw: Any
) -> None:
    from azure.keyvault.certificates import CertificateClient

    client = CertificateClient(
        demo["vaultUrl"], operator_credential, connection_verify=info["caBundle"]
    )
    cert = client.get_certificate(demo["certificate"])
    assert (
        cert.properties.version
        == control.certificate(demo["vault"], demo["certificate"])["current"]["version"]
    )
    assert control.counters()["secretReads"] == 0
    # A principal allowed to read secrets does so, and it is counted.
    control.grant(demo["vault"], info["principals"]["operator"]["objectId"], {"secrets": ["get"]})
    token = operator_credential.get_token(f"{info['keyVaultAudience']}/.default").token
    assert raw("GET", f"{demo['secretId']}?api-version=7.5", token=token).status == 200
    assert control.counters()["secretReads"] == 1
    assert control.requests(secretRead=True)[0]["service"] == "keyvault"


def test_drift_is_visible_through_the_sdk(
    arm: Any, demo: dict[str, Any], control: Any, pool_body: Callable[..., Any]
) -> None:
    created = arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", pool_body(nodes=1))
    ids = (demo["subscriptionId"], demo["resourceGroup"], demo["batchAccount"], "p")
    control.drift_pool(
        *ids,
        patch={
            "properties": {
                "metadata": [{"name": "changed", "value": "by-hand"}],
                "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 2}},
            }
        },
    )
    drifted = arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "p")
    assert drifted.etag != created.etag
    assert drifted.metadata[0].name == "changed"
    assert drifted.allocation_state == "Resizing"
    control.delete_pool_out_of_band(*ids)
    with pytest.raises(ResourceNotFoundError):
        arm.pool.get(demo["resourceGroup"], demo["batchAccount"], "p")


def test_reset_empties_the_world_and_can_reseed(
    arm: Any, demo: dict[str, Any], control: Any, pool_body: Callable[..., Any]
) -> None:
    arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", pool_body(nodes=0))
    control.reset(seed="none")
    with pytest.raises(ResourceNotFoundError):
        arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"])
    control.reset(seed="demo")
    assert arm.batch_account.get(demo["resourceGroup"], demo["batchAccount"]).name
    assert list(arm.pool.list_by_batch_account(demo["resourceGroup"], demo["batchAccount"])) == []


def test_seeding_errors_are_400s(control: Any, demo: dict[str, Any]) -> None:
    with pytest.raises(SimControlError) as bad_name:
        control.add_batch_account(demo["subscriptionId"], "rg", "no_underscores_allowed")
    assert bad_name.value.status == 400
    with pytest.raises(SimControlError) as no_vault:
        control.add_certificate("absentvault", "c")
    assert no_vault.value.status == 400


def test_state_dir_survives_a_restart(tmp_path: Path) -> None:
    from batchsim.client import management_client as client

    body = {
        "properties": {
            "vmSize": "STANDARD_D2S_V3",
            "deploymentConfiguration": {
                "virtualMachineConfiguration": {
                    "imageReference": {
                        "publisher": "canonical",
                        "offer": "ubuntuserver",
                        "sku": "20.04-lts",
                    },
                    "nodeAgentSkuId": "batch.node.ubuntu 20.04",
                }
            },
        }
    }
    with simulator(state_dir=tmp_path, seed="demo", clock_scale=0) as first:
        info = first.info
        demo = info["demo"]
        created = client(info).pool.create(
            demo["resourceGroup"], demo["batchAccount"], "kept", body
        )
        version = first.control.certificate(demo["vault"], demo["certificate"])["current"]
        ca = Path(first.ca_bundle).read_bytes()
        port = first.port
    assert not (tmp_path / "sim.json").exists()  # removed on a clean stop
    with simulator(state_dir=tmp_path, seed="demo", clock_scale=0) as second:
        assert second.port == port
        assert Path(second.ca_bundle).read_bytes() == ca
        assert second.info["principals"] == info["principals"]
        again = client(second.info).pool.get(demo["resourceGroup"], demo["batchAccount"], "kept")
        assert again.etag == created.etag
        assert second.control.certificate(demo["vault"], demo["certificate"])["current"] == version


def test_cli_runs_in_the_foreground_and_stops_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "operator"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchdev",
            "sim",
            "--state-dir",
            str(tmp_path),
            "--seed",
            "demo",
            "--clock-scale",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        sim_json = tmp_path / "sim.json"
        while not sim_json.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "sim.json never appeared"
            time.sleep(0.05)
        info = json.loads(sim_json.read_text())
        assert set(info) >= {
            "port",
            "caBundle",
            "tenantId",
            "authorityHost",
            "resourceManager",
            "keyVaultDnsSuffix",
            "batchDnsSuffix",
            "hostAliases",
            "control",
            "principals",
            "federatedTokenFile",
        }
        assert SimControl(sim_json).clock()["scale"] == 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "sim.json").exists()
    assert (tmp_path / "state.json").exists()


def test_in_process_simulator_leaves_no_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    with simulator(seed="none") as running:
        assert running.control.clock()
        assert "batchcert-sim" in {t.name for t in threading.enumerate()}
    assert {t.name for t in threading.enumerate()} - before == set()


async def test_async_form_serves_and_stops() -> None:
    async with run_simulator(seed="demo") as running:
        assert running.info["demo"]["batchAccount"] == "demobatch"
        assert running.control.clock()["scale"] == 1.0
        port = running.port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the port is closed again


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/throttle", {"arm": 1}),
        ("PUT", "/throttle", {"arm": {"clock": "lunar"}}),
        ("PUT", "/vaults/demokv/certificates/x", {"validityMonths": "x"}),
        (
            "POST",
            "/vaults/demokv/accessPolicies",
            {"objectId": "o", "permissions": {"secrets": "get"}},
        ),
        (
            "POST",
            "/vaults/demokv/accessPolicies",
            {"objectId": "o", "permissions": {"secrets": [1]}},
        ),
        ("POST", "/principals", {"name": "x", "federated": [1]}),
        (
            "PUT",
            "/batchAccounts",
            {"subscriptionId": "s", "resourceGroup": "r", "name": "abc", "location": 5},
        ),
        ("PUT", "/nodeBehaviour", {"capacity": "x"}),
        ("POST", "/reset", {"seed": "nope"}),
    ],
)
def test_control_api_refuses_bad_input_with_400(
    control: Any, method: str, path: str, body: dict[str, Any]
) -> None:
    with pytest.raises(SimControlError) as caught:
        control.request(method, path, body)
    assert caught.value.status == 400
