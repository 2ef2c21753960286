"""Day-2 experience through the real operator process, the real API server and the simulator.

Covers: ``batchcert status`` shows the VM size the pool runs (not the spec's) during a refused
disruptive change, flagged as differing; a ``batchcert.dev/paused`` value other than true/false
is reconciled as not paused and said once per distinct value (a Warning Event), not every turn;
while Azure deletes a pool (deletionPolicy Delete) status says ``PoolDeleting``; no pool is
created while a certificate without createIfMissing is known missing (PoolReady names it), and
it is once the certificate exists; a granted access is never followed by ``Stalled`` within one
polling interval (the nodes fetch again at their next retry; ``FixPropagating`` meanwhile).
"""

from __future__ import annotations

import json
import time
import uuid

from support.stack import FAST_NODES, OperatorStack


def _no_tracebacks(stack: OperatorStack) -> None:
    assert stack.operator.is_running()
    assert "Traceback" not in stack.operator.log(), stack.operator.log()[-4000:]


def test_status_shows_the_size_that_runs_during_a_refused_change(stack: OperatorStack) -> None:
    ns = stack.namespace("runs")
    manifest = stack.manifest("runs", ns)
    stack.apply(manifest)
    stack.wait_ready("runs", ns)
    manifest["spec"]["vmSize"] = "STANDARD_D4S_V3"  # disruptive; the policy is Report
    stack.apply(manifest)

    def refused() -> bool:
        reason = stack.condition("runs", ns, "PoolReady").get("reason")
        return reason == "UpdateRequiresDisruption"

    stack.wait_until("UpdateRequiresDisruption", refused, name="runs", namespace=ns)
    shown = stack.status_command("runs", ns)
    assert shown.returncode == 3, shown.stdout + shown.stderr  # Stalled: a person must choose
    vm_line = next(line for line in shown.stdout.splitlines() if "VM size:" in line)
    assert "STANDARD_D2S_V3" in vm_line.upper(), shown.stdout
    assert "DIFFERS: the spec asks for STANDARD_D4S_V3" in vm_line, shown.stdout
    image_line = next(line for line in shown.stdout.splitlines() if "Image:" in line)
    assert "canonical/0001-com-ubuntu-server-jammy/22_04-lts/latest" in image_line
    assert "DIFFERS" not in image_line
    _no_tracebacks(stack)


def _ignored_pause_events(stack: OperatorStack, ns: str) -> list[str]:
    return [e["message"] for e in stack.events(ns) if e["reason"] == "PauseAnnotationIgnored"]


def test_a_pause_value_other_than_true_or_false_is_ignored_and_said_once(
    stack: OperatorStack,
) -> None:
    ns = stack.namespace("pause")
    manifest = stack.manifest("pause", ns)
    manifest["metadata"]["annotations"] = {"batchcert.dev/paused": "yes please"}
    stack.apply(manifest)
    stack.wait_ready("pause", ns)  # reconciled: not paused
    time.sleep(5)  # several turns (busy and node intervals of 1-3 s): still one Event
    (message,) = _ignored_pause_events(stack, ns)
    assert "'yes please'" in message and "not paused" in message
    event = next(e for e in stack.events(ns) if e["reason"] == "PauseAnnotationIgnored")
    assert (event["type"], event["involvedObject"]["name"]) == ("Warning", "pause")

    stack.cluster.kubectl(
        "annotate", "bcp", "pause", "-n", ns, "--overwrite", "batchcert.dev/paused=1", check=True
    )

    def said_again() -> bool:
        return len(_ignored_pause_events(stack, ns)) == 2

    stack.wait_until("a second PauseAnnotationIgnored", said_again, name="pause", namespace=ns)
    assert any("'1'" in m for m in _ignored_pause_events(stack, ns))
    stack.cluster.kubectl(
        "annotate", "bcp", "pause", "-n", ns, "--overwrite", "batchcert.dev/paused=true", check=True
    )

    def paused() -> bool:
        return stack.condition("pause", ns, "Ready").get("reason") == "ReconcilePaused"

    stack.wait_until("ReconcilePaused", paused, name="pause", namespace=ns)
    assert len(_ignored_pause_events(stack, ns)) == 2  # a real pause is no mistake
    _no_tracebacks(stack)


def test_status_says_pool_deleting_while_azure_deletes(stack: OperatorStack) -> None:
    ns = stack.namespace("deleting")
    stack.apply(stack.manifest("deleting", ns, deletionPolicy="Delete"))
    stack.wait_ready("deleting", ns)
    stack.cluster.kubectl("delete", "bcp", "deleting", "-n", ns, "--wait=false", check=True)
    seen: list[tuple[str, str, str]] = []  # (PoolReady reason, Ready reason, Stalled status)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        listed = stack.cluster.kubectl("get", "bcp", "-n", ns, "-o", "json", check=True)
        items = json.loads(listed.stdout)["items"]
        if not items:
            break
        conditions = {c["type"]: c for c in items[0].get("status", {}).get("conditions", [])}
        seen.append(
            (
                conditions["PoolReady"]["reason"],
                conditions["Ready"]["reason"],
                conditions["Stalled"]["status"],
            )
        )
        time.sleep(0.2)
    else:
        raise AssertionError(stack.explain("deleting", ns, "the object was never deleted"))
    assert ("PoolDeleting", "PoolDeleting", "False") in seen, seen
    assert stack.pool_in_azure("deleting") is None
    _no_tracebacks(stack)


