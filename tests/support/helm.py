"""helm for the tests: built by tools/helm/build.sh (once, into the user cache), and the chart's
renders next to kustomize's.

``normalise`` is what makes a Helm render and a kustomize render comparable: it drops only what
Helm adds for its own bookkeeping (the instance, managed-by, version and chart labels, in
metadata and in selectors, and ``helm.sh/`` annotations such as the CRDs' resource-policy), so
every other difference between ``deploy/base`` and the chart is a drift the test reports.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "batchcert-operator"
RELEASE = "batchcert-operator"
NAMESPACE = "batchcert-system"
# kustomize's `namespace:` also lands on cluster-scoped kinds it does not know (the peerings);
# the API server ignores it there.
CLUSTER_SCOPED = (
    "ClusterKopfPeering",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
)
HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)


@cache
def helm() -> Path:
    """The binary's path; builds it on first use (minutes cold, instant once cached)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "helm" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return Path(built.stdout.strip().splitlines()[-1])


def run_helm(
    *args: str, kubeconfig: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run(
        [str(helm()), *args, *env_args], capture_output=True, text=True, timeout=timeout
    )


def template(
    values: Mapping[str, Any] | None = None,
    *,
    chart: Path = CHART_DIR,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> subprocess.CompletedProcess[str]:
    """``helm template`` with ``values`` given as one JSON values file on stdin."""
    return subprocess.run(
        [str(helm()), "template", release, str(chart), "-n", namespace, "-f", "-"],
        input=json.dumps(dict(values or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )


def render(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    rendered = template(values, **kwargs)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def _strip(labels: dict[str, Any] | None) -> None:
    for key in HELM_LABELS:
        (labels or {}).pop(key, None)


def normalise(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name), without Helm's bookkeeping labels and annotations."""
    out = {}
    for original in docs:
        doc = copy.deepcopy(dict(original))
        meta = doc["metadata"]
        if doc["kind"] in CLUSTER_SCOPED:
            meta.pop("namespace", None)
        _strip(meta.get("labels"))
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("helm.sh/")
        }
        meta.pop("annotations", None)
        if annotations:
            meta["annotations"] = annotations
        spec = doc.get("spec")
        if isinstance(spec, dict):
            selector = spec.get("selector")
            if isinstance(selector, dict):
                _strip(selector.get("matchLabels", selector))
            pod_selector = spec.get("podSelector")
            if isinstance(pod_selector, dict):
                _strip(pod_selector.get("matchLabels"))
            template_meta = (spec.get("template") or {}).get("metadata")
            if template_meta:
                _strip(template_meta.get("labels"))
        out[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return out
