"""Recognising what a state dir's recorded run amounts to, without touching a process.

Covers: the absent / running / partial / stale verdicts; a reused pid (other start time) and a
zombie count as dead; ``/proc/<pid>/stat`` parsing with awkward command names; ``state.json``
round-trips and an unknown schema is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from batchdev.devcluster.flags import EtcdPorts
from batchdev.devcluster.processes import (
    ProcessRecord,
    ProcStat,
    is_same_live_process,
    parse_proc_stat,
)
from batchdev.devcluster.state import ClusterState, Liveness, assess

ETCD = ProcessRecord("etcd", 100, 5000)
API = ProcessRecord("kube-apiserver", 101, 5010)


def a_state(**changes: object) -> ClusterState:
    state = ClusterState(
        kubernetes_version="v1.37.2",
        etcd_version="v3.7.3",
        etcd_ports=EtcdPorts(41001, 41002),
        apiserver_port=42000,
        etcd=ETCD,
        kube_apiserver=API,
        ready=True,
    )
    return state.with_changes(**changes)


def alive(*records: ProcessRecord) -> Callable[[ProcessRecord], bool]:
    return lambda record: record in records


def test_no_state_is_absent() -> None:
    assert assess(None, alive()) is Liveness.ABSENT


def test_both_servers_alive_is_running() -> None:
    assert assess(a_state(), alive(ETCD, API)) is Liveness.RUNNING


def test_nothing_alive_is_stale() -> None:
    assert assess(a_state(), alive()) is Liveness.STALE


def test_one_server_alive_is_partial() -> None:
    assert assess(a_state(), alive(ETCD)) is Liveness.PARTIAL
    assert assess(a_state(), alive(API)) is Liveness.PARTIAL


def test_a_run_killed_before_the_api_server_started_is_partial_not_running() -> None:
    state = a_state(kube_apiserver=None, apiserver_port=None, ready=False)
    assert assess(state, alive(ETCD)) is Liveness.PARTIAL


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    assert is_same_live_process(ETCD, ProcStat("S", 5000))
    assert not is_same_live_process(ETCD, ProcStat("S", 9999))


def test_a_zombie_or_a_missing_process_is_dead() -> None:
    assert not is_same_live_process(ETCD, ProcStat("Z", 5000))
    assert not is_same_live_process(ETCD, None)


def test_without_a_recorded_start_time_any_live_process_with_the_pid_counts() -> None:
    assert is_same_live_process(ProcessRecord("etcd", 100, None), ProcStat("R", 1))


def test_proc_stat_parsing_survives_spaces_and_parentheses_in_the_name() -> None:
    fields = " ".join(str(n) for n in range(4, 23))  # fields 4..22: field 22 is the last one
    stat = parse_proc_stat(f"4242 (kube apiserver (x)) S {fields} 23 24")

    assert stat == ProcStat(state="S", start_time=22)


def test_state_round_trips_through_json() -> None:
    state = a_state()
    assert ClusterState.from_json(state.to_json()) == state
    starting = a_state(kube_apiserver=None, apiserver_port=None, ready=False)
    assert ClusterState.from_json(starting.to_json()) == starting


def test_an_unknown_state_schema_is_refused() -> None:
    data = a_state().to_json() | {"schemaVersion": 99}
    with pytest.raises(ValueError, match="schema"):
        ClusterState.from_json(data)


def test_the_api_server_is_stopped_before_its_storage() -> None:
    assert [p.name for p in a_state().processes()] == ["kube-apiserver", "etcd"]
    assert a_state().ports() == [42000, 41001, 41002]