def test_no_pool_is_created_while_its_certificate_is_known_missing(stack: OperatorStack) -> None:
    ns, demo = stack.namespace("gate"), stack.demo
    cert = f"gate-{uuid.uuid4().hex[:6]}"  # not in the vault (yet)
    certificates = [{"vaultUrl": demo["vaultUrl"], "name": cert}]
    stack.apply(stack.manifest("gate", ns, certificates=certificates))

    def missing() -> bool:
        reason = stack.condition("gate", ns, "CertificateReady").get("reason")
        return reason == "CertificateNotFound"

    stack.wait_until("CertificateNotFound", missing, name="gate", namespace=ns, timeout=60)
    # The certificates are read before the pool step, from the object's first turn on.
    assert stack.pool_in_azure("gate") is None
    created = stack.event_reasons(ns).count("PoolCreated")
    assert created == 0

    def waiting() -> bool:
        return stack.condition("gate", ns, "PoolReady").get("reason") == "CertificateNotFound"

    stack.wait_until("PoolReady=CertificateNotFound", waiting, name="gate", namespace=ns)
    time.sleep(8)  # beyond the drift interval (5 s): still no pool
    assert stack.pool_in_azure("gate") is None
    assert stack.event_reasons(ns).count("PoolCreated") == created
    pool_ready = stack.condition("gate", ns, "PoolReady")
    assert pool_ready["status"] == "False"
    assert f"certificate {cert} in" in pool_ready["message"]
    assert "createIfMissing is off" in pool_ready["message"]
    assert stack.condition("gate", ns, "Stalled")["status"] == "True"  # a person must act

    stack.control.add_certificate(demo["vault"], cert)
    stack.wait_ready("gate", ns, timeout=90)
    assert stack.pool_in_azure("gate") is not None
    assert stack.event_reasons(ns).count("PoolCreated") == created + 1
    _no_tracebacks(stack)


def test_a_granted_access_is_never_followed_by_stalled_within_one_polling_interval(
    stack: OperatorStack,
) -> None:
    ns, demo, info = stack.namespace("regrant"), stack.demo, stack.sim.info
    vault = f"kv{uuid.uuid4().hex[:8]}"
    stack.control.add_vault(demo["subscriptionId"], demo["resourceGroup"], vault)
    operator = info["principals"]["operator"]["objectId"]
    stack.control.grant(vault, operator, {"certificates": ["get", "list"]})
    stack.control.add_certificate(vault, "later")
    vault_id = (
        f"/subscriptions/{demo['subscriptionId']}/resourceGroups/{demo['resourceGroup']}"
        f"/providers/Microsoft.KeyVault/vaults/{vault}"
    )
    vault_url = demo["vaultUrl"].replace("demokv.", f"{vault}.")
    manifest = stack.manifest(
        "regrant", ns, certificates=[{"vaultUrl": vault_url, "name": "later"}]
    )
    # Nodes that keep retrying their initial sync (as real ones do, 25 times), more slowly than
    # the fast default, so they are still failing when the grant lands.
    stack.control.set_node_behaviour(extensionMaxAttempts=25, extensionRetryIntervalSeconds=3)
    try:
        stack.apply(manifest)

        def denied() -> bool:
            reason = stack.condition("regrant", ns, "NodesReady").get("reason")
            return reason == "VaultAccessDenied"

        stack.wait_until("VaultAccessDenied", denied, name="regrant", namespace=ns, timeout=60)
        assert stack.condition("regrant", ns, "Stalled")["status"] == "True"
        # The fix the operator suggests: let it grant the pool identity access.
        manifest["spec"]["identity"]["grantSecretsAccess"] = {"vaults": [vault_id]}
        stack.apply(manifest)
        generation = stack.get("regrant", ns)["metadata"]["generation"]
        seen = _watch_until_ready(stack, "regrant", ns, generation, seconds=60)
    finally:
        stack.control.set_node_behaviour(**FAST_NODES)
    assert "VaultAccessGranted" in stack.event_reasons(ns)
    stalled = [(nodes, at) for nodes, stalled_, at in seen if stalled_ == "True"]
    assert stalled == [], seen  # within the polling interval (60 s): never Stalled
    assert seen[0][0] == "FixPropagating", seen  # said in the very turn of the grant
    assert seen and seen[-1][0] in ("ExtensionSucceeded", "NoNodes"), seen  # Ready by itself
    _no_tracebacks(stack)


def _watch_until_ready(
    stack: OperatorStack, name: str, ns: str, generation: int, *, seconds: float
) -> list[tuple[str, str, float]]:
    """(NodesReady reason, Stalled status, seconds since the start) for every verdict on
    ``generation``, until Ready or ``seconds`` pass."""
    seen: list[tuple[str, str, float]] = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        conditions = {
            c["type"]: c for c in stack.get(name, ns).get("status", {}).get("conditions", [])
        }
        stalled = conditions.get("Stalled", {})
        if stalled.get("observedGeneration") == generation:
            elapsed = round(time.monotonic() - start, 1)
            seen.append((conditions["NodesReady"]["reason"], stalled["status"], elapsed))
            if conditions["Ready"]["status"] == "True":
                break
        time.sleep(0.3)
    return seen
