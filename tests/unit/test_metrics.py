"""The Prometheus metrics (batchcert.metrics) on a private registry, from captured status.

Covers: every family renders from one object's status (certificate timestamps, durable rotation
count, node states, kube-state-metrics style conditions with exactly one 1 per condition); the
status after the reconcile's merge patch is what is reported; a cancelled reconcile (no outcome)
only counts its duration; ``forget`` drops the object's series, and so does a replica that stops
reconciling (a standby paused by peering); each condition's reason as a series; Azure request and
429 counts come from the ARM pacer, the 429 counters existing for every service from the start; the exposition parses and carries no spec value beyond the allowed labels; the fields kept
per object between scrapes render exactly the series a whole status renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from batchcert.adapters.pacing import ArmPacer
from batchcert.metrics import Metrics, series_fields
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Outcome
from batchcert.translate.merge_patch import apply_merge_patch

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "status"


def view_of(name: str, status: dict[str, Any] | None = None) -> ObjectView:
    obj = json.loads((CAPTURED / f"{name}.json").read_text())
    return ObjectView(
        namespace="team-a",
        name="render",
        uid="u1",
        generation=obj["metadata"]["generation"],
        spec=obj["spec"],
        status=obj["status"] if status is None else status,
    )


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, metric: str, /, **labels: str) -> float | None:
    return samples(metrics).get((metric, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_certificate_families_from_status(metrics: Metrics) -> None:
    view = view_of("rotation-propagating")
    metrics.observe(view, Outcome({}, [], 1.0), 0.02)
    (item,) = view.status["certificates"]
    key = {"namespace": "team-a", "name": "render", "certificate": item["name"]}
    assert value(metrics, "batchcert_certificate_rotations_total", **key) == 1.0
    expiry = value(metrics, "batchcert_certificate_expiration_timestamp_seconds", **key)
    not_before = value(metrics, "batchcert_certificate_not_before_timestamp_seconds", **key)
    assert expiry is not None and not_before is not None and expiry > not_before
    assert value(metrics, "batchcert_certificate_renewal_timestamp_seconds", **key)


def test_nodes_and_conditions(metrics: Metrics) -> None:
    metrics.observe(view_of("ready"), Outcome({}, [], 1.0), 0.02)
    obj = {"namespace": "team-a", "name": "render"}
    assert value(metrics, "batchcert_pool_nodes", state="ready", **obj) == 1.0
    assert value(metrics, "batchcert_pool_nodes", state="failed", **obj) == 0.0
    for type_ in ("Ready", "PoolReady", "CertificateReady", "NodesReady"):
        values = {
            status: value(metrics, "batchcert_condition", type=type_, status=status, **obj)
            for status in ("True", "False", "Unknown")
        }
        assert values == {"True": 1.0, "False": 0.0, "Unknown": 0.0}


def test_the_status_after_the_patch_is_reported(metrics: Metrics) -> None:
    before = view_of("ready")
    patch = {"conditions": [{"type": "Ready", "status": "False", "reason": "PoolUpdating"}]}
    metrics.observe(before, Outcome(patch, [], 1.0), 0.02)
    obj = {"namespace": "team-a", "name": "render"}
    assert value(metrics, "batchcert_condition", type="Ready", status="False", **obj) == 1.0
    assert value(metrics, "batchcert_condition", type="NodesReady", status="True", **obj) is None


def test_cancelled_reconcile_counts_only_its_duration(metrics: Metrics) -> None:
    metrics.observe(view_of("ready"), None, 0.5)
    assert value(metrics, "batchcert_reconcile_duration_seconds_count") == 1.0
    assert not any(name == "batchcert_condition" for name, _ in samples(metrics))


def test_forget_drops_the_objects_series(metrics: Metrics) -> None:
    view = view_of("ready")
    metrics.observe(view, Outcome({}, [], 1.0), 0.02)
    metrics.forget(view)
    names = {name for name, _ in samples(metrics)}
    assert "batchcert_condition" not in names
    assert "batchcert_pool_nodes" not in names
    assert "batchcert_reconcile_duration_seconds_count" in names


def test_each_condition_reports_its_reason(metrics: Metrics) -> None:
    view = view_of("certificate-not-found")
    metrics.observe(view, Outcome({}, [], 1.0), 0.02)
    obj = {"namespace": "team-a", "name": "render"}
    for condition in view.status["conditions"]:
        labels = {"type": condition["type"], "status": condition["status"], **obj}
        assert (
            value(metrics, "batchcert_condition_reason", reason=condition["reason"], **labels)
            == 1.0
        )
    found = [k for k in samples(metrics) if k[0] == "batchcert_condition_reason"]
    assert len(found) == len(view.status["conditions"])  # one series per condition


def test_a_replica_that_stops_reconciling_stops_exporting() -> None:
    # A standby paused by peering reconciles nothing: its series of each object go after
    # stale_after, while an object still reconciled keeps its series.
    now = [1000.0]
    metrics = Metrics(CollectorRegistry(), clock=lambda: now[0])
    metrics.observe(view_of("ready"), Outcome({}, [], 1.0), 0.02)
    now[0] += 100
    other = view_of("ready")
    other = ObjectView(
        namespace="team-b",
        name="kept",
        uid="u2",
        generation=1,
        spec=other.spec,
        status=other.status,
    )
    metrics.observe(other, Outcome({}, [], 1.0), 0.02)
    assert (
        value(
            metrics,
            "batchcert_condition",
            type="Ready",
            status="True",
            namespace="team-a",
            name="render",
        )
        == 1.0
    )
    now[0] += 30  # 130 s after the first object's last reconcile: gone
    assert (
        value(
            metrics,
            "batchcert_condition",
            type="Ready",
            status="True",
            namespace="team-a",
            name="render",
        )
        is None
    )
    assert (
        value(
            metrics,
            "batchcert_condition",
            type="Ready",
            status="True",
            namespace="team-b",
            name="kept",
        )
        == 1.0
    )
    now[0] += 1000
    assert not any(name.startswith("batchcert_certificate") for name, _ in samples(metrics))


def test_a_long_reconcile_or_deletion_keeps_the_series() -> None:
    # The timer fired (touch) but the reconcile has not finished: the series stay.
    now = [1000.0]
    metrics = Metrics(CollectorRegistry(), clock=lambda: now[0])
    view = view_of("ready")
    metrics.observe(view, Outcome({}, [], 1.0), 0.02)
    for _ in range(5):
        now[0] += 100
        metrics.touch(view)
    ready = {"type": "Ready", "status": "True", "namespace": "team-a", "name": "render"}
    assert value(metrics, "batchcert_condition", **ready) == 1.0
    metrics.touch(view_of("reconciling"))  # an object never observed: nothing appears
    assert len({k for k in samples(metrics) if k[0] == "batchcert_condition"}) == 3 * 6


def test_throttle_counters_exist_for_every_service_from_the_start(metrics: Metrics) -> None:
    for service in ("arm", "keyvault", "batch"):
        assert value(metrics, "batchcert_azure_throttled_total", service=service) == 0.0


def test_azure_requests_come_from_the_pacer(metrics: Metrics) -> None:
    pacer = ArmPacer()
    pacer.sent[("reads", 200)] += 3
    pacer.sent[("writes", 429)] += 1
    pacer.throttled = 1
    metrics.observe(view_of("ready"), Outcome({}, [], 1.0), 0.02, pacer)
    requests = "batchcert_azure_requests_total"
    assert value(metrics, requests, service="arm", operation="reads", code="200") == 3.0
    assert value(metrics, requests, service="arm", operation="writes", code="429") == 1.0
    assert value(metrics, "batchcert_azure_throttled_total", service="arm") == 1.0


def test_no_spec_values_leak_into_labels(metrics: Metrics) -> None:
    view = view_of("ready")
    metrics.observe(view, Outcome({}, [], 1.0), 0.02)
    text = generate_latest(metrics.registry).decode()
    for secret_ish in (view.spec["identity"]["resourceId"], view.spec["account"]["subscriptionId"]):
        assert secret_ish not in text


def test_merge_patch_semantics() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1], "e": 5}
    assert apply_merge_patch(target, {"a": {"b": None}, "d": [2], "e": None}) == {
        "a": {"c": 2},
        "d": [2],
    }


def test_example_alerts_use_only_metrics_we_expose(metrics: Metrics) -> None:
    import re

    import yaml

    pacer = ArmPacer()
    pacer.sent[("reads", 200)] += 1
    verified = view_of("rotation-propagating")
    # With spec.verification the nodes' proof is a series too (the unproven-nodes alert reads it).
    verified.status["nodes"]["verification"] = {"current": 1, "stale": 0, "unverified": 1}
    metrics.observe(verified, Outcome({}, [], 1.0), 0.02, pacer)
    exposed = {name for name, _ in samples(metrics)}
    rules = yaml.safe_load(
        (CAPTURED.parents[2] / "deploy" / "prometheus" / "rules.yaml").read_text()
    )
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bbatchcert_[a-z_]+", rule["expr"])
    }
    assert used and used <= exposed, used - exposed


def test_series_are_rendered_from_the_kept_fields_alone(metrics: Metrics) -> None:
    # What each object keeps between scrapes is the series' inputs, not a second whole status.
    status = view_of("ready").status
    kept = series_fields(status)
    assert set(kept) <= {"certificates", "nodes", "conditions"}
    assert all(set(c) <= {"type", "status", "reason"} for c in kept["conditions"])
    full = Metrics(registry=CollectorRegistry())
    full.status.update("team-a", "render", status)
    metrics.status.update("team-a", "render", kept)

    def per_object(m: Metrics) -> dict[Any, float]:
        return {k: v for k, v in samples(m).items() if ("namespace", "team-a") in k[1]}

    assert per_object(metrics) == per_object(full)
    assert len(per_object(metrics)) > 10
