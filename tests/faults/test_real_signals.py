"""Real Azure shapes and silent node failures: the operator stays right and names causes.

Covers: node-extension answers in every shape recorded or documented (integer and string
``level``, ``instanceView: {}``, ``settings`` as a JSON string, Batch's own extension, odd junk)
injected on a Ready object — no reconcile raises, NodesReady degrades or holds honestly, Ready
returns when the answer does; nodes that cannot fetch and say only "Failed to download ...,
retrying" (the realistic default) — the cause proven on the control plane (no vault access,
an identity whose clientId the extension does not use); Key Vault 429 without Retry-After (the
recorded real shape) — backed off, no hot loop. Each: no traceback, bounded request rate.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.faults import FaultStack, Scenario, open_fault

RECORDED = json.loads((Path(__file__).parents[1] / "data/azure/recorded.json").read_text())
FAULT_SECONDS = 15
MAX_PER_MINUTE = 60
# A 200 answer is not an error to back off from: failing nodes are re-read every busy interval
# (1 s in the test operator's config) per 50 nodes, by design; a hot loop would be far more.
MAX_NODE_READS_PER_MINUTE = 75


def _our_extension(level: Any, state: str, message: str) -> dict[str, Any]:
    return {
        "provisioningState": state,
        "instanceView": {
            "name": "KVExtensions",
            "statuses": [
                {
                    "code": f"ProvisioningState/{state.lower()}",
                    "level": level,
                    "displayStatus": state,
                    "message": message,
                }
            ],
        },
        "vmExtension": {
            "name": "KVExtensions",
            "publisher": "Microsoft.Azure.KeyVault",
            "type": "KeyVaultForLinux",
            "typeHandlerVersion": "3.0",
            "settings": json.dumps({"secretsManagementSettings": {"pollingIntervalInS": "60"}}),
        },
    }


SHAPES = {
    # Each a whole list answer for .../nodes/{id}/extensions.
    "recorded-creating": RECORDED["extensions_creating"]["body"]["value"],
    "spec-example-string-levels": RECORDED["extensions_spec_example"]["body"]["value"],
    "generic-failure-level-int": [
        _our_extension(0, "Creating", "Failed to download one or more certificates, retrying..."),
        RECORDED["extensions_succeeded"]["body"]["value"][0],
    ],
    "failed-level-2": [_our_extension(2, "Failed", "Failed to download one or more certificates.")],
    "junk": [
        None,
        7,
        {"instanceView": "x", "vmExtension": ["y"]},
        {"vmExtension": {"name": "KVExtensions"}, "instanceView": {"statuses": {"a": 1}}},
    ],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_node_extension_answer_shapes_never_break_a_reconcile(
    fstack: FaultStack, scenario: Scenario, shape: str
) -> None:
    name = f"r-{shape}"[:40]
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    fault = open_fault(
        fstack,
        FAULT_SECONDS,
        # The operator reads our one extension (ComputeNodeExtension_Get): answer it with the
        # first item of each list shape (another extension, ours odd, or junk).
        match={"service": "batch", "method": "GET", "pathRegex": r"/extensions/[^/]+/?$"},
        status=200,
        body=SHAPES[shape][0],
    )
    scenario.injected = f"node-extension list answered as '{shape}' for {FAULT_SECONDS}s"

    def not_ready() -> bool:
        return fstack.condition(name, fstack.home, "NodesReady").get("status") == "False"

    fstack.wait_until(
        "NodesReady False", not_ready, name=name, namespace=fstack.home, timeout=FAULT_SECONDS
    )
    reason = fstack.reason(name, "NodesReady")
    fstack.wait_ready(name, fstack.home, timeout=FAULT_SECONDS + 60)
    scenario.converge_seconds = fault.seconds_since_cleared()
    scenario.requests_per_minute = fault.rate_per_minute()
    assert scenario.requests_per_minute <= MAX_NODE_READS_PER_MINUTE, fault.injected()
    fstack.assert_operator_healthy()
    assert "Traceback" not in fstack.operator.log()
    scenario.operator_did = f"NodesReady {reason} while the shape lasted, no traceback; Ready after"


def test_nodes_that_cannot_fetch_are_diagnosed_on_the_control_plane(
    fstack: FaultStack, scenario: Scenario
) -> None:
    """Realistic nodes say only "retrying"; the operator proves the identity has no access."""
    name, demo = "r-noaccess", fstack.demo
    vault = f"kv{uuid.uuid4().hex[:8]}"
    fstack.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], vault)
    fstack.control.grant(
        vault,
        fstack.sim.info["principals"]["operator"]["objectId"],
        {"certificates": ["get", "list"]},
    )
    fstack.control.add_certificate(vault, "locked")
    vault_url = demo["vaultUrl"].replace("demokv.", f"{vault}.")
    scenario.injected = (
        "a vault the pool identity has no access policy on (nodes say only 'retrying')"
    )
    fstack.apply(
        fstack.manifest(name, fstack.home, certificates=[{"vaultUrl": vault_url, "name": "locked"}])
    )
    detect = fstack.wait_reason(name, "NodesReady", "VaultAccessDenied", timeout=90)
    message = fstack.condition(name, fstack.home, "NodesReady")["message"]
    assert demo["identity"]["principalId"] in message and vault in message
    fstack.control.grant(vault, demo["identity"]["principalId"], {"secrets": ["get", "list"]})
    scenario.converge_seconds = round(fstack.timed_ready(name, timeout=120), 1)
    scenario.extra["detectSeconds"] = round(detect, 1)
    fstack.assert_operator_healthy()
    scenario.operator_did = (
        "NodesReady VaultAccessDenied naming principal and vault; Ready once granted"
    )


def test_keyvault_429_without_retry_after_backs_off(fstack: FaultStack, scenario: Scenario) -> None:
    name = "r-kv429"
    recorded = RECORDED["keyvault_throttled"]
    fstack.apply(fstack.manifest(name, fstack.home))
    fstack.wait_ready(name, fstack.home)
    fault = open_fault(
        fstack,
        FAULT_SECONDS,
        match={"service": "keyvault", "method": "GET", "pathRegex": "/certificates/"},
        status=429,
        body=recorded["body"],
    )
    scenario.injected = (
        f"Key Vault 429 Throttled, recorded body, no Retry-After, for {FAULT_SECONDS}s"
    )
    fstack.wait_reason(name, "CertificateReady", "AzureThrottled", timeout=FAULT_SECONDS + 10)
    fstack.wait_ready(name, fstack.home, timeout=FAULT_SECONDS + 60)
    scenario.converge_seconds = fault.seconds_since_cleared()
    scenario.requests_per_minute = fault.rate_per_minute()
    assert scenario.requests_per_minute <= MAX_PER_MINUTE, fault.injected()
    fstack.assert_operator_healthy()
    scenario.operator_did = "CertificateReady AzureThrottled, reads backed off; Ready after"
