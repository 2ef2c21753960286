"""The operator's Batch node adapter against the simulator, through its real clients.

Covers: the node list is one ``ComputeNode_List`` request with ``$select=id,state`` and
``maxresults=1000``; our extension is read by name with ``ComputeNodeExtension_Get``, one request
per node asked for and none for the others; a node without our extension reads as "not
installed", not as an error; no answer shape raises (junk Get and list bodies degrade one node, or
become a failed call); 429 answers with Retry-After from the Batch data plane halve the
adaptive concurrency limit, and successes bring it back to the configured maximum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from batchcert.adapters.azure_clients import AzureClients
from batchcert.adapters.batchnodes import BatchNodesAdapter
from batchcert.config import load_config
from batchcert.errors import AzureCallError
from batchsim.server import RunningSimulator

Ext = Callable[..., dict[str, Any]]


@pytest.fixture
async def adapter(
    sim: RunningSimulator, info: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[], BatchNodesAdapter]]:
    creds = info["principals"]["operator"]
    monkeypatch.setenv("AZURE_TENANT_ID", info["tenantId"])
    monkeypatch.setenv("AZURE_CLIENT_ID", creds["clientId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", creds["clientSecret"])
    config = load_config({"BATCHCERT_CLOUD_FILE": str(sim.sim_json)})
    opened: list[AzureClients] = []

    def build() -> BatchNodesAdapter:
        opened.append(AzureClients(config))
        return BatchNodesAdapter(opened[-1], concurrency=8)

    yield build
    for clients in opened:
        await clients.close()


PoolOf = Callable[[int], tuple[BatchNodesAdapter, str, str]]


@pytest.fixture
def pool_of(
    adapter: Callable[[], BatchNodesAdapter],
    arm: Any,
    demo: dict[str, Any],
    pool_body: Callable[..., dict[str, Any]],
    kv_extension: Ext,
    control: Any,
) -> PoolOf:
    """A pool of ``count`` nodes with our extension, up and running: (adapter, endpoint, pool)."""

    def make(count: int) -> tuple[BatchNodesAdapter, str, str]:
        body = pool_body(nodes=count, extensions=[kv_extension()])
        arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "p", body)
        control.advance(60)
        return adapter(), demo["accountEndpoint"], "p"

    return make


async def test_a_pass_lists_once_selected_and_reads_only_the_asked_extensions(
    pool_of: PoolOf,
    control: Any,
) -> None:
    nodes, endpoint, pool = pool_of(3)
    control.clear_requests()
    listed = await nodes.list_nodes(endpoint, pool)
    assert len(listed) == 3 and {n.state for n in listed} == {"idle"}
    [page] = control.requests(service="batch", operation="ComputeNode_List")
    assert page["query"]["$select"] == "id,state" and page["query"]["maxresults"] == "1000"
    reports = await nodes.read_extensions(endpoint, pool, listed[:2], "KVExtensions")
    assert [r.node_id for r in reports] == [n.node_id for n in listed[:2]]
    assert all(r.extension_found and r.provisioning_state == "Succeeded" for r in reports)
    gets = control.requests(service="batch", operation="ComputeNodeExtension_Get")
    assert len(gets) == 2
    assert not control.requests(service="batch", operation="ComputeNodeExtension_List")
    missing = await nodes.read_extension(endpoint, pool, listed[2], "NotOurs")
    assert not missing.extension_found and missing.error is None


async def test_throttling_halves_the_limit_and_successes_restore_it(
    pool_of: PoolOf,
    control: Any,
) -> None:
    nodes, endpoint, pool = pool_of(4)
    listed = await nodes.list_nodes(endpoint, pool)
    # Batch answers every extension read 429 for a while (the SDK's own retries included).
    control.add_fault(
        match={"service": "batch", "pathRegex": "/extensions/"},
        status=429,
        headers={"Retry-After": "0.05"},
        count=4 * 4,
    )
    throttled = await nodes.read_extensions(endpoint, pool, listed, "KVExtensions")
    assert all(r.error and not r.extension_found for r in throttled)
    limit = nodes.limit_for(endpoint)
    assert limit.limit == 4 and limit.decreases == 1  # one overload, one halving
    assert nodes.limit_for("other.account.example").limit == 8  # Batch throttles per account
    for _ in range(6):  # 4 + 5 + 6 + 7 successes bring it back to 8
        reports = await nodes.read_extensions(endpoint, pool, listed, "KVExtensions")
        assert all(r.provisioning_state == "Succeeded" for r in reports)
    assert limit.limit == 8 and limit.in_flight == 0


@pytest.mark.parametrize(
    "body",
    [
        None,
        7,
        [],
        "text",
        {"instanceView": "x", "vmExtension": ["y"]},
        {"vmExtension": {"name": "KVExtensions"}, "instanceView": {"statuses": {"a": 1}}},
        {"provisioningState": "Succeeded", "instanceView": {}, "vmExtension": {}},
    ],
)
async def test_no_extension_answer_shape_raises(
    pool_of: PoolOf,
    control: Any,
    body: Any,
) -> None:
    nodes, endpoint, pool = pool_of(1)
    listed = await nodes.list_nodes(endpoint, pool)
    control.add_fault(
        match={"service": "batch", "pathRegex": "/extensions/"}, status=200, body=body, count=1
    )
    [report] = await nodes.read_extensions(endpoint, pool, listed, "KVExtensions")
    assert report.node_id == listed[0].node_id  # one report for the node, whatever came back


@pytest.mark.parametrize("body", [None, 7, {"value": 7}, {"value": [None, 7, {"id": {}}]}])
async def test_no_node_list_shape_raises_anything_but_a_failed_call(
    pool_of: PoolOf,
    control: Any,
    body: Any,
) -> None:
    nodes, endpoint, pool = pool_of(1)
    control.add_fault(
        match={"service": "batch", "pathRegex": "/nodes$"}, status=200, body=body, count=1
    )
    outcome: object
    try:
        outcome = await nodes.list_nodes(endpoint, pool)
    except AzureCallError as exc:
        outcome = exc.service
    assert outcome == "batch" or isinstance(outcome, tuple)
