"""Object writes per pool, counted on a real API server's watch (what etcd and the API server pay).

Covers: from ``kubectl apply`` to Ready, the operator writes one object at most
``WRITES_TO_READY`` times (kopf's own bookkeeping included); a rotation costs at most
``WRITES_PER_ROTATION``; nothing is written while nothing changes. Each write is one watch event
(a new resourceVersion); the test lists what each one changed, so a regression names the write it
added.

Measured (December 2026, issue 20): 6 writes to Ready before status waited to settle — the
finalizer, the first visit's Reconciling, and one per step on the way (PoolCreated,
NodesAllocating, ExtensionTransitioning, Ready). Now progress detail waits up to the installed
``BATCHCERT_STATUS_SETTLE_SECONDS`` (30 s, the default this module runs with) and goes out with
the verdict that follows it (reconcile/settle.py): 3 — the finalizer, the first status, Ready.
A rotation costs 2, by design: the new version and count at once (a durable fact, and what a user
looks for), and Ready again once the nodes' polling interval has passed (a verdict); in production
the two are a polling interval (an hour by default) apart, so no settle window joins them.

Also: the operator's log has one line per condition change, each told once (oplog.log_turn); a
restart of the operator on the Ready pool writes nothing and posts no Event.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import KUBECTL, KubeCluster
from support.stack import OperatorStack

WRITES_TO_READY = 3
WRITES_PER_ROTATION = 2
OPERATOR_ENV = {
    "BATCHCERT_NODE_RECHECK_SECONDS": "3600",
    "BATCHCERT_STATUS_SETTLE_SECONDS": "30",  # the installed default
}


@pytest.fixture(scope="module")
def stack(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorStack]:
    """The module stack, with the production node recheck (its heartbeat moves
    ``status.nodes.lastCheckTime``: every 3 s under the tests' fast intervals)."""
    from support.operator import running_operator
    from support.stack import fast_simulator, forget_objects

    workdir = tmp_path_factory.mktemp("stack")
    with (
        fast_simulator(workdir / "sim") as sim,
        running_operator(
            kube_cluster.kubeconfig,
            Path(sim.sim_json),
            workdir / "operator.log",
            extra_env=OPERATOR_ENV,
        ) as op,
    ):
        yield OperatorStack(kube_cluster, sim, op)
    forget_objects(kube_cluster)


class WatchLog:
    """``kubectl get --watch`` of one object: every version the API server sends."""

    def __init__(self, stack: OperatorStack, name: str, namespace: str) -> None:
        self.versions: list[dict[str, Any]] = []
        self._process = subprocess.Popen(
            [
                KUBECTL,
                f"--kubeconfig={stack.cluster.kubeconfig}",
                "get",
                "bcp",
                "-n",
                namespace,
                f"--field-selector=metadata.name={name}",  # watchable before it exists
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._process.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.strip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.strip()[end:]
                self.versions.append(event["object"])

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)

    def writes_since(self, index: int) -> list[str]:
        """What each write after ``versions[index]`` changed (top-level fields, metadata keys)."""
        return [_changed(a, b) for a, b in itertools.pairwise(self.versions[index:])]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    for key in ("finalizers", "annotations", "labels"):
        if before["metadata"].get(key) != after["metadata"].get(key):
            parts.append(f"metadata.{key}")
    for key in ("spec", "status"):
        if before.get(key) != after.get(key):
            ready = [
                c.get("reason")
                for c in (after.get("status") or {}).get("conditions", [])
                if c.get("type") == "Ready"
            ]
            if key == "status":
                old, new = before.get(key) or {}, after.get(key) or {}
                changed = sorted(
                    k if k != "nodes" else f"nodes{_keys_changed(old.get(k), new.get(k))}"
                    for k in {*old, *new}
                    if old.get(k) != new.get(k)
                )
                parts.append(f"status{ready}{changed}")
            else:
                parts.append(key)
    return "+".join(parts) or "resourceVersion only"


def _keys_changed(old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    return sorted(k for k in {*old, *new} if old.get(k) != new.get(k))


def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_one_pool_converges_in_few_writes_and_a_rotation_costs_two(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("writes"), stack.demo
    watch = WatchLog(stack, "w", ns)
    try:
        time.sleep(1.0)  # the watch is open before the object exists
        stack.apply(stack.manifest("w", ns))
        stack.wait_ready("w", ns)
        time.sleep(5.0)  # anything written after Ready is counted too
        created = 0  # versions[0]: kubectl's create
        to_ready = watch.writes_since(created)
        print("writes to Ready:", to_ready)
        assert len(to_ready) <= WRITES_TO_READY, to_ready

        settled = len(watch.versions) - 1
        time.sleep(10.0)  # nothing changes: nothing is written
        assert watch.writes_since(settled) == []

        stack.control.renew_certificate(demo["vault"], demo["certificate"])
        before = len(watch.versions) - 1
        _wait_for(
            lambda: (
                (stack.get("w", ns).get("status") or {})
                .get("certificates", [{}])[0]
                .get("rotations")
                == 1
            ),
            timeout=60,
        )
        stack.wait_ready("w", ns, timeout=120)
        time.sleep(5.0)
        rotation = watch.writes_since(before)
        print("writes per rotation:", rotation)
        assert len(rotation) <= WRITES_PER_ROTATION, rotation

        # The log told each condition change once, as written: Ready's two turns to True (after
        # the create and after the rotation) are two lines, not one per turn that saw them.
        told = [
            line.split(f"{ns}/w: ", 1)[1]
            for line in stack.operator.log().splitlines()
            if f"{ns}/w: Ready " in line
        ]
        to_true = [t for t in told if t.startswith("Ready False -> True")]
        assert len(to_true) == 2, told
        assert any(t.startswith("Ready - -> False (Reconciling)") for t in told), told

        # A restart changes nothing a user sees: no write, no Event (the first turns of a new
        # process read Azure afresh and come to the status already written).
        time.sleep(3.0)
        settled, events = len(watch.versions) - 1, len(stack.events(ns))
        since = max((r["seq"] for r in stack.control.requests(limit=1)), default=0)
        _restart(stack)
        # The new process's first turn for the object reads the pool afresh (its memory is new).
        _wait_for(
            lambda: bool(stack.control.requests(sinceSeq=since, pathRegex="/pools/w")), timeout=60
        )
        time.sleep(10.0)  # a few more turns of the new process
        assert watch.writes_since(settled) == []
        assert len(stack.events(ns)) == events, stack.event_reasons(ns)
    finally:
        watch.stop()


def _restart(stack: OperatorStack) -> None:
    """Stop the operator and start another in its place, with the module's settings."""
    from support.operator import start_operator

    op = stack.operator
    op.stop()
    fresh = start_operator(
        stack.cluster.kubeconfig, Path(stack.sim.sim_json), op.log_path, extra_env=OPERATOR_ENV
    )
    op.process = fresh.process
