"""The Helm chart (deploy/helm/batchcert-operator) with the real helm v4 and the real API server.

Covers: ``helm lint``; kustomize and Helm agree — deploy/base and the default values, and each
overlay (ha, sharded, namespaced) and the values that mean the same, render the same objects once
Helm's own bookkeeping labels are set aside (support/helm.py, ``normalise``); every documented
values combination renders and passes the API server's server-side dry run, NetworkPolicy
included, as does the kustomize base's NetworkPolicy; the ServiceMonitor and PrometheusRule the
chart renders are deploy/prometheus's (same rules, read from the same file); the schema refuses
wrong values by name; the chart's ``verification.allowed: false`` makes the operator refuse a pool
asking for verification (Stalled, ``VerificationNotAllowed``, no pool in Azure); ``helm install`` into the dev cluster (taking over the CRDs the fixture
applied with kubectl, as an install moving from kustomize to Helm does) and a BatchCertPool
going Ready with the operator logged in as the chart's ServiceAccount (the process runs outside
the cluster, as in test_deploy.py: the dev cluster has no kubelet), with no 403 in its log;
``helm upgrade`` to the next chart version keeps every object (same uids, the pool still Ready)
and upgrades the CRD; ``helm uninstall`` leaves the CRDs and the BatchCertPool in place (keep).
``batchcert status --wait`` on the installed operator: the Stalled code within a second of
Stalled, Ready's 0, the timeout's code, and the codes without --wait. The Argo CD Application
and Flux HelmRelease in docs/operating.md point at this chart and their values render.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from support.deploy import DEPLOY_DIR, running_deployed_operator
from support.helm import CHART_DIR, NAMESPACE, RELEASE, normalise, render, run_helm, template

if TYPE_CHECKING:
    from support.cluster import KubeCluster
    from support.stack import OperatorStack

# The cluster is shared with test_deploy.py, which leaves deploy/base applied (the kustomize names
# in batchcert-system, a Deployment selector Helm could not change): the dry runs and the install
# use releases of their own. Only the CRDs are shared, and adopted (--take-ownership).
DRY_RUN_RELEASE, DRY_RUN_NAMESPACE = "dryrun", "batchcert-dryrun"
INSTALL_RELEASE, INSTALL_NAMESPACE = "platform", "batchcert-helm"
INSTALLED = f"{INSTALL_RELEASE}-batchcert-operator"  # the chart's names for that release
SERVICE_ACCOUNT = f"{INSTALL_NAMESPACE}/{INSTALLED}"
SHARDED = {"replicas": 2, "shards": 2}
# Every combination docs/operating.md ("Helm") and values.yaml document.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha": {"replicas": 2},
    "sharded": SHARDED,
    "namespaced": {"watchNamespaces": ["team-a"]},
    "image-by-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "verification-off": {"verification": {"allowed": False}},
    "tenancy": {
        "tenancy": {
            "policy": {
                "operatorIdentityNamespaces": ["platform"],
                "namespaces": {"team-a": {"vaults": ["team-a-kv"]}, "*": {"subscriptions": []}},
            },
            "rolePropagationSeconds": 300,
        }
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
    },
    "no-crds": {"crds": {"enabled": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "no-networkpolicy": {"networkPolicy": {"enabled": False}},
    "own-serviceaccount": {
        "serviceAccount": {"create": False, "name": "platform-operator"},
        "workloadIdentity": {"enabled": False},
    },
    "tuned": {
        "env": [{"name": "BATCHCERT_CERT_INTERVAL_SECONDS", "value": "600"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "batchcert-operator"}
                            },
                        },
                    }
                ]
            }
        },
        "podAnnotations": {"example.com/team": "platform"},
        "priorityClassName": "system-cluster-critical",
        "workloadIdentity": {"clientId": "11111111-2222-3333-4444-555555555555"},
        "networkPolicy": {
            "scraper": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observe"}},
                "podSelector": {"matchLabels": {"app": "vmagent"}},
            }
        },
    },
}
# kustomize's installs and the values that mean the same.
EQUIVALENTS = [
    ("base", {}),
    ("overlays/ha", {"replicas": 2}),
    ("overlays/sharded", SHARDED),
    ("overlays/namespaced", {"watchNamespaces": ["team-a"]}),
]


def _kustomize(path: Path) -> list[dict[str, Any]]:
    from support.cluster import KUBECTL

    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_chart_lints() -> None:
    linted = run_helm("lint", "--strict", str(CHART_DIR))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    for name, values in COMBINATIONS.items():
        rendered = template(values)
        assert rendered.returncode == 0, f"{name}: {rendered.stderr}"


@pytest.mark.parametrize(("overlay", "values"), EQUIVALENTS, ids=[e[0] for e in EQUIVALENTS])
def test_kustomize_and_helm_render_the_same_objects(overlay: str, values: dict[str, Any]) -> None:
    # The chart leaves the namespace to `helm install --create-namespace` (or the platform), as
    # Helm charts do; everything else must be the same object.
    kustomized = normalise(d for d in _kustomize(DEPLOY_DIR / overlay) if d["kind"] != "Namespace")
    charted = normalise(render(values))
    assert sorted(charted) == sorted(kustomized)
    drift = [key for key in kustomized if kustomized[key] != charted[key]]
    assert not drift, "\n".join(
        f"{key}:\nkustomize: {yaml.safe_dump(kustomized[key])}\nhelm: {yaml.safe_dump(charted[key])}"
        for key in drift
    )


def _schemaless_crd(group: str, kind: str) -> dict[str, Any]:
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def test_every_documented_combination_passes_server_side_dry_run(
    kube_cluster: KubeCluster,
) -> None:
    for namespace in (DRY_RUN_NAMESPACE, NAMESPACE, "team-a"):  # as a GitOps tool would
        kube_cluster.kubectl("create", "namespace", namespace)
    # The Prometheus Operator's kinds, as schemaless stand-ins (their CRDs are not ours to ship):
    # the server checks the objects' metadata and that they are namespaced where we put them;
    # their specs are held to deploy/prometheus by test_monitoring_objects_are_deploy_prometheus.
    for kind in ("ServiceMonitor", "PrometheusRule"):
        kube_cluster.apply(yaml.safe_dump(_schemaless_crd("monitoring.coreos.com", kind)))
    kube_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        check=True,
    )
    failed = []
    for name, values in COMBINATIONS.items():
        rendered = template(values, release=DRY_RUN_RELEASE, namespace=DRY_RUN_NAMESPACE)
        assert rendered.returncode == 0, f"{name}: {rendered.stderr}"
        applied = kube_cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=rendered.stdout
        )
        if applied.returncode != 0:
            failed.append(f"{name}: {applied.stderr}")
        elif (values.get("networkPolicy") or {}).get("enabled", True) and (
            f"networkpolicy.networking.k8s.io/{DRY_RUN_RELEASE}-batchcert-operator"
            not in applied.stdout
        ):
            failed.append(f"{name}: no NetworkPolicy in {applied.stdout}")
    assert not failed, "\n".join(failed)
    base = kube_cluster.kubectl("apply", "-k", str(DEPLOY_DIR / "base"), "--dry-run=server")
    assert base.returncode == 0, base.stderr
    assert "networkpolicy.networking.k8s.io/batchcert-operator" in base.stdout


def test_networkpolicy_admits_only_the_scraper_to_metrics() -> None:
    (policy,) = [d for d in render() if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: API server and Azure"
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] and peer["podSelector"], "both: one scraper, not a namespace"
    (deployment,) = [d for d in render() if d["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_monitoring_objects_are_deploy_prometheus() -> None:
    docs = render(
        {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    source = yaml.safe_load((DEPLOY_DIR / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"] == source
    kustomized = normalise(_kustomize(DEPLOY_DIR / "prometheus"))
    charted = normalise(docs)
    key = ("ServiceMonitor", NAMESPACE, RELEASE)
    assert charted[key]["spec"] == kustomized[key]["spec"]
    key = ("PrometheusRule", NAMESPACE, RELEASE)
    labels = charted[key]["metadata"]["labels"]
    assert kustomized[key]["metadata"]["labels"].items() <= labels.items()
    assert charted[key]["spec"] == kustomized[key]["spec"]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicas": "two"}, "replicas"),
        ({"replica": 2}, "replica"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"shards": 0}, "shards"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"workloadIdentity": {"clientId": "my-identity"}}, "clientId"),
        ({"networkPolicy": {"scraper": {"namespaceSelector": {"app": "x"}}}}, "namespaceSelector"),
        ({"cloud": "AzureCloud"}, "cloud"),
        ({"tenancy": {"policy": {"namespaces": {"team-a": {"vault": ["kv"]}}}}}, "vault"),
        (
            {"tenancy": {"policy": {"operatorIdentityNamespace": ["x"]}}},
            "operatorIdentityNamespace",
        ),
    ],
)
def test_schema_refuses_a_wrong_value(values: dict[str, Any], named: str) -> None:
    refused = template(values)
    assert refused.returncode != 0, refused.stdout[:2000]
    assert "values don't meet the specifications of the schema" in refused.stderr, refused.stderr
    assert named in refused.stderr, refused.stderr


def test_tenancy_policy_is_mounted_where_the_operator_reads_it(tmp_path: Path) -> None:
    """The policy renders as the JSON file BATCHCERT_TENANCY_FILE names, which the operator's own
    loader accepts; no policy renders no ConfigMap (and the default render stays kustomize's)."""
    from batchcert.tenancy import load_policy

    values = COMBINATIONS["tenancy"]
    docs = render(values)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["BATCHCERT_ROLE_PROPAGATION_SECONDS"] == "300"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tenancy")
    assert env["BATCHCERT_TENANCY_FILE"] == mount["mountPath"] + "/policy.json"
    volume = next(v for v in pod["volumes"] if v["name"] == "tenancy")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert "checksum/tenancy" in deployment["spec"]["template"]["metadata"]["annotations"]
    path = tmp_path / "policy.json"
    path.write_text(config_map["data"]["policy.json"])
    policy = load_policy(path)
    assert not policy.may_use_operator_identity("team-a")
    assert policy.may_use_operator_identity("platform")
    assert not [d for d in render({}) if d["kind"] == "ConfigMap"]


def test_peering_needs_a_cluster_wide_install() -> None:
    refused = template({"replicas": 2, "watchNamespaces": ["team-a"]})
    assert refused.returncode != 0
    assert "cluster-wide" in refused.stderr, refused.stderr


# --- installed into the dev cluster -------------------------------------------------------------


def test_the_charts_verification_switch_makes_the_operator_refuse_verification(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    """verification.allowed=false renders the Deployment's switch; the operator run with that
    environment refuses a pool asking for verification (Stalled, VerificationNotAllowed) before
    any Azure call, and no pool is created. Before the module's install: no other operator acts."""
    from support.stack import OperatorStack, fast_simulator, forget_objects

    (deployment,) = [
        d for d in render({"verification": {"allowed": False}}) if d["kind"] == "Deployment"
    ]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    switch = {"BATCHCERT_VERIFICATION_ALLOWED": env["BATCHCERT_VERIFICATION_ALLOWED"]}
    ns = "verification-off"
    kube_cluster.kubectl("create", "namespace", ns, check=True)
    with (
        fast_simulator(tmp_path / "sim") as sim,
        running_deployed_operator(
            kube_cluster.kubeconfig,
            Path(sim.sim_json),
            tmp_path / "operator.log",
            scope=("--namespace", ns),
            extra_env=switch,
        ) as op,
    ):
        stack = OperatorStack(kube_cluster, sim, op)
        stack.apply(stack.manifest("proof", ns, verification={"enabled": True}))
        stack.wait_until(
            "VerificationNotAllowed",
            lambda: (
                stack.condition("proof", ns, "Stalled").get("reason") == "VerificationNotAllowed"
            ),
            name="proof",
            namespace=ns,
            timeout=60,
        )
        assert "BATCHCERT_VERIFICATION_ALLOWED" in stack.condition("proof", ns, "Ready")["message"]
        assert stack.pool_in_azure("proof") is None
        stack.apply(stack.manifest("plain", ns))
        stack.wait_ready("plain", ns)
    forget_objects(kube_cluster, (ns,))


def _uids(cluster: KubeCluster) -> dict[str, str]:
    names = [
        f"serviceaccount/{INSTALLED}",
        f"deployment/{INSTALLED}",
        f"service/{INSTALLED}-metrics",
        f"networkpolicy/{INSTALLED}",
        f"clusterrole/{INSTALLED}",
        f"clusterrolebinding/{INSTALLED}",
        "customresourcedefinition/batchcertpools.batchcert.dev",
    ]
    got = cluster.kubectl("get", *names, "-n", INSTALL_NAMESPACE, "-o", "json", check=True)
    return {
        f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["uid"]
        for i in json.loads(got.stdout)["items"]
    }


@pytest.fixture(scope="module")
def installed(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorStack]:
    """The chart installed for real; the operator running as the chart's ServiceAccount."""
    from support.stack import OperatorStack, fast_simulator, forget_objects

    # The fixture applied crds/ with kubectl: --take-ownership adopts them, as moving an install
    # from kustomize to Helm does (docs/operating.md, "Helm").
    done = run_helm(
        "install",
        INSTALL_RELEASE,
        str(CHART_DIR),
        "-n",
        INSTALL_NAMESPACE,
        "--create-namespace",
        "--take-ownership",
        kubeconfig=kube_cluster.kubeconfig,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kubeconfig = kube_cluster.serviceaccount_kubeconfig(SERVICE_ACCOUNT)
    workdir = tmp_path_factory.mktemp("helm")
    with (
        fast_simulator(workdir / "sim") as sim,
        running_deployed_operator(kubeconfig, Path(sim.sim_json), workdir / "operator.log") as op,
    ):
        yield OperatorStack(kube_cluster, sim, op)
        assert op.is_running(), "the operator process died:\n" + op.log()[-4000:]
    forget_objects(kube_cluster)  # their pools lived only in this module's simulator


def _status(stack: OperatorStack, name: str, ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchcert", "status", name, "-n", ns, *args],
        env={**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_installed_chart_carries_a_pool_to_ready(installed: OperatorStack) -> None:
    stack = installed
    ns = stack.namespace("helm")
    stack.apply(stack.manifest("charted", ns))
    stack.wait_ready("charted", ns)
    assert stack.pool_in_azure("charted") is not None
    assert stack.operator.forbidden_lines() == []
    assert "Traceback" not in stack.operator.log(), stack.operator.log()[-4000:]


def test_status_wait_returns_stalled_within_a_second(installed: OperatorStack) -> None:
    from batchcert.statuscmd import is_stalled

    stack = installed
    ns = stack.namespace("wait")
    broken = stack.manifest(
        "stuck", ns, certificates=[{"vaultUrl": stack.demo["vaultUrl"], "name": "no-such-cert"}]
    )
    # Paused first: neither Ready nor Stalled, so the wait is still watching when Stalled comes.
    broken["metadata"]["annotations"] = {"batchcert.dev/paused": "true"}
    stack.apply(broken)
    stack.wait_until(
        "paused",
        lambda: stack.condition("stuck", ns, "Ready").get("reason") == "ReconcilePaused",
        name="stuck",
        namespace=ns,
        timeout=30,
    )
    converging = _status(stack, "stuck", ns)
    assert converging.wait(timeout=60) == 1, converging.communicate()
    timed_out = _status(stack, "stuck", ns, "--wait=1s")
    started = time.monotonic()
    assert timed_out.wait(timeout=60) == 4, timed_out.communicate()
    assert time.monotonic() - started < 10
    waiting = _status(stack, "stuck", ns, "--wait=2m")
    time.sleep(2)
    assert waiting.poll() is None, waiting.communicate()
    stack.cluster.kubectl("annotate", "bcp", "stuck", "-n", ns, "batchcert.dev/paused-", check=True)
    stalled_at = exited_at = None
    deadline = time.monotonic() + 90
    while (stalled_at is None or exited_at is None) and time.monotonic() < deadline:
        if stalled_at is None and is_stalled(stack.get("stuck", ns)):
            stalled_at = time.monotonic()
        if exited_at is None and waiting.poll() is not None:
            exited_at = time.monotonic()
        time.sleep(0.05)
    out, err = waiting.communicate(timeout=10)
    assert stalled_at is not None and exited_at is not None, stack.explain("stuck", ns, err)
    assert waiting.returncode == 3, out + err
    assert exited_at - stalled_at < 1.0, (exited_at, stalled_at)
    assert "Status:       NOT Ready" in out
    now_stalled = _status(stack, "stuck", ns)
    assert now_stalled.wait(timeout=60) == 3
    stack.apply(stack.manifest("quick", ns))
    ready = _status(stack, "quick", ns, "--wait=90s")
    assert ready.wait(timeout=120) == 0, ready.communicate()
    assert _status(stack, "quick", ns).wait(timeout=60) == 0
    missing = _status(stack, "no-such-pool", ns, "--wait=5s")
    assert missing.wait(timeout=60) == 2


def test_upgrade_keeps_objects_and_upgrades_the_crd(
    installed: OperatorStack, tmp_path: Path
) -> None:
    """The next chart version (here: this chart with its version bumped and a CRD description
    changed, standing in for a release that adds a field) upgrades in place."""
    stack = installed
    cluster = stack.cluster
    ns = stack.namespace("upgrade")
    stack.apply(stack.manifest("kept", ns))
    stack.wait_ready("kept", ns)
    pool_uid = stack.get("kept", ns)["metadata"]["uid"]
    before = _uids(cluster)
    nxt = tmp_path / "batchcert-operator"
    shutil.copytree(CHART_DIR, nxt)
    chart = yaml.safe_load((nxt / "Chart.yaml").read_text())
    chart["version"] = "0.1.1-next"
    (nxt / "Chart.yaml").write_text(yaml.safe_dump(chart))
    crd_file = nxt / "files" / "crds" / "batchcertpools.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "upgraded by helm"
    crd_file.write_text(yaml.safe_dump(crd))
    done = run_helm(
        "upgrade",
        INSTALL_RELEASE,
        str(nxt),
        "-n",
        INSTALL_NAMESPACE,
        "--set",
        "metrics.port=9091",
        # The CRD's fields are co-owned with the fixture's `kubectl apply` (as in an install moved
        # from kustomize): Helm's server-side apply takes the changed ones over. A chart only ever
        # applied by Helm needs no flag (docs/operating.md, "Helm").
        "--force-conflicts",
        kubeconfig=cluster.kubeconfig,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _uids(cluster) == before
    served = json.loads(
        cluster.kubectl(
            "get", "crd", "batchcertpools.batchcert.dev", "-o", "json", check=True
        ).stdout
    )
    schema = served["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["description"] == "upgraded by helm"
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployment", INSTALLED, "-n", INSTALL_NAMESPACE, "-o", "json"
        ).stdout
    )
    assert "--metrics-port=9091" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert stack.get("kept", ns)["metadata"]["uid"] == pool_uid
    stack.wait_ready("kept", ns)
    history = run_helm(
        "history",
        INSTALL_RELEASE,
        "-n",
        INSTALL_NAMESPACE,
        "-o",
        "json",
        kubeconfig=cluster.kubeconfig,
    )
    assert [r["chart"] for r in json.loads(history.stdout)] == [
        "batchcert-operator-0.1.0",
        "batchcert-operator-0.1.1-next",
    ]


def test_uninstall_keeps_crds_and_objects(installed: OperatorStack) -> None:
    """Last on the install: the operator stays up (outside the cluster) but its RBAC goes."""
    stack = installed
    cluster = stack.cluster
    ns = stack.namespace("uninstall")
    stack.apply(stack.manifest("stays", ns))
    done = run_helm(
        "uninstall", INSTALL_RELEASE, "-n", INSTALL_NAMESPACE, kubeconfig=cluster.kubeconfig
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kept due to the resource policy" in done.stdout + done.stderr
    assert cluster.kubectl("get", "crd", "batchcertpools.batchcert.dev").returncode == 0
    assert cluster.kubectl("get", "bcp", "stays", "-n", ns).returncode == 0
    gone = cluster.kubectl("get", "clusterrole", INSTALLED)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def _documented_manifests() -> list[dict[str, Any]]:
    """Every YAML block of docs/operating.md's Helm section (the Argo CD and Flux examples)."""
    text = (DEPLOY_DIR.parent / "docs" / "operating.md").read_text()
    section = text.split("## Install with Helm", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```yaml\n")[1:]
    return [d for block in blocks for d in yaml.safe_load_all(block.split("```", 1)[0]) if d]


def test_the_documented_argocd_and_flux_examples_install_this_chart() -> None:
    docs = {d["kind"]: d for d in _documented_manifests()}
    application, release = docs["Application"], docs["HelmRelease"]
    source = application["spec"]["source"]
    assert (DEPLOY_DIR.parent / source["path"]) == CHART_DIR
    assert (DEPLOY_DIR.parent / release["spec"]["chart"]["spec"]["chart"]) == CHART_DIR
    for values in (source["helm"]["valuesObject"], release["spec"]["values"]):
        concrete = json.loads(
            json.dumps(values).replace("<client-id>", "0" * 8 + "-0000" * 3 + "-" + "0" * 12)
        )
        rendered = template(concrete)
        assert rendered.returncode == 0, rendered.stderr
