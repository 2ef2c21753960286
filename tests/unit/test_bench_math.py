"""The benchmark's pure arithmetic (``benchmarks/benchmath.py``); no process is started.

Covers: the token-bucket floor per subscription (burst absorbed, subscriptions in parallel);
scaling a count measured at shortened intervals back to an hour; folding the simulator's counters
into request classes and differencing two snapshots; splitting them by the shards' User-Agent tag
and checking that shards' pools are disjoint and cover all; node-status passes (pagination, list
and per-node requests apart, the latency floor); the Markdown table's rendering.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "benchmath.py"


def _load() -> ModuleType:
    # benchmarks/ is not a package on the test path; load the one module by file.
    spec = importlib.util.spec_from_file_location("benchmath", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchmath", module)
    spec.loader.exec_module(module)
    return module


bm = _load()


def test_floor_is_zero_while_the_burst_absorbs_the_writes() -> None:
    assert bm.bucket_floor_seconds({"a": 100, "b": 200}) == 0.0
    assert bm.bucket_floor_seconds({}) == 0.0


def test_floor_of_1000_pools_in_one_subscription_is_80_seconds() -> None:
    assert bm.bucket_floor_seconds({"a": 1000}) == pytest.approx(80.0)


def test_floor_is_the_slowest_subscription_since_they_refill_in_parallel() -> None:
    assert bm.bucket_floor_seconds({"a": 400, "b": 300, "c": 100}) == pytest.approx(20.0)


def test_per_hour_scales_by_window_and_interval_factor() -> None:
    # 60 requests in 180 s with intervals ÷ 10 stand for 1800 production seconds: 120 per hour.
    assert bm.per_hour(60, 180, 10) == pytest.approx(120.0)
    assert bm.per_hour(5, 3600) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="positive"):
        bm.per_hour(1, 0, 10)


def test_checks_per_hour() -> None:
    assert bm.checks_per_hour(300) == pytest.approx(12.0)


def test_counters_delta_keeps_only_what_grew() -> None:
    before = [{"service": "arm", "operation": "Pool_Get", "status": 200, "count": 5}]
    after = [
        {"service": "arm", "operation": "Pool_Get", "status": 200, "count": 8},
        {"service": "arm", "operation": "Pool_Create", "status": 200, "count": 2},
        {"service": "keyvault", "operation": "GetCertificate", "status": 200, "count": 0},
    ]
    assert bm.counters_delta(before, after) == [
        {"service": "arm", "operation": "Pool_Get", "status": 200, "count": 3},
        {"service": "arm", "operation": "Pool_Create", "status": 200, "count": 2},
    ]


def test_request_classes_split_arm_by_operation_and_count_429s() -> None:
    rows = [
        {"service": "arm", "operation": "Pool_Get", "status": 200, "count": 10},
        {"service": "arm", "operation": "Pool_Create", "status": 200, "count": 3},
        {"service": "arm", "operation": "Pool_Create", "status": 429, "count": 1},
        {"service": "arm", "operation": "Pool_Delete", "status": 202, "count": 2},
        {"service": "keyvault", "operation": "GetCertificate", "status": 200, "count": 4},
        {"service": "batch", "operation": "ComputeNodeExtension_List", "status": 200, "count": 7},
        {"service": "entra", "operation": "Token", "status": 200, "count": 1},
        {"service": "arm", "operation": "InjectedFault", "status": 503, "count": 2},
    ]
    classes = bm.request_classes(rows)
    assert classes["arm_reads"] == 10
    assert classes["arm_writes"] == 4
    assert classes["arm_deletes"] == 2
    assert classes["keyvault_reads"] == 4
    assert classes["batch_reads"] == 7
    assert classes["entra"] == 1
    assert classes["throttled_429"] == 1
    assert classes["injected"] == 2


def test_by_operation_sums_statuses() -> None:
    rows = [
        {"service": "arm", "operation": "Pool_Get", "status": 200, "count": 2},
        {"service": "arm", "operation": "Pool_Get", "status": 404, "count": 1},
    ]
    assert bm.by_operation(rows) == {"arm/Pool_Get": 3}


def test_split_evenly_gives_the_remainder_to_the_first_bins() -> None:
    assert bm.split_evenly(10, 3) == [4, 3, 3]
    assert sum(bm.split_evenly(1000, 7)) == 1000


def test_ratio_is_undefined_against_a_zero_floor() -> None:
    assert bm.ratio(12.0, 0.0) is None
    assert bm.ratio(12.0, 10.0) == pytest.approx(1.2)


def test_render_table_rounds_and_marks_missing_values() -> None:
    table = bm.render_table(
        ["N", "seconds", "ratio", "met"],
        [[10, 123.456, None, True], [100, 1.23456, 0.0, False]],
    )
    assert table.splitlines() == [
        "| N | seconds | ratio | met |",
        "|---|---|---|---|",
        "| 10 | 123 | – | yes |",
        "| 100 | 1.23 | 0 | no |",
    ]


def test_render_table_escapes_pipes_and_refuses_ragged_rows() -> None:
    assert "a\\|b" in bm.render_table(["x"], [["a|b"]])
    with pytest.raises(ValueError, match="cells"):
        bm.render_table(["x", "y"], [[1]])


def test_shard_tag_is_read_from_the_user_agent() -> None:
    agent = "batchcert-operator/0.1.0 shard/1-of-2 azsdk-python-mgmt-batch/18.0.0 Python/3.11.7"
    assert bm.shard_of_user_agent(agent) == 1
    assert bm.shard_of_user_agent("azsdk-python-identity/1.19.0") == bm.UNATTRIBUTED
    assert bm.shard_of_user_agent(None) == bm.UNATTRIBUTED


def test_counters_delta_by_shard_sums_a_shards_sdks_and_differences_snapshots() -> None:
    def row(agent: str, op: str, n: int) -> dict[str, object]:
        return {"userAgent": agent, "service": "arm", "operation": op, "status": 200, "count": n}

    mgmt0 = "batchcert-operator/0.1.0 shard/0-of-2 azsdk-python-mgmt-batch/18"
    kv0 = "batchcert-operator/0.1.0 shard/0-of-2 azsdk-python-keyvault-certificates/4"
    mgmt1 = "batchcert-operator/0.1.0 shard/1-of-2 azsdk-python-mgmt-batch/18"
    before = [row(mgmt0, "Pool_Get", 5), row(mgmt1, "Pool_Get", 7)]
    after = [
        row(mgmt0, "Pool_Get", 8),
        row(kv0, "Pool_Get", 1),
        row(mgmt1, "Pool_Get", 7),
        row("", "Token", 2),
    ]
    delta = bm.counters_delta_by_shard(before, after)
    assert delta == {
        bm.UNATTRIBUTED: [{"service": "arm", "operation": "Token", "status": 200, "count": 2}],
        0: [{"service": "arm", "operation": "Pool_Get", "status": 200, "count": 4}],
    }


def test_ownership_finds_overlap_and_missing_pools() -> None:
    fine = bm.ownership({0: ["a", "b"], 1: ["c"]}, ["a", "b", "c"])
    assert fine["disjoint"] and fine["covers_all"] and fine["owned"] == {"0": 2, "1": 1}
    bad = bm.ownership({0: ["a", "b"], 1: ["b"], bm.UNATTRIBUTED: ["c"]}, ["a", "b", "c"])
    assert bad["overlap"] == ["b"] and bad["missing"] == ["c"]
    assert not bad["disjoint"] and not bad["covers_all"]


def _batch(op: str, path: str, query: dict[str, str] | None = None) -> dict[str, object]:
    return {"operation": op, "path": path, "query": query or {}}


def test_node_passes_start_at_a_lists_first_page_and_count_lists_apart() -> None:
    records = [
        _batch("ComputeNodeExtension_List", "/pools/p/nodes/n9/extensions"),  # before Ready
        _batch("ComputeNode_List", "/pools/p/nodes"),
        _batch("ComputeNode_List", "/pools/p/nodes", {"$skiptoken": "MTAwMA"}),  # page 2
        _batch("ComputeNodeExtension_List", "/pools/p/nodes/n1/extensions"),
        _batch("ComputeNodeExtension_List", "/pools/p/nodes/n2/extensions"),
        _batch("ComputeNode_List", "/pools/p/nodes"),  # a pass reading no extension
    ]
    passes = bm.group_node_passes(records)
    assert [len(p) for p in passes] == [1, 4, 1]
    first = bm.summarise_node_pass(passes[0], None, 8, 0.1)
    assert not first["starts_with_list"]
    second = bm.summarise_node_pass(passes[1], 0.3, 8, 0.1)
    assert second["starts_with_list"]
    assert (second["list_requests"], second["per_node_requests"], second["nodes_read"]) == (2, 2, 2)
    assert second["latency_floor_seconds"] == pytest.approx(0.1)
    assert second["ratio_to_floor"] == pytest.approx(3.0)
    third = bm.summarise_node_pass(passes[2], 0.1, 8, 0.1)
    assert (third["list_requests"], third["per_node_requests"]) == (1, 0)


def test_latency_floor_of_the_issue_15_pass() -> None:
    # 1001 requests at concurrency 8 with 0.1 s each: about 12.5 s (issue 15).
    assert bm.latency_floor_seconds(1001, 8, 0.1) == pytest.approx(12.6)
    assert bm.latency_floor_seconds(0, 8, 0.1) == 0.0


def test_a_pass_says_how_long_the_simulator_held_its_requests() -> None:
    def held(received: str, answered: str) -> dict[str, object]:
        return {
            **_batch("ComputeNode_List", "/pools/p/nodes"),
            "received": received,
            "time": answered,
        }

    records = [
        held("2026-11-29T20:00:00.000000Z", "2026-11-29T20:00:00.100000Z"),
        held("2026-11-29T20:00:00.100000Z", "2026-11-29T20:00:00.300000Z"),
    ]
    one = bm.summarise_node_pass(records, 0.5, 1, 0.1)
    assert one["server_seconds_per_request"] == pytest.approx(0.15)
    assert one["server_floor_seconds"] == pytest.approx(0.3)  # 2 requests one at a time at 0.15 s
    old = bm.summarise_node_pass([_batch("ComputeNode_List", "/pools/p/nodes")], 0.1, 8, 0.1)
    assert old["server_seconds_per_request"] is None and old["server_floor_seconds"] is None
