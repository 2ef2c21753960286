"""Conformance: the simulator's default node-extension answers match recorded real Azure.

Drives the real ``azure-batch`` SDK (and raw HTTPS for key sets the SDK would hide) against the
default, realistic simulator and compares with recorded bodies in ``tests/data/azure/recorded.json``
(cut from ``../shared/azure-recordings/batch-dataplane-nodes-extensions.json``; each entry names
its source). Covers: node ``creating`` → ``starting`` → ``idle``; ``provisioningState`` Creating
with ``instanceView: {}``; Batch's own ``batchNodeExtension`` on every node; Succeeded with the
integer level 0 and "Plugin enabled", no subStatuses, the same keys as recorded; ``settings`` a
JSON string; a failing fetch says only the generic text (no cause, no versions) while retries back
off, then Failed with level 2; without requireInitialSync, and after a first success, a failure
is invisible, while the node's runtime still knows what it fetched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RECORDED = json.loads((Path(__file__).parents[1] / "data/azure/recorded.json").read_text())
GENERIC = "Failed to download one or more certificates, retrying..."
Ext = Callable[..., dict[str, Any]]


@pytest.fixture
def make_pool(
    arm: Any, demo: dict[str, Any], pool_body: Callable[..., dict[str, Any]], control: Any
) -> Callable[..., str]:
    def make(name: str = "p", *, extensions: list[dict[str, Any]], settle: float = 60.0) -> str:
        arm.pool.create(
            demo["resourceGroup"],
            demo["batchAccount"],
            name,
            pool_body(nodes=1, extensions=extensions),
        )
        control.advance(settle)
        return name

    return make


@pytest.fixture
def raw_extensions(
    raw: Any, batch: Any, demo: dict[str, Any], info: dict[str, Any], operator_credential: Any
) -> Callable[[str], list[dict[str, Any]]]:
    """The raw JSON ``value`` of the node-extension list (the SDK model hides key sets)."""
    token = operator_credential.get_token("https://batch.core.windows.net//.default").token

    def read(pool: str) -> list[dict[str, Any]]:
        node = next(iter(batch.list_nodes(pool))).id
        endpoint = batch._config.endpoint.rstrip("/")  # the account URL the client was given
        response = raw(
            "GET",
            f"{endpoint}/pools/{pool}/nodes/{node}/extensions?api-version=2025-06-01",
            token=token,
        )
        assert response.status == 200, response.text
        return list(response.json()["value"])

    return read


def _ours(values: list[dict[str, Any]], name: str = "KVExtensions") -> dict[str, Any]:
    return next(v for v in values if v["vmExtension"]["name"] == name)


def test_creating_node_answers_as_recorded(
    make_pool: Callable[..., str], kv_extension: Ext, raw_extensions: Any, batch: Any, control: Any
) -> None:
    recorded = RECORDED["extensions_creating"]["body"]["value"]
    pool = make_pool(extensions=[kv_extension()], settle=30.0)  # nodes just arrived
    assert {n.state for n in batch.list_nodes(pool)} == {"creating"}
    values = raw_extensions(pool)
    assert sorted(v["vmExtension"]["name"] for v in values) == [
        "KVExtensions",
        "batchNodeExtension",
    ]
    for value in values:
        assert value["provisioningState"] == "Creating" and value["instanceView"] == {}
        assert set(value) == set(recorded[0])
    batch_ext = next(v for v in values if v["vmExtension"]["name"] == "batchNodeExtension")
    assert batch_ext["vmExtension"] == recorded[1]["vmExtension"]  # byte for byte as recorded
    control.advance(6)
    assert {n.state for n in batch.list_nodes(pool)} == {"starting"}


def test_healthy_node_answers_as_recorded(
    make_pool: Callable[..., str], kv_extension: Ext, raw_extensions: Any, batch: Any
) -> None:
    recorded = RECORDED["extensions_succeeded"]["body"]["value"]
    recorded_kv = next(v for v in recorded if v["vmExtension"]["type"] == "KeyVaultForLinux")
    pool = make_pool(extensions=[kv_extension()])
    assert {n.state for n in batch.list_nodes(pool)} == {"idle"}
    values = raw_extensions(pool)
    ours = _ours(values)
    assert ours["provisioningState"] == "Succeeded"
    assert set(ours["instanceView"]) == set(recorded_kv["instanceView"])  # no subStatuses
    [status] = ours["instanceView"]["statuses"]
    assert status == recorded_kv["instanceView"]["statuses"][0]  # level 0, "Plugin enabled"
    assert isinstance(ours["vmExtension"]["settings"], str)
    assert json.loads(ours["vmExtension"]["settings"])["authenticationSettings"]
    mine = _ours(values, "batchNodeExtension")["instanceView"]["statuses"][0]
    assert mine["level"] == 0 and mine["message"].startswith("Enable succeeded")
    # The SDK reads it all without complaint.
    node = next(iter(batch.list_nodes(pool))).id
    assert len(list(batch.list_node_extensions(pool, node))) == 2


def test_a_failing_fetch_says_only_the_generic_text_and_backs_off(
    make_pool: Callable[..., str],
    kv_extension: Ext,
    raw_extensions: Any,
    control: Any,
    demo: dict[str, Any],
) -> None:
    control.set_node_behaviour(extensionRetryIntervalSeconds=10, extensionMaxAttempts=5)
    control.grant(
        demo["vault"],
        demo["identity"]["principalId"],
        {"secrets": ["get", "list"]},
        operation="remove",
    )
    pool = make_pool(extensions=[kv_extension()])
    ours = _ours(raw_extensions(pool))
    assert ours["provisioningState"] == "Creating"
    [status] = ours["instanceView"]["statuses"]
    assert status["message"] == GENERIC and status["level"] == 0
    text = json.dumps(ours["instanceView"])
    assert "Forbidden" not in text and demo["identity"]["principalId"] not in text
    # Attempts 1..5 are 10, 20, 40, 80 s apart: after 60 s more a fixed 10 s interval would have
    # used up every attempt; the backoff has not.
    control.advance(60)
    assert _ours(raw_extensions(pool))["provisioningState"] == "Creating"
    control.advance(200)
    failed = _ours(raw_extensions(pool))
    assert failed["provisioningState"] == "Failed"
    assert failed["instanceView"]["statuses"][0]["level"] == 2
    assert "Forbidden" not in json.dumps(failed)


def test_without_initial_sync_a_failure_is_invisible(
    make_pool: Callable[..., str],
    kv_extension: Ext,
    raw_extensions: Any,
    control: Any,
    demo: dict[str, Any],
) -> None:
    control.grant(
        demo["vault"],
        demo["identity"]["principalId"],
        {"secrets": ["get", "list"]},
        operation="remove",
    )
    pool = make_pool(extensions=[kv_extension(require_initial_sync=False)])
    ours = _ours(raw_extensions(pool))
    assert ours["provisioningState"] == "Succeeded"
    assert ours["instanceView"]["statuses"][0]["message"] == "Plugin enabled"


def test_a_failure_after_a_first_success_is_invisible_but_the_node_keeps_what_it_fetched(
    make_pool: Callable[..., str],
    kv_extension: Ext,
    raw_extensions: Any,
    control: Any,
    demo: dict[str, Any],
) -> None:
    pool = make_pool(extensions=[kv_extension(polling="300")])
    before = _ours(raw_extensions(pool))
    control.grant(
        demo["vault"],
        demo["identity"]["principalId"],
        {"secrets": ["get", "list"]},
        operation="remove",
    )
    renewed = control.renew_certificate(demo["vault"], demo["certificate"])
    control.advance(600)
    after = _ours(raw_extensions(pool))
    assert after == before  # nothing visible
    [entry] = [p for p in control.pools() if p["id"].endswith(f"/pools/{pool}")]
    runtimes = [rt for node in entry["nodes"] for rt in node["extensions"].values()]
    assert runtimes and all(rt["versions"][demo["secretId"]] != renewed for rt in runtimes)
