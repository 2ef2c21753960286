"""The alerting rules and scrape configuration, checked with promtool (the Prometheus release
pinned in tools/promtool, built by the project).

Covers: ``promtool check rules`` loads deploy/prometheus/rules.yaml; ``promtool test rules`` runs
deploy/prometheus/tests (every alert fires when it should and stays silent in each healthy
situation of issue 14); the PrometheusRule carries exactly the same groups and labels common rule
selectors pick up; the operator-down rule matches the job the shipped ServiceMonitor produces,
which keeps the object's own ``namespace`` label (honorLabels); every alert has a runbook entry
in docs/alerts.md. The live /metrics lint (``promtool check metrics``) runs in
tests/integration/test_deploy.py, on a scrape of the deployed operator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from support.promtool import run_promtool

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_loads_the_rules() -> None:
    checked = run_promtool("check", "rules", str(PROMETHEUS / "rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_promtool_rule_unit_tests() -> None:
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yaml"))
    assert tests
    ran = run_promtool("test", "rules", *tests)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout and "FAILED" not in ran.stdout


def test_every_alert_is_tested_firing() -> None:
    fired = set()
    for path in (PROMETHEUS / "tests").glob("*.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            fired |= {
                t["alertname"] for t in test.get("alert_rule_test", []) if t.get("exp_alerts")
            }
    assert fired == {r["alert"] for r in _rules()}


def test_prometheusrule_is_the_rule_file() -> None:
    rule = yaml.safe_load((PROMETHEUS / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert (
        rule["spec"]["groups"] == yaml.safe_load((PROMETHEUS / "rules.yaml").read_text())["groups"]
    )
    labels = rule["metadata"]["labels"]
    assert {"prometheus": "k8s", "role": "alert-rules"}.items() <= labels.items()  # kube-prometheus
    assert "release" in labels  # the kube-prometheus-stack chart's selector


def test_operator_down_matches_what_the_servicemonitor_scrapes() -> None:
    monitor = yaml.safe_load((PROMETHEUS / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((REPO / "deploy" / "base" / "service.yaml").read_text())
    base = yaml.safe_load((REPO / "deploy" / "base" / "kustomization.yaml").read_text())
    service_labels = {**service["metadata"].get("labels", {})}
    for entry in base.get("labels", []):
        service_labels.update(entry["pairs"])  # kustomize adds these to every object
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    job = service_labels[monitor["spec"]["jobLabel"]]
    (down,) = [r for r in _rules() if r["alert"] == "BatchCertOperatorDown"]
    assert f'job="{job}"' in down["expr"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True  # our namespace label is the object's
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(service["spec"]["ports"][0]["port"])


def test_every_alert_has_a_runbook() -> None:
    runbook = (REPO / "docs" / "alerts.md").read_text()
    headings = {h.lower() for h in re.findall(r"^## (\w+)$", runbook, re.M)}
    for rule in _rules():
        assert rule["alert"].lower() in headings
        assert rule["annotations"]["runbook_url"].endswith(
            "docs/alerts.md#" + rule["alert"].lower()
        )
        assert rule["annotations"]["summary"]
