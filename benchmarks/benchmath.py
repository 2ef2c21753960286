"""The pure arithmetic of the benchmark: floors, per-hour scaling, request classes, the table.

Role: everything ``benchmarks/run.py`` computes from what it measured, kept free of I/O so
``tests/unit/test_bench_math.py`` can check it without starting a process.

Invariants: no imports beyond the standard library; every function is deterministic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

# ARM's documented token buckets, per subscription and principal.
ARM_WRITE_BURST = 200
ARM_WRITE_RATE = 10.0
ARM_READ_BURST = 250
ARM_READ_RATE = 25.0

# ARM operations the simulator logs that are writes (PUT/PATCH/POST) or deletes; every other ARM
# operation is a read (GET). Entra token calls are counted apart: they are not ARM.
ARM_WRITE_OPERATIONS = frozenset(
    {
        "Pool_Create",
        "Pool_Update",
        "Pool_DisableAutoScale",
        "Pool_StopResize",
        "Vaults_UpdateAccessPolicy",
    }
)
ARM_DELETE_OPERATIONS = frozenset({"Pool_Delete"})
INJECTED_OPERATIONS = frozenset({"InjectedFault", "InjectedDrop"})


def bucket_floor_seconds(
    writes_per_subscription: Mapping[str, int],
    *,
    burst: int = ARM_WRITE_BURST,
    rate: float = ARM_WRITE_RATE,
) -> float:
    """Seconds the write buckets alone impose: subscriptions refill in parallel, so the floor is
    the slowest subscription's ``max(0, writes - burst) / rate``."""
    return max(
        (max(0, n - burst) / rate for n in writes_per_subscription.values()),
        default=0.0,
    )


def per_hour(count: float, window_seconds: float, scale: float = 1.0) -> float:
    """Scale a count measured over ``window_seconds`` of real time, with every interval of the
    operator divided by ``scale``, back to one hour at production intervals.

    With intervals shortened k times, ``window`` real seconds hold as many checks as
    ``window * k`` production seconds, so the hourly rate is ``count * 3600 / (window * k)``.
    """
    if window_seconds <= 0 or scale <= 0:
        raise ValueError("window and scale must be positive")
    return count * 3600.0 / (window_seconds * scale)


def checks_per_hour(interval_seconds: float) -> float:
    return 3600.0 / interval_seconds


