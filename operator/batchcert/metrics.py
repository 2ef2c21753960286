"""Prometheus metrics of the operator, updated from one place and rendered at scrape time.

The handler layer calls :func:`observe` once after every reconcile with the object, the outcome
and how long it took; :func:`forget` when the object is gone. Everything per object is derived
from the object's *resulting status* (the durable record), never from counters kept in memory, so
a restarted operator reports the same rotation counts and expiry times as before the restart.
Azure request counts are read from the ARM pacer's own counters at scrape time (the adapters
already count every attempt and every 429), so no adapter knows about Prometheus.

Only the replica that acts exports per-object series: the handlers ``forget`` an object when
kopf stops its daemon because peering paused the replica, and as a safety net each object's
series are dropped when it has had no turn for ``stale_after`` seconds (``touch`` at the start
of every turn, ``observe`` after it; ``keep_series_for``: four of the longest gaps between turns,
at least two minutes). A standby
therefore stops exporting the expiry it saw before a rotation, or an object deleted since, and
the alert rules never see two replicas disagree for longer than that.

Invariants: one series set per object, dropped by ``forget`` or when stale; condition gauges follow
kube-state-metrics (one series per status value, exactly one of them 1), and
``batchcert_condition_reason`` carries each condition's current status and reason (one series
per condition) so alerts can tell a rotation propagating or a pause from a failure; every
service's throttle counter exists from the start (0), so ``rate()`` sees the first 429; timestamps
are Unix seconds; nothing from a spec or a credential ever becomes a label except namespace,
object name and certificate name.

Metric names (also listed in docs/operating.md):

* ``batchcert_certificate_expiration_timestamp_seconds{namespace,name,certificate}``
* ``batchcert_certificate_not_before_timestamp_seconds{namespace,name,certificate}``
* ``batchcert_certificate_renewal_timestamp_seconds{namespace,name,certificate}``
* ``batchcert_certificate_rotations_total{namespace,name,certificate}``
* ``batchcert_pool_nodes{namespace,name,state}`` (state: ready | transitioning | failed)
* ``batchcert_nodes_verified{namespace,name,state}`` (state: current | stale | unverified; only
  with ``spec.verification.enabled``)
* ``batchcert_condition{namespace,name,type,status}`` (status: True | False | Unknown)
* ``batchcert_condition_reason{namespace,name,type,status,reason}`` (1 for each condition)
* ``batchcert_reconcile_duration_seconds`` (histogram)
* ``batchcert_azure_requests_total{service,operation,code}``
* ``batchcert_azure_throttled_total{service}``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchcert.adapters.pacing import ArmPacer
from batchcert.models.timestamps import parse_rfc3339
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Outcome
from batchcert.translate.merge_patch import apply_merge_patch

CONDITION_VALUES = ("True", "False", "Unknown")
AZURE_SERVICES = ("arm", "keyvault", "batch")
STALE_AFTER_SECONDS = 120.0
NODE_STATES = ("ready", "transitioning", "failed")
VERIFICATION_STATES = ("current", "stale", "unverified")
# Reconciles are usually milliseconds (nothing due) and sometimes seconds (an Azure round trip).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


CERTIFICATE_FIELDS = ("name", "notAfter", "notBefore", "expectedRenewalTime", "rotations")
CONDITION_FIELDS = ("type", "status", "reason")


def series_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a status the per-object series are rendered from, and nothing else.

    Kept per object between scrapes: a whole status (condition messages, node details) would be
    a second copy of every object's status in memory, next to kopf's body.
    """
    kept: dict[str, Any] = {}
    for key, fields in (("certificates", CERTIFICATE_FIELDS), ("conditions", CONDITION_FIELDS)):
        items = status.get(key)
        if isinstance(items, list):
            kept[key] = [_only(item, fields) for item in items if isinstance(item, Mapping)]
    nodes = status.get("nodes")
    if isinstance(nodes, Mapping):
        kept["nodes"] = _only(nodes, (*NODE_STATES, "verification"))
    return kept


def _only(item: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: item[k] for k in fields if k in item}


def to_timestamp(text: str | None) -> float | None:
    moment = parse_rfc3339(text)
    return None if moment is None else moment.timestamp()


class StatusCollector(Collector):
    """Renders every per-object family from the latest status of each object, at scrape time."""

    def __init__(
        self,
        stale_after: float = STALE_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()  # scrapes run in the HTTP server's thread
        self._statuses: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._pacer: ArmPacer | None = None
        self.stale_after = stale_after
        self._clock = clock

    def update(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self._lock:
            self._statuses[(namespace, name)] = (self._clock(), status)

    def touch(self, namespace: str, name: str) -> None:
        """This replica is still acting on the object: keep its series, unchanged."""
        with self._lock:
            entry = self._statuses.get((namespace, name))
            if entry is not None:
                self._statuses[(namespace, name)] = (self._clock(), entry[1])

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._statuses.pop((namespace, name), None)

    def watch_pacer(self, pacer: ArmPacer) -> None:
        self._pacer = pacer

    def _fresh(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Statuses reconciled recently; the rest (a paused replica's) are dropped for good."""
        oldest = self._clock() - self.stale_after
        with self._lock:
            for key in [k for k, (seen, _) in self._statuses.items() if seen < oldest]:
                del self._statuses[key]
            return {key: status for key, (_, status) in self._statuses.items()}

    def collect(self) -> Iterator[Metric]:
        statuses = self._fresh()
        yield from self._certificate_families(statuses)
        yield from self._pool_families(statuses)
        yield from self._azure_families()

    @staticmethod
    def _certificate_families(statuses: dict[tuple[str, str], dict[str, Any]]) -> Iterator[Metric]:
        labels = ["namespace", "name", "certificate"]
        expiry = GaugeMetricFamily(
            "batchcert_certificate_expiration_timestamp_seconds",
            "When the certificate's current version expires (notAfter), Unix seconds.",
            labels=labels,
        )
        not_before = GaugeMetricFamily(
            "batchcert_certificate_not_before_timestamp_seconds",
            "When the certificate's current version became valid (notBefore), Unix seconds.",
            labels=labels,
        )
        renewal = GaugeMetricFamily(
            "batchcert_certificate_renewal_timestamp_seconds",
            "When Key Vault is expected to renew the certificate (its AutoRenew action), Unix seconds.",
            labels=labels,
        )
        rotations = CounterMetricFamily(
            "batchcert_certificate_rotations",
            "New certificate versions the operator has seen (durable: read from status).",
            labels=labels,
        )
        for (namespace, name), status in sorted(statuses.items()):
            for item in status.get("certificates") or []:
                key = [namespace, name, str(item.get("name", ""))]
                for family, field in (
                    (expiry, "notAfter"),
                    (not_before, "notBefore"),
                    (renewal, "expectedRenewalTime"),
                ):
                    value = to_timestamp(item.get(field))
                    if value is not None:
                        family.add_metric(key, value)
                rotations.add_metric(key, float(item.get("rotations") or 0))
        yield from (expiry, not_before, renewal, rotations)

    @staticmethod
    def _pool_families(statuses: dict[tuple[str, str], dict[str, Any]]) -> Iterator[Metric]:
        nodes = GaugeMetricFamily(
            "batchcert_pool_nodes",
            "Nodes of the pool by the state of their Key Vault extension.",
            labels=["namespace", "name", "state"],
        )
        conditions = GaugeMetricFamily(
            "batchcert_condition",
            "The object's conditions, one series per status value (1 for the current one).",
            labels=["namespace", "name", "type", "status"],
        )
        verified = GaugeMetricFamily(
            "batchcert_nodes_verified",
            "Nodes by what the verification task proved they hold (spec.verification).",
            labels=["namespace", "name", "state"],
        )
        reasons = GaugeMetricFamily(
            "batchcert_condition_reason",
            "Each condition's current status and reason (always 1; the labels are the data).",
            labels=["namespace", "name", "type", "status", "reason"],
        )
        for (namespace, name), status in sorted(statuses.items()):
            counts = status.get("nodes")
            if isinstance(counts, dict):
                for state in NODE_STATES:
                    nodes.add_metric([namespace, name, state], float(counts.get(state) or 0))
                proof = counts.get("verification")
                if isinstance(proof, dict):
                    for state in VERIFICATION_STATES:
                        verified.add_metric([namespace, name, state], float(proof.get(state) or 0))
            for condition in status.get("conditions") or []:
                current = str(condition.get("status", "Unknown"))
                type_ = str(condition.get("type", ""))
                for value in CONDITION_VALUES:
                    conditions.add_metric(
                        [namespace, name, type_, value], 1.0 if current == value else 0.0
                    )
                reason = str(condition.get("reason", ""))
                reasons.add_metric([namespace, name, type_, current, reason], 1.0)
        yield from (nodes, verified, conditions, reasons)

    def _azure_families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "batchcert_azure_requests",
            "HTTP attempts sent to Azure, by service, operation kind and status code.",
            labels=["service", "operation", "code"],
        )
        throttled = CounterMetricFamily(
            "batchcert_azure_throttled",
            "Azure answers of 429 Too Many Requests, by service.",
            labels=["service"],
        )
        pacer = self._pacer
        counts = dict.fromkeys(AZURE_SERVICES, 0.0)  # every service from the start
        if pacer is not None:
            # Copy first: the event loop thread may add a key while we iterate.
            for (kind, code), count in sorted(dict(pacer.sent).items()):
                requests.add_metric(["arm", kind, str(code)], float(count))
            counts["arm"] = float(pacer.throttled)
            for (service, kind, code), count in sorted(dict(pacer.others_sent).items()):
                requests.add_metric([service, kind, str(code)], float(count))
            for service, count in sorted(dict(pacer.others_throttled).items()):
                counts[service] = float(count)
        for service, total in counts.items():
            throttled.add_metric([service], total)
        yield from (requests, throttled)


class Metrics:
    """The operator's metrics on one registry (the process default in production)."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.status = StatusCollector(clock=clock)
        registry.register(self.status)
        self.reconcile_duration = Histogram(
            "batchcert_reconcile_duration_seconds",
            "Wall time of one reconcile of one object (most find nothing due).",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def observe(
        self,
        view: ObjectView,
        outcome: Outcome | None,
        seconds: float,
        pacer: ArmPacer | None = None,
    ) -> None:
        """Record one reconcile: its duration, and the status it leaves on the object."""
        self.reconcile_duration.observe(seconds)
        if pacer is not None:
            self.status.watch_pacer(pacer)
        if outcome is None:  # cancelled by shutdown or deletion: nothing new was seen
            return
        status = apply_merge_patch(view.status, outcome.status_patch)
        self.status.update(view.namespace, view.name, series_fields(status))

    def touch(self, view: ObjectView) -> None:
        self.status.touch(view.namespace, view.name)

    def forget(self, view: ObjectView) -> None:
        self.status.forget(view.namespace, view.name)


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide metrics, registered on first use (a second registration would raise)."""
    global _default
    if _default is None:
        _default = Metrics()
    return _default


def observe(
    view: ObjectView, outcome: Outcome | None, seconds: float, pacer: ArmPacer | None = None
) -> None:
    default_metrics().observe(view, outcome, seconds, pacer)


def touch(view: ObjectView) -> None:
    default_metrics().touch(view)


def forget(view: ObjectView) -> None:
    default_metrics().forget(view)


def keep_series_for(longest_gap_seconds: float) -> None:
    """Drop an object's series once four of its longest gaps between turns (at least two
    minutes) pass without a reconcile: on a replica that peering paused, that is every object."""
    default_metrics().status.stale_after = max(STALE_AFTER_SECONDS, 4 * longest_gap_seconds)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose ``/metrics`` on ``port`` from a daemon thread (the event loop is never blocked)."""
    default_metrics()
    start_http_server(port, addr=address)
