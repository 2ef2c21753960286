"""``deploy/`` against the real API server, and the operator under the deploy ServiceAccount.

Covers: the kustomize base and the namespaced, ha and sharded overlays pass server-side dry run
(schema, RBAC objects, the CRD) and the base applies for real; the sharded overlay renders two
shard Deployments (disjoint selectors, ``--shards=2 --shard=<i>``, each its own kopf peering with
replicas, a User-Agent shard tag, otherwise the base's pod) and no unsharded one; the Deployment's hardening is what the docs
promise, and its Pod passes the namespace's enforced "restricted" Pod Security Standard; the
ServiceAccount can do what the operator needs and nothing else (``kubectl auth can-i`` as that
identity); the namespaced overlay's RBAC alone carries one namespace's object to Ready and
deletion; the real operator process, logged in with the ServiceAccount's token and run with the
Deployment's own flags (JSON logs, metrics, liveness), takes an object through create → Ready →
rotation → delete with no 403 anywhere in its log; ``batchcert status`` on a Ready and on a
failing object (output and exit status); the metrics endpoint after a rotation.
The image: the Dockerfile passes hadolint, and its install step (``pip install -c
constraints.txt .`` on the files .dockerignore lets through) gives a working ``batchcert run``
in a clean virtual environment (pip's cache may be warm, so this takes seconds, not minutes).

The story checks the objects it sees (first status, Ready, RotationPropagating, a user-action
failure, paused, a spec refused after an edit) against ``tests/data/status/`` and, with
``BATCHCERT_CAPTURE_STATUS=tests/data/status``, refreshes them (support/captures.py);
tests/consumers feeds them to kstatus, Argo CD and Flux. A live scrape of /metrics passes
``promtool check metrics``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from support.captures import capture
from support.deploy import DEPLOY_DIR, REPO_ROOT, running_deployed_operator
from support.promtool import run_promtool

if TYPE_CHECKING:
    from support.cluster import KubeCluster
    from support.stack import OperatorStack

SERVICE_ACCOUNT = "batchcert-system/batchcert-operator"


def _kustomize(path: Path) -> list[dict[str, Any]]:
    from support.cluster import KUBECTL

    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module")
def deployed(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorStack]:
    """deploy/base applied for real; the operator running as its ServiceAccount, cluster-wide."""
    from support.stack import OperatorStack, fast_simulator, forget_objects

    applied = kube_cluster.kubectl("apply", "-k", str(DEPLOY_DIR / "base"))
    assert applied.returncode == 0, applied.stderr
    kubeconfig = kube_cluster.serviceaccount_kubeconfig(SERVICE_ACCOUNT)
    workdir = tmp_path_factory.mktemp("deploy")
    with (
        fast_simulator(workdir / "sim") as sim,
        running_deployed_operator(kubeconfig, Path(sim.sim_json), workdir / "operator.log") as op,
    ):
        yield OperatorStack(kube_cluster, sim, op)
        assert op.is_running(), "the operator process died:\n" + op.log()[-4000:]
    forget_objects(kube_cluster)


def test_manifests_pass_server_side_dry_run(kube_cluster: KubeCluster) -> None:
    # A server-side dry run cannot create a namespace for the objects in it: like a GitOps tool
    # with CreateNamespace, the namespace exists first; everything else is only dry-run.
    kube_cluster.kubectl("apply", "-f", str(DEPLOY_DIR / "base" / "namespace.yaml"), check=True)
    base = kube_cluster.kubectl("apply", "-k", str(DEPLOY_DIR / "base"), "--dry-run=server")
    assert base.returncode == 0, base.stderr
    for expected in (
        "namespace/batchcert-system",
        "customresourcedefinition.apiextensions.k8s.io/batchcertpools.batchcert.dev",
        "serviceaccount/batchcert-operator",
        "clusterrole.rbac.authorization.k8s.io/batchcert-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/batchcert-operator",
        "deployment.apps/batchcert-operator",
        "service/batchcert-operator-metrics",
    ):
        assert expected in base.stdout, base.stdout
    # The overlay's Role lives in the watched namespace, which the user creates.
    kube_cluster.kubectl("create", "namespace", "team-a")
    overlay = kube_cluster.kubectl(
        "apply", "-k", str(DEPLOY_DIR / "overlays" / "namespaced"), "--dry-run=server"
    )
    assert overlay.returncode == 0, overlay.stderr
    assert "role.rbac.authorization.k8s.io/batchcert-operator" in overlay.stdout
    ha = kube_cluster.kubectl(
        "apply", "-k", str(DEPLOY_DIR / "overlays" / "ha"), "--dry-run=server"
    )
    assert ha.returncode == 0, ha.stderr
    assert "clusterkopfpeering.kopf.dev/batchcert-operator" in ha.stdout
    assert "clusterrole.rbac.authorization.k8s.io/batchcert-operator-peering" in ha.stdout
    sharded = kube_cluster.kubectl(
        "apply", "-k", str(DEPLOY_DIR / "overlays" / "sharded"), "--dry-run=server"
    )
    assert sharded.returncode == 0, sharded.stderr
    for expected in (
        "deployment.apps/batchcert-operator-shard-0",
        "deployment.apps/batchcert-operator-shard-1",
        "clusterkopfpeering.kopf.dev/batchcert-operator-shard-1",
    ):
        assert expected in sharded.stdout, sharded.stdout


def test_deployment_is_hardened_and_wired() -> None:
    docs = _kustomize(DEPLOY_DIR / "base")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "batchcert-operator"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert isinstance(security["runAsUser"], int) and security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    overlay = _kustomize(DEPLOY_DIR / "overlays" / "namespaced")
    (namespaced,) = [d for d in overlay if d["kind"] == "Deployment"]
    assert "--namespace=team-a" in namespaced["spec"]["template"]["spec"]["containers"][0]["args"]
    (cluster_role,) = [d for d in overlay if d["kind"] == "ClusterRole"]
    verbs = {v for rule in cluster_role["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}, "the namespaced install writes nothing cluster-wide"


def test_sharded_overlay_runs_two_shards_each_with_its_own_peering() -> None:
    """Two Deployments, one per shard, each the base's pod with the shard flags added: their
    selectors are disjoint, each shard's replicas share one peering (the operator derives
    ``batchcert-operator`` / ``batchcert-operator-shard-1`` from ``--peering`` and the index),
    both peerings exist and the replicas may patch them; the base's Deployment is gone."""
    from batchcert.reconcile.sharding import ShardAssignment, peering_name

    (base,) = [d for d in _kustomize(DEPLOY_DIR / "base") if d["kind"] == "Deployment"]
    docs = _kustomize(DEPLOY_DIR / "overlays" / "sharded")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == ["batchcert-operator-shard-0", "batchcert-operator-shard-1"]
    selectors = []
    peerings = set()
    for index in (0, 1):
        shard = deployments[f"batchcert-operator-shard-{index}"]
        assert shard["spec"]["replicas"] >= 2, "active/standby replicas per shard"
        selector = shard["spec"]["selector"]["matchLabels"]
        assert selector["batchcert.dev/shard"] == str(index)
        labels = shard["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        selectors.append(selector)
        (container,) = shard["spec"]["template"]["spec"]["containers"]
        (base_container,) = base["spec"]["template"]["spec"]["containers"]
        added = container["args"][len(base_container["args"]) :]
        assert container["args"][: len(base_container["args"])] == base_container["args"]
        assert sorted(added) == sorted(
            ["--peering=batchcert-operator", "--shards=2", f"--shard={index}"]
        )
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["BATCHCERT_USER_AGENT_SUFFIX"] == f"shard/{index}-of-2"
        # Otherwise the base's pod: same image, hardening, probes, resources.
        assert {k: v for k, v in container.items() if k not in ("args", "env")} == {
            k: v for k, v in base_container.items() if k not in ("args", "env")
        }
        peerings.add(peering_name("batchcert-operator", ShardAssignment(index, 2)))
    assert selectors[0]["batchcert.dev/shard"] != selectors[1]["batchcert.dev/shard"]
    declared = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterKopfPeering"}
    assert peerings <= declared
    (role,) = [
        d
        for d in docs
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "batchcert-operator-peering"
    ]
    allowed = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert peerings <= allowed
    (service,) = [d for d in docs if d["kind"] == "Service"]
    for shard in deployments.values():
        labels = shard["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), "metrics of every shard"


def test_namespaced_overlay_rbac_is_enough_for_one_namespace(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    """The overlay's Role + discovery-only ClusterRole, under a ServiceAccount of its own and
    bound to a fresh namespace, carry an object through Ready and deletion.

    Runs before any test that starts the module's cluster-wide operator (file order), so no
    other operator touches the object.
    """
    from batchsim.server import simulator
    from support.stack import OperatorStack

    name = "batchcert-operator-scoped"
    ns = f"scoped-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", ns, check=True)
    rbac = []
    for doc in _kustomize(DEPLOY_DIR / "overlays" / "namespaced"):
        if doc["kind"] not in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
            continue
        doc["metadata"]["name"] = name
        if doc["kind"] in ("Role", "RoleBinding"):
            doc["metadata"]["namespace"] = ns
        if "roleRef" in doc:
            doc["roleRef"]["name"] = name
        for subject in doc.get("subjects", []):
            subject["name"] = name
        rbac.append(doc)
    kubeconfig = kube_cluster.serviceaccount_kubeconfig(f"batchcert-system/{name}")
    kube_cluster.apply(yaml.safe_dump_all(rbac))
    with (
        simulator(state_dir=tmp_path / "sim", seed="demo", clock_scale=1.0) as sim,
        running_deployed_operator(
            kubeconfig, Path(sim.sim_json), tmp_path / "operator.log", scope=("--namespace", ns)
        ) as op,
    ):
        sim.control.set_node_behaviour(
            arrivalDelaySeconds=1, bootSeconds=1, removalDelaySeconds=1, deleteDurationSeconds=1
        )
        stack = OperatorStack(kube_cluster, sim, op)
        stack.apply(stack.manifest("scoped", ns))
        stack.wait_ready("scoped", ns)
        result = kube_cluster.kubectl("delete", "bcp", "scoped", "-n", ns, "--timeout=60s")
        assert result.returncode == 0, stack.explain("scoped", ns, result.stderr)
        assert stack.pool_in_azure("scoped") is None
        assert op.forbidden_lines() == []
        assert "Traceback" not in op.log(), op.log()[-4000:]
    denied = kube_cluster.kubectl(
        "auth",
        "can-i",
        "patch",
        "batchcertpools.batchcert.dev",
        "-n",
        "default",
        as_=f"batchcert-system/{name}",
    )
    assert denied.stdout.strip() == "no", "the namespaced install writes only its namespace"


def test_pod_template_meets_the_restricted_pod_security_standard(
    deployed: OperatorStack,
) -> None:
    # The namespace enforces "restricted"; a Deployment is only warned about, so submit the
    # Pod itself (dry run: nothing runs it here) and let the admission plugin judge.
    (deployment,) = [d for d in _kustomize(DEPLOY_DIR / "base") if d["kind"] == "Deployment"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-check", "namespace": "batchcert-system"},
        "spec": deployment["spec"]["template"]["spec"],
    }
    result = deployed.cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod)
    )
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr, result.stderr
    insecure = copy.deepcopy(pod)
    insecure["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = deployed.cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(insecure)
    )
    assert refused.returncode != 0 and "allowPrivilegeEscalation" in refused.stderr