def counters_delta(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The simulator's ``/counters`` rows that grew between two snapshots, with the growth."""

    def key(row: Mapping[str, Any]) -> tuple[str, str, int]:
        return (str(row["service"]), str(row["operation"]), int(row["status"]))

    old = {key(r): int(r["count"]) for r in before}
    rows = []
    for row in after:
        grown = int(row["count"]) - old.get(key(row), 0)
        if grown > 0:
            service, operation, status = key(row)
            rows.append(
                {"service": service, "operation": operation, "status": status, "count": grown}
            )
    return rows


def request_classes(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counter rows folded into the classes the targets speak of."""
    classes = dict.fromkeys(
        (
            "arm_reads",
            "arm_writes",
            "arm_deletes",
            "keyvault_reads",
            "keyvault_writes",
            "batch_reads",
            "entra",
            "throttled_429",
            "injected",
        ),
        0,
    )
    for row in rows:
        service, operation = str(row["service"]), str(row["operation"])
        status, count = int(row["status"]), int(row["count"])
        if status == 429:
            classes["throttled_429"] += count
        if operation in INJECTED_OPERATIONS:
            classes["injected"] += count
        elif service == "arm":
            if operation in ARM_WRITE_OPERATIONS:
                classes["arm_writes"] += count
            elif operation in ARM_DELETE_OPERATIONS:
                classes["arm_deletes"] += count
            else:
                classes["arm_reads"] += count
        elif service == "keyvault":
            is_read = operation.lower().startswith(("get", "list"))
            classes["keyvault_reads" if is_read else "keyvault_writes"] += count
        elif service == "batch":
            classes["batch_reads"] += count
        elif service == "entra":
            classes["entra"] += count
    return classes


def by_operation(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``service/operation`` → count (statuses summed), for the JSON results."""
    totals: dict[str, int] = {}
    for row in rows:
        name = f"{row['service']}/{row['operation']}"
        totals[name] = totals.get(name, 0) + int(row["count"])
    return dict(sorted(totals.items()))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` bins, the first bins taking the remainder."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def ratio(value: float, floor: float) -> float | None:
    return None if floor <= 0 else value / floor


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def format_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats rounded to what the measurement can support."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}")
        lines.append("| " + " | ".join(format_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


# --- shards: requests split by the operator's User-Agent tag ------------------------------------

_SHARD_TAG = re.compile(r"\bshard/(\d+)-of-(\d+)\b")
UNATTRIBUTED = -1  # requests without a shard tag (Entra tokens, a single unsharded operator)


def shard_of_user_agent(user_agent: str | None) -> int:
    """The shard index in ``batchcert-operator/<v> shard/<i>-of-<n> ...``, else ``UNATTRIBUTED``."""
    found = _SHARD_TAG.search(user_agent or "")
    return int(found.group(1)) if found else UNATTRIBUTED


def counters_delta_by_shard(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]
) -> dict[int, list[dict[str, Any]]]:
    """The simulator's ``byUserAgent`` counter rows, differenced per shard (user agents of one
    shard, e.g. its ARM, Key Vault and Batch SDKs, are summed)."""

    def grouped(rows: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        sums: dict[int, dict[tuple[str, str, int], int]] = {}
        for row in rows:
            shard = shard_of_user_agent(str(row.get("userAgent") or ""))
            key = (str(row["service"]), str(row["operation"]), int(row["status"]))
            bucket = sums.setdefault(shard, {})
            bucket[key] = bucket.get(key, 0) + int(row["count"])
        return {
            shard: [
                {"service": s, "operation": o, "status": st, "count": n}
                for (s, o, st), n in sorted(rows_.items())
            ]
            for shard, rows_ in sums.items()
        }

    old, new = grouped(before), grouped(after)
    out = {shard: counters_delta(old.get(shard, []), rows) for shard, rows in new.items()}
    return {shard: rows for shard, rows in sorted(out.items()) if rows}


def ownership(touched: Mapping[int, Iterable[str]], expected: Iterable[str]) -> dict[str, Any]:
    """Which shard touched which pool (from the request log): are the shares disjoint, and do
    they cover every pool expected?"""
    shares = {shard: set(names) for shard, names in touched.items() if shard != UNATTRIBUTED}
    seen: dict[str, list[int]] = {}
    for shard, names in shares.items():
        for name in names:
            seen.setdefault(name, []).append(shard)
    wanted = set(expected)
    overlap = sorted(name for name, shards in seen.items() if len(shards) > 1)
    missing = sorted(wanted - set(seen))
    return {
        "owned": {str(shard): len(names) for shard, names in sorted(shares.items())},
        "disjoint": not overlap,
        "covers_all": not missing,
        "overlap": overlap[:20],
        "missing": missing[:20],
    }


# --- node-status passes -------------------------------------------------------------------------

NODE_LIST_OPERATIONS = frozenset({"ComputeNode_List"})


def _is_first_page(record: Mapping[str, Any]) -> bool:
    query = record.get("query") or {}
    return "$skiptoken" not in query


def group_node_passes(records: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Batch data-plane requests for one pool, in log order, split into passes: a pass starts
    with a node list's first page (continuation pages, ``$skiptoken``, belong to it); every
    per-node request (extension list or get, node get) after it belongs to it."""
    passes: list[list[Mapping[str, Any]]] = []
    for record in records:
        starts = record["operation"] in NODE_LIST_OPERATIONS and _is_first_page(record)
        if starts or not passes:
            passes.append([])
        passes[-1].append(record)
    return passes


def latency_floor_seconds(requests: int, concurrency: int, latency: float) -> float:
    """The node pass's floor: ``requests`` answered ``concurrency`` at a time, each taking
    ``latency`` (list pages are counted like the rest: the issue's definition)."""
    if requests <= 0:
        return 0.0
    return math.ceil(requests / max(1, concurrency)) * latency


def summarise_node_pass(
    records: Sequence[Mapping[str, Any]],
    seconds: float | None,
    concurrency: int,
    latency: float,
) -> dict[str, Any]:
    """One pass: list requests and per-node requests counted apart (a pass may read only some
    nodes' extensions), the nodes whose extensions were read, the floor and the ratio to it."""
    lists = sum(1 for r in records if r["operation"] in NODE_LIST_OPERATIONS)
    per_node = [r for r in records if r["operation"] not in NODE_LIST_OPERATIONS]
    nodes = {m.group(1) for r in per_node if (m := _NODE_IN_PATH.search(str(r.get("path", ""))))}
    floor = latency_floor_seconds(len(records), concurrency, latency)
    held = server_seconds(records)
    return {
        "starts_with_list": bool(records) and records[0]["operation"] in NODE_LIST_OPERATIONS,
        "requests": len(records),
        "list_requests": lists,
        "per_node_requests": len(per_node),
        "nodes_read": len(nodes),
        "seconds": seconds,
        "latency_floor_seconds": round(floor, 2),
        "ratio_to_floor": None if seconds is None or floor <= 0 else round(seconds / floor, 2),
        # The same floor at the latency the simulator actually held each request (its injected
        # latency plus its own time): what is left of ``seconds`` above it is the client's.
        "server_seconds_per_request": None if held is None else round(held, 4),
        "server_floor_seconds": None
        if held is None
        else round(latency_floor_seconds(len(records), concurrency, held), 2),
        "by_operation": by_operation(
            {"service": "batch", "operation": r["operation"], "count": 1} for r in records
        ),
    }


def server_seconds(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean seconds from a request's arrival to its answer, as the simulator logged them (None
    when the log has no arrival times). Simulated time: wall seconds at the benchmark's clock
    scale of 1, with no ``advance`` during the pass."""
    held = [
        (datetime.fromisoformat(r["time"]) - datetime.fromisoformat(r["received"])).total_seconds()
        for r in records
        if r.get("received") and r.get("time")
    ]
    return sum(held) / len(held) if held else None


_NODE_IN_PATH = re.compile(r"/nodes/([^/?]+)")
