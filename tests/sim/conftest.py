"""Fixtures for the simulator's conformance tests: a running simulator and real SDK clients.

Every test gets its own simulator (on a background thread, HTTPS on a free loopback port, the
demo world seeded) with the simulated clock **frozen** (scale 0): nothing happens in simulated
time unless the test advances the clock, so node arrival, polling and renewals are
deterministic. Clients are the real ones — azure-identity, azure-mgmt-batch, azure-batch —
pointed at the simulator exactly as the operator points them, with TLS verification on.

Builders (``kv_extension``, ``pool_body``) produce request bodies shaped like the public
Microsoft.Batch examples, so tests state only what they vary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchsim import client as sim_client
from batchsim.client import SimControl
from batchsim.server import RunningSimulator, simulator

DATA = Path(__file__).parent / "data"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    with simulator(seed="demo", clock_scale=0.0) as running:
        yield running


@pytest.fixture
def info(sim: RunningSimulator) -> dict[str, Any]:
    return sim.info


@pytest.fixture
def demo(info: dict[str, Any]) -> dict[str, Any]:
    return dict(info["demo"])


@pytest.fixture
def control(sim: RunningSimulator) -> SimControl:
    return sim.control


@pytest.fixture
def operator_credential(info: dict[str, Any]) -> Any:
    return sim_client.operator_credential(info)


@pytest.fixture
def workload_credential(info: dict[str, Any]) -> Any:
    from azure.identity import WorkloadIdentityCredential

    return WorkloadIdentityCredential(
        tenant_id=info["tenantId"],
        client_id=info["principals"]["workload"]["clientId"],
        token_file_path=info["federatedTokenFile"],
        authority=info["authorityHost"],
        disable_instance_discovery=True,
        connection_verify=info["caBundle"],
    )


@pytest.fixture
def arm(info: dict[str, Any], demo: dict[str, Any], operator_credential: Any) -> Any:
    """``BatchManagementClient`` for the demo subscription (fast retries for tests)."""
    return sim_client.management_client(info, operator_credential, retry_backoff_factor=0.05)


@pytest.fixture
def batch(info: dict[str, Any], demo: dict[str, Any], operator_credential: Any) -> Any:
    """``BatchClient`` for the demo account's data plane (the ``accountEndpoint``)."""
    from azure.batch import BatchClient

    return BatchClient(
        f"https://{demo['accountEndpoint']}",
        operator_credential,
        connection_verify=info["caBundle"],
        retry_backoff_factor=0.05,
    )


@pytest.fixture
def kv_extension(demo: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    def build(
        *,
        urls: list[Any] | None = None,
        client_id: str | None = "demo",
        polling: str = "300",
        require_initial_sync: bool = True,
        version: str = "2.0",
        os_type: str = "Linux",
        name: str = "KVExtensions",
    ) -> dict[str, Any]:
        auth: dict[str, Any] = {"msiEndpoint": "http://169.254.169.254/metadata/identity"}
        if client_id is not None:
            auth["msiClientId"] = demo["identity"]["clientId"] if client_id == "demo" else client_id
        return {
            "name": name,
            "publisher": "Microsoft.Azure.KeyVault",
            "type": f"KeyVaultFor{os_type}",
            "typeHandlerVersion": version,
            "autoUpgradeMinorVersion": True,
            "settings": {
                "secretsManagementSettings": {
                    "pollingIntervalInS": polling,
                    "requireInitialSync": require_initial_sync,
                    "certificateStoreLocation": "/var/lib/waagent/Microsoft.Azure.KeyVault",
                    "observedCertificates": urls if urls is not None else [demo["secretId"]],
                },
                "authenticationSettings": auth,
            },
        }

    return build


@pytest.fixture
def pool_body(demo: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    def build(
        *,
        nodes: int = 1,
        extensions: list[dict[str, Any]] | None = None,
        identity: bool = True,
        vm_size: str = "STANDARD_D2S_V3",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "properties": {
                "vmSize": vm_size,
                "taskSchedulingPolicy": {"nodeFillType": "Pack"},
                "deploymentConfiguration": {
                    "virtualMachineConfiguration": {
                        "imageReference": {
                            "publisher": "canonical",
                            "offer": "ubuntuserver",
                            "sku": "20.04-lts",
                            "version": "latest",
                        },
                        "nodeAgentSkuId": "batch.node.ubuntu 20.04",
                        "extensions": extensions or [],
                    }
                },
                "scaleSettings": {
                    "fixedScale": {
                        "targetDedicatedNodes": nodes,
                        "targetLowPriorityNodes": 0,
                        "resizeTimeout": "PT15M",
                    }
                },
            }
        }
        if identity:
            body["identity"] = {
                "type": "UserAssigned",
                "userAssignedIdentities": {demo["identity"]["resourceId"]: {}},
            }
        return body

    return build


@pytest.fixture
def example_body(demo: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    """A public example request body, with identity ids moved into the demo world."""

    def load(name: str) -> dict[str, Any]:
        text = (DATA / f"{name}.request.json").read_text()
        text = text.replace("/subscriptions/subid/", f"/subscriptions/{demo['subscriptionId']}/")
        text = text.replace(
            "/resourceGroups/default-azurebatch-japaneast/",
            f"/resourceGroups/{demo['resourceGroup']}/",
        )
        return copy.deepcopy(json.loads(text))

    return load


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], text: str) -> None:
        self.status, self.headers, self.text = status, headers, text

    def json(self) -> Any:
        return json.loads(self.text)


@pytest.fixture
def raw(info: dict[str, Any]) -> Callable[..., RawResponse]:
    """Plain HTTPS calls (``requests``, CA-verified) for what SDKs would not send."""
    import requests

    def call(
        method: str,
        url: str,
        *,
        token: str | None = None,
        body: Any = None,
        data: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        response = requests.request(
            method, url, data=data, headers=all_headers, verify=info["caBundle"], timeout=30
        )
        return RawResponse(response.status_code, dict(response.headers), response.text)

    return call


@pytest.fixture
def arm_token(operator_credential: Any) -> str:
    return str(operator_credential.get_token("https://management.azure.com/.default").token)