ALLOWED = [
    ("list", "batchcertpools.batchcert.dev", "-A"),
    ("watch", "batchcertpools.batchcert.dev", "-A"),
    ("patch", "batchcertpools.batchcert.dev", "-A"),
    ("patch", "batchcertpools.batchcert.dev", "--subresource=status", "-A"),
    ("create", "events", "-A"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
DENIED = [
    ("get", "secrets", "-A"),
    ("list", "secrets", "-A"),
    ("get", "configmaps", "-A"),
    ("create", "pods", "-A"),
    ("create", "deployments.apps", "-A"),
    ("create", "batchcertpools.batchcert.dev", "-A"),
    ("delete", "batchcertpools.batchcert.dev", "-A"),
    ("update", "batchcertpools.batchcert.dev", "-A"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "events", "-A"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token", "-A"),
    ("*", "*", "-A"),
]


def test_serviceaccount_has_least_privilege(deployed: OperatorStack) -> None:
    cluster = deployed.cluster
    wrong = []
    for check, want in [*((c, "yes") for c in ALLOWED), *((c, "no") for c in DENIED)]:
        got = cluster.kubectl("auth", "can-i", *check, as_=SERVICE_ACCOUNT).stdout.strip()
        if got != want:
            wrong.append(f"can-i {' '.join(check)}: {got}, want {want}")
    assert not wrong, "\n".join(wrong)


def _samples(text: str, metric: str, **labels: str) -> list[float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                found.append(float(sample.value))
    return found


def test_story_under_the_serviceaccount(deployed: OperatorStack) -> None:
    stack, demo = deployed, deployed.demo
    op = stack.operator
    ns = stack.namespace("deploy")
    cert = f"dep-{uuid.uuid4().hex[:6]}"
    stack.control.add_certificate(demo["vault"], cert)
    stack.apply(
        stack.manifest("story", ns, certificates=[{"vaultUrl": demo["vaultUrl"], "name": cert}])
    )

    def reconciling() -> bool:
        return bool(stack.get("story", ns).get("status", {}).get("conditions"))

    stack.wait_until("first status", reconciling, name="story", namespace=ns, timeout=30)
    capture(stack.get("story", ns), "reconciling")

    # create → Ready
    stack.wait_ready("story", ns)
    ready_obj = stack.get("story", ns)
    capture(ready_obj, "ready")
    shown = stack.status_command("story", ns)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    version = ready_obj["status"]["certificates"][0]["version"]
    for text in ("Status:       Ready", version, "1/1 ready", "PoolCreated", "CertificateReady"):
        assert text in shown.stdout, shown.stdout
    assert stack.pool_in_azure("story") is not None

    # rotation
    new_version = stack.control.renew_certificate(demo["vault"], cert)

    def rotated() -> bool:
        items = stack.get("story", ns)["status"]["certificates"]
        return bool(items[0]["rotations"] == 1)

    stack.wait_until("rotations == 1", rotated, name="story", namespace=ns, timeout=60)
    rotated_obj = stack.get("story", ns)
    capture(rotated_obj, "rotation-propagating")
    assert rotated_obj["status"]["certificates"][0]["version"] == new_version
    assert "CertificateRotated" in stack.event_reasons(ns)

    # the metrics after a rotation (the scrape may run before the next tick: retry briefly)
    def scraped() -> bool:
        return _samples(
            op.scrape(),
            "batchcert_certificate_rotations_total",
            namespace=ns,
            name="story",
            certificate=cert,
        ) == [1.0]

    stack.wait_until("rotations_total == 1", scraped, name="story", namespace=ns, timeout=30)
    text = op.scrape()
    key = {"namespace": ns, "name": "story"}
    (expiry,) = _samples(
        text, "batchcert_certificate_expiration_timestamp_seconds", certificate=cert, **key
    )
    assert expiry > 0
    assert _samples(
        text, "batchcert_certificate_renewal_timestamp_seconds", certificate=cert, **key
    )
    assert _samples(text, "batchcert_pool_nodes", state="ready", **key) == [1.0]
    assert _samples(text, "batchcert_condition", type="CertificateReady", status="True", **key)
    assert _samples(text, "batchcert_reconcile_duration_seconds_count")[0] > 0
    assert sum(_samples(text, "batchcert_azure_requests_total", service="arm")) > 0
    for service in ("arm", "keyvault", "batch"):
        assert _samples(text, "batchcert_azure_throttled_total", service=service) == [0.0]
    # one series per condition, carrying its current reason
    assert _samples(text, "batchcert_condition_reason", type="Stalled", status="False", **key) == [
        1.0
    ]
    linted = run_promtool("check", "metrics", stdin=text)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert op.liveness() == 200

    # a failure that needs the user (no such certificate): Stalled, exit status 3
    stack.apply(
        stack.manifest(
            "broken", ns, certificates=[{"vaultUrl": demo["vaultUrl"], "name": "no-such-cert"}]
        )
    )

    def named() -> bool:
        return (
            stack.condition("broken", ns, "CertificateReady").get("reason") == "CertificateNotFound"
        )

    stack.wait_until("CertificateNotFound", named, name="broken", namespace=ns, timeout=60)
    capture(stack.get("broken", ns), "certificate-not-found")
    failing = stack.status_command("broken", ns)
    assert failing.returncode == 3, failing.stdout + failing.stderr
    assert "NOT Ready" in failing.stdout and "CertificateNotFound" in failing.stdout
    missing = stack.status_command("nobody", ns)
    assert missing.returncode == 2 and "not found" in missing.stderr

    # a spec refused after an edit: a verdict on the new generation, observedGeneration included
    edited = stack.get("broken", ns)
    edited["spec"]["certificates"] = [{"vaultUrl": "https://kv.evil.example", "name": "c"}]
    stack.apply(
        {k: edited[k] for k in ("apiVersion", "kind", "spec")}
        | {"metadata": {"name": "broken", "namespace": ns}}
    )

    def refused() -> bool:
        obj = stack.get("broken", ns)
        stalled = [c for c in obj["status"]["conditions"] if c["type"] == "Stalled"]
        return (
            obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            and bool(stalled)
            and stalled[0]["reason"] == "VaultNotAllowed"
        )

    stack.wait_until("VaultNotAllowed", refused, name="broken", namespace=ns, timeout=60)
    capture(stack.get("broken", ns), "refused-after-edit")

    # paused on purpose: neither Reconciling nor Stalled
    stack.cluster.kubectl(
        "annotate", "bcp", "story", "-n", ns, "batchcert.dev/paused=true", check=True
    )

    def paused() -> bool:
        return stack.condition("story", ns, "Ready").get("reason") == "ReconcilePaused"

    stack.wait_until("ReconcilePaused", paused, name="story", namespace=ns, timeout=60)
    capture(stack.get("story", ns), "paused")
    stack.cluster.kubectl("annotate", "bcp", "story", "-n", ns, "batchcert.dev/paused-", check=True)

    # delete (both objects), and the pools go with them
    for name in ("story", "broken"):
        result = stack.cluster.kubectl(
            "delete", "bcp", name, "-n", ns, "--timeout=90s", timeout=100
        )
        assert result.returncode == 0, stack.explain(name, ns, result.stderr)
    assert stack.pool_in_azure("story") is None
    assert "PoolDeleting" in stack.event_reasons(ns)
    assert not _samples(op.scrape(), "batchcert_condition", **key), "forgotten on deletion"

    # least privilege proven by use: nothing the operator asked for was refused
    assert op.forbidden_lines() == []
    assert "Traceback" not in op.log(), op.log()[-4000:]
    lines = [line for line in op.log().splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), "--log-format=json: every line"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_install_step_gives_a_working_batchcert_run(tmp_path: Path) -> None:
    # The build context exactly as the Dockerfile copies it: no venv, no tests, no dev tooling.
    context = tmp_path / "context"
    context.mkdir()
    for source in dockerfile_copy_sources():
        if (REPO_ROOT / source).is_dir():
            shutil.copytree(
                REPO_ROOT / source,
                context / source,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            shutil.copy(REPO_ROOT / source, context / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(context / "constraints.txt"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    def batchcert(*args: str) -> str:
        return subprocess.run(
            [str(venv / "bin" / "batchcert"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    for flag in ("--metrics-port", "--liveness", "--log-format", "--namespace"):
        assert flag in batchcert("run", "--help")
    # The image's CLI offers only what runs there.
    listed = re.findall(r"^    (\S+)\s", batchcert("--help"), flags=re.MULTILINE)
    assert listed == ["run", "status"]
    # The image is the runtime only: no test tools, no simulator, no dev cluster, no demo.
    assert not (venv / "bin" / "pytest").exists()
    assert not (venv / "bin" / "hadolint").exists()
    assert not (venv / "bin" / "batchcert-dev").exists()
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import batchsim"], capture_output=True, timeout=60
    )
    assert probe.returncode != 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("batchsim*")) and not list(site.glob("batchdev*"))


def dockerfile_copy_sources() -> list[str]:
    """The build-context paths the Dockerfile's COPY lines read (not the --from=stage ones)."""
    sources: list[str] = []
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources
