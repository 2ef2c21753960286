"""Node verification, pure parts: the task command (validated, quoted), the task and job bodies,
parsing the task's output, the per-node verdict, ``status.nodes.verification``, the
``NodesReady`` decision, and the metric and ``batchcert status`` surfaces.

Covers: names and store paths that would reach a shell unquoted are refused; the Linux command
quotes every path; Windows uses the named store; output without the ``done`` sentinel is no
proof; a proof before the rotation settled is unverified, after it stale; NodesStale wins over an
extension failure; RotationVerified only with every node current; VerificationPending only after
the settling time plus taskTimeout; no rotation keeps the extension's verdict.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from batchcert.assess.verification import (
    CertificateKnowledge,
    NodeProof,
    NodeVerdict,
    assess_proof,
    build_verification_status,
    parse_task_output,
    verification_condition,
)
from batchcert.conditions import NODES_READY, ConditionUpdate
from batchcert.metrics import Metrics
from batchcert.models.spec import parse_spec
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Outcome
from batchcert.statuscmd import render_status
from batchcert.translate.verification_task import (
    UnsafeCommandInputError,
    build_command_line,
    build_job_id,
    build_targets,
    build_task_body,
    build_task_id,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
OLD, NEW = "A" * 40, "B" * 40


def _spec(**over: Any) -> Any:
    spec: dict[str, Any] = {
        "account": {"subscriptionId": "s", "resourceGroup": "r", "name": "a"},
        "vmSize": "x",
        "image": {"publisher": "p", "offer": "o", "sku": "s"},
        "nodeAgentSkuId": "batch.node.ubuntu 22.04",
        "scale": {"fixed": {"targetDedicatedNodes": 1}},
        "identity": {"resourceId": "/x/y"},
        "certificates": [{"secretId": "https://mykv.vault.azure.net/secrets/mycert"}],
        "verification": {"enabled": True},
    }
    spec.update(over)
    return parse_spec(spec)


def test_linux_command_reads_the_extension_file_with_every_path_quoted() -> None:
    spec = _spec(
        certificates=[
            {
                "secretId": "https://mykv.vault.azure.net/secrets/mycert",
                "certificateStoreLocation": "/var/lib/my certs",
            }
        ]
    )
    with pytest.raises(UnsafeCommandInputError):  # a space is not a plain path: refused
        build_targets(spec)
    spec = _spec()
    command = build_command_line(spec.resolved_os_type, build_targets(spec))
    argv = shlex.split(command)
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    assert "/var/lib/waagent/Microsoft.Azure.KeyVault/mykv.mycert" in argv[2]
    assert argv[2].endswith("echo batchcert done")


@pytest.mark.parametrize(
    "certificate",
    [
        {
            "secretId": "https://mykv.vault.azure.net/secrets/mycert",
            "certificateStoreLocation": "/a;rm -rf /",
        },
        {
            "secretId": "https://mykv.vault.azure.net/secrets/mycert",
            "certificateStoreLocation": "/a/$(id)",
        },
        {
            "secretId": "https://mykv.vault.azure.net/secrets/mycert",
            "certificateStoreLocation": "/a/../etc",
        },
        {"vaultUrl": "https://my_kv';x.vault.azure.net", "name": "mycert"},
    ],
)
def test_inputs_that_could_reach_a_shell_are_refused(certificate: dict[str, str]) -> None:
    with pytest.raises(UnsafeCommandInputError):
        build_targets(_spec(certificates=[certificate]))


def test_windows_command_lists_the_named_store() -> None:
    spec = _spec(
        nodeAgentSkuId="batch.node.windows amd64",
        certificates=[
            {
                "secretId": "https://mykv.vault.azure.net/secrets/mycert",
                "certificateStoreLocation": "LocalMachine",
                "certificateStoreName": "WebHosting",
            }
        ],
    )
    command = build_command_line(spec.resolved_os_type, build_targets(spec))
    assert command.startswith("powershell.exe -NoProfile -NonInteractive -Command ")
    assert "Get-ChildItem -Path 'Cert:\\LocalMachine\\WebHosting'" in command
    with pytest.raises(UnsafeCommandInputError):
        build_targets(
            _spec(
                nodeAgentSkuId="batch.node.windows amd64",
                certificates=[
                    {
                        "secretId": "https://mykv.vault.azure.net/secrets/mycert",
                        "certificateStoreName": "MY'; Remove-Item C:\\ -Recurse; '",
                    }
                ],
            )
        )


def test_task_body_is_pinned_elevated_bounded_and_never_retried() -> None:
    body = build_task_body(build_task_id("tvmps_" + "a" * 64 + "_d", 3), "cmd", "TVM:n", "PT5M")
    assert len(body["id"]) <= 64
    assert body["affinityInfo"] == {"affinityId": "TVM:n"}
    assert body["userIdentity"]["autoUser"]["elevationLevel"] == "admin"
    assert body["constraints"]["maxWallClockTime"] == "PT5M"
    assert body["constraints"]["maxTaskRetryCount"] == 0
    assert build_job_id(_spec(), "render") == "batchcert-verify-render"
    assert len(build_job_id(_spec(), "p" * 64)) <= 64


def test_output_parsing_needs_the_done_sentinel() -> None:
    fingerprint = ":".join(NEW[i : i + 2] for i in range(0, 40, 2))
    assert parse_task_output(f"batchcert 0 SHA1 Fingerprint={fingerprint}\n", 1) is None
    assert parse_task_output(
        f"batchcert 0 sha1 Fingerprint={fingerprint}\nbatchcert done\n", 1
    ) == ((NEW,),)
    assert parse_task_output("batchcert 0 MISSING\nbatchcert done\n", 1) == ((),)
    windows = f"batchcert 0 {OLD}\r\nbatchcert 0 {NEW}\r\nbatchcert done\r\n"
    assert parse_task_output(windows, 1) == ((OLD, NEW),)


def test_node_verdicts_respect_the_settling_time() -> None:
    knowledge = [CertificateKnowledge("mycert", NEW, {OLD: "v1", NEW: "v2"})]
    settled = T0 + timedelta(minutes=5)
    before = NodeProof("n", T0, ((OLD,),))
    after = NodeProof("n", settled + timedelta(seconds=1), ((OLD,),))
    assert assess_proof(before, knowledge, settled).state == "unverified"
    stale = assess_proof(after, knowledge, settled)
    assert stale.state == "stale"
    assert stale.stale == ({"certificate": "mycert", "thumbprint": OLD, "version": "v1"},)
    assert assess_proof(NodeProof("n", T0, ((NEW,),)), knowledge, settled).state == "current"
    assert assess_proof(NodeProof("n", T0, ((OLD, NEW),)), knowledge, None).state == "current"
    assert assess_proof(NodeProof("n", settled, None), knowledge, None).state == "unverified"
    missing = assess_proof(NodeProof("n", settled, ((),)), knowledge, None)
    assert missing.stale[0]["thumbprint"] == ""


def _status(current: int, stale: int, unverified: int) -> dict[str, Any]:
    verdicts = {f"c{i}": NodeVerdict("current") for i in range(current)}
    verdicts |= {
        f"s{i}": NodeVerdict("stale", ({"certificate": "c", "thumbprint": OLD, "version": "v1"},))
        for i in range(stale)
    }
    verdicts |= {f"u{i}": NodeVerdict("unverified") for i in range(unverified)}
    return build_verification_status(list(verdicts), verdicts, T0)


def test_status_counts_and_bounded_stale_nodes() -> None:
    status = _status(2, 12, 1)
    assert (status["current"], status["stale"], status["unverified"]) == (2, 12, 1)
    assert len(status["staleNodes"]) == 10
    assert status["summary"] == "2/15"
    assert status["lastRunTime"] == "2026-11-28T10:00:00Z"


def _decide(
    base: ConditionUpdate, status: dict[str, Any], *, now: datetime, rotated: bool = True
) -> ConditionUpdate:
    total = status["current"] + status["stale"] + status["unverified"]
    return verification_condition(
        base,
        status,
        rotated=rotated,
        settled_at=T0 if rotated else None,
        task_timeout=timedelta(minutes=10),
        now=now,
        total=total,
    )


def test_nodes_ready_with_verification() -> None:
    healthy = ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "ok")
    failed = ConditionUpdate(NODES_READY, False, "ExtensionFailed", "fetch failed")
    propagating = ConditionUpdate(NODES_READY, False, "RotationPropagating", "wait")
    later = T0 + timedelta(minutes=1)
    assert _decide(failed, _status(2, 1, 0), now=later).reason == "NodesStale"
    assert _decide(healthy, _status(3, 0, 0), now=later) == ConditionUpdate(
        NODES_READY,
        True,
        "RotationVerified",
        "3/3 nodes proven to hold the current version of every certificate",
    )
    assert _decide(propagating, _status(1, 0, 2), now=later) == propagating
    waiting = _decide(healthy, _status(1, 0, 2), now=later)
    assert (waiting.status, waiting.reason) == (False, "RotationPropagating")
    pending = _decide(healthy, _status(1, 0, 2), now=T0 + timedelta(minutes=11))
    assert (pending.status, pending.reason) == (False, "VerificationPending")
    assert _decide(failed, _status(3, 0, 0), now=later) == failed  # not contradicted
    assert _decide(healthy, _status(1, 0, 2), now=later, rotated=False) == healthy


def test_metric_and_status_command_show_verification() -> None:
    status = {
        "nodes": {"total": 3, "ready": 3, "verification": _status(2, 1, 0)},
        "conditions": [],
    }
    metrics = Metrics(CollectorRegistry())
    view = ObjectView("ns", "p", "uid", 1, {}, status)
    metrics.observe(view, Outcome({}, [], 1.0), 0.01)
    text = generate_latest(metrics.registry).decode()
    found = {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "batchcert_nodes_verified"
    }
    assert found == {"current": 2.0, "stale": 1.0, "unverified": 0.0}
    text = render_status(
        {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}, "status": status},
        [],
        T0 + timedelta(minutes=1),
    )
    assert "Verified:     2 current, 1 stale, 0 unverified" in text
    assert "Stale nodes:" in text and OLD in text
