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

import random
import re
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
from batchcert.models.spec import OsType, parse_spec
from batchcert.reconcile.memory import ObjectView
from batchcert.reconcile.outcome import Outcome
from batchcert.statuscmd import render_status
from batchcert.translate.verification_task import (
    UnsafeCommandInputError,
    build_command_line,
    build_job_body,
    build_job_id,
    build_targets,
    build_task_body,
    build_task_id,
    is_own_job,
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


def test_task_body_is_pinned_least_privileged_bounded_and_never_retried() -> None:
    task_id = build_task_id("tvmps_" + "a" * 64 + "_d", 3)
    body = build_task_body(task_id, "cmd", "TVM:n", "PT5M", OsType.LINUX)
    assert len(body["id"]) <= 64
    assert body["affinityInfo"] == {"affinityId": "TVM:n"}
    # Linux: root for the extension's 0700 folder, at task scope (not the pool's shared user).
    assert body["userIdentity"] == {"autoUser": {"scope": "task", "elevationLevel": "admin"}}
    assert body["constraints"]["maxWallClockTime"] == "PT5M"
    assert body["constraints"]["maxTaskRetryCount"] == 0
    windows = build_task_body(task_id, "cmd", "TVM:n", "PT5M", OsType.WINDOWS)
    assert windows["userIdentity"]["autoUser"]["elevationLevel"] == "nonadmin"


UID = "0b0c7a8e-1f7e-4a53-9d1e-3f4b5a6c7d8e"


def test_jobs_are_named_by_the_operator_per_run_and_marked_as_its_own() -> None:
    job_id = build_job_id(UID, T0)
    assert job_id.startswith(f"bcv-{UID}-") and len(job_id) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id)
    assert build_job_id(UID, T0 + timedelta(milliseconds=1)) != job_id  # a new name per run
    body = build_job_body(job_id, "Pool1", UID, "PT1800S")
    assert body["priority"] == 1000
    assert body["constraints"]["maxWallClockTime"] == "PT1800S"  # ends by itself
    assert is_own_job(body, UID, "pool1")  # Batch pool ids ignore case
    assert not is_own_job(body, "another-uid", "Pool1")
    assert not is_own_job(body, UID, "Pool2")
    moved = dict(body, poolInfo={"poolId": "Pool2"})
    assert not is_own_job(moved, UID, "Pool1")  # metadata says ours, but it runs elsewhere
    assert not is_own_job({"id": job_id, "poolInfo": {"poolId": "Pool1"}}, UID, "Pool1")
    assert not is_own_job({"metadata": "junk", "poolInfo": None}, UID, "Pool1")


def test_output_parsing_needs_the_done_sentinel() -> None:
    fingerprint = ":".join(NEW[i : i + 2] for i in range(0, 40, 2))
    assert parse_task_output(f"batchcert 0 SHA1 Fingerprint={fingerprint}\n", 1) is None
    assert parse_task_output(
        f"batchcert 0 sha1 Fingerprint={fingerprint}\nbatchcert done\n", 1
    ) == ((NEW,),)
    assert parse_task_output("batchcert 0 MISSING\nbatchcert done\n", 1) == ((),)
    windows = f"batchcert 0 {OLD},{NEW}\r\nbatchcert done\r\n"
    assert parse_task_output(windows, 1) == ((OLD, NEW),)
    assert parse_task_output("batchcert 0 \r\nbatchcert done\r\n", 1) == ((),)


@pytest.mark.parametrize(
    "output",
    [
        f"batchcert 0 {OLD}\nbatchcert 0 {NEW}\nbatchcert done\n",  # a line repeated
        f"batchcert 1 {OLD}\nbatchcert 0 {NEW}\nbatchcert done\n",  # out of order
        f"batchcert 0 {NEW}\nbatchcert done\nbatchcert 1 {OLD}\n",  # done not last
        f"batchcert 0 {NEW}\nbatchcert done\n",  # a certificate missing
        f"hello\nbatchcert 0 {NEW}\nbatchcert 1 {NEW}\nbatchcert done\n",  # a stranger's line
        f"batchcert {'9' * 5000} {NEW}\nbatchcert 1 {NEW}\nbatchcert done\n",  # 5000 digits
        f"batchcert 00 {NEW}\nbatchcert 1 {NEW}\nbatchcert done\n",
        f"batchcert 0 {NEW}x\nbatchcert 1 {NEW}\nbatchcert done\n",
        f"batchcert 0 {','.join([NEW] * 65)}\nbatchcert 1 {NEW}\nbatchcert done\n",
        f"batchcert 0 {NEW}\nbatchcert 1 {NEW}\nbatchcert done\n" + " " * 20_000,
        f"batchcert \u0660 {NEW}\nbatchcert 1 {NEW}\nbatchcert done\n",  # an Arabic zero
    ],
)
def test_output_other_than_the_commands_own_is_no_proof(output: str) -> None:
    assert parse_task_output(output, 2) is None


def test_output_parsing_never_raises_on_hostile_text() -> None:
    """A property test without hypothesis (not in the deps): seeded random texts built from
    the grammar's own pieces and noise; the parser is total and, when it answers, answers
    with one tuple of 40-hex thumbprints per certificate."""
    rng = random.Random(21)
    pieces = [
        "batchcert ",
        "done",
        "0 ",
        "1 ",
        "9" * 5000,
        "-1 ",
        "SHA1 Fingerprint=",
        ":".join(NEW[i : i + 2] for i in range(0, 40, 2)),
        NEW,
        OLD,
        ",",
        "MISSING",
        "\n",
        "\r\n",
        "\x00",
        "\u2028",
        " ",
        "é",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for certificates in (0, 1, 2, 10**6):
            found = parse_task_output(text, certificates)
            assert found is None or (
                len(found) == certificates
                and all(re.fullmatch(r"[0-9A-F]{40}", t) for f in found for t in f)
            )


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
    base: ConditionUpdate,
    status: dict[str, Any],
    *,
    now: datetime,
    rotated: bool = True,
    require_proof: bool = False,
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
        require_proof=require_proof,
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
    # api.md "Proof and Ready", requireProof false: pending for at most polling + taskTimeout
    # after the rotation (T0 = settled), then the extension's verdict, saying proof is missing.
    waiting = _decide(healthy, _status(1, 0, 2), now=later)
    assert (waiting.status, waiting.reason) == (False, "VerificationPending")
    unverified = _decide(healthy, _status(1, 0, 2), now=T0 + timedelta(minutes=11))
    assert (unverified.status, unverified.reason) == (True, "RotationUnverified")
    assert "2 not proven" in unverified.message
    assert _decide(failed, _status(3, 0, 0), now=later) == failed  # not contradicted
    assert _decide(healthy, _status(1, 0, 2), now=later, rotated=False) == healthy
    # requireProof true: False (in progress) until every node is proven current, however long.
    for now, rotated in ((later, True), (T0 + timedelta(days=3), True), (later, False)):
        held = _decide(healthy, _status(1, 0, 2), now=now, rotated=rotated, require_proof=True)
        assert (held.status, held.reason) == (False, "VerificationPending")
    proven = _decide(healthy, _status(3, 0, 0), now=later, require_proof=True)
    assert proven.reason == "RotationVerified"
    assert _decide(healthy, _status(3, 0, 0), now=later, rotated=False, require_proof=True) == (
        healthy
    )


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


def test_the_file_name_keeps_the_vault_urls_case_as_the_extension_writes_it() -> None:
    spec = _spec(certificates=[{"secretId": "https://MyVault-01.vault.azure.net/secrets/MyCert"}])
    command = build_command_line(spec.resolved_os_type, build_targets(spec))
    assert "/var/lib/waagent/Microsoft.Azure.KeyVault/MyVault-01.MyCert" in shlex.split(command)[2]


def test_a_windows_current_user_certificate_is_never_verified() -> None:
    spec = _spec(
        nodeAgentSkuId="batch.node.windows amd64",
        certificates=[
            {
                "secretId": "https://mykv.vault.azure.net/secrets/mycert",
                "certificateStoreLocation": "CurrentUser",
            }
        ],
    )
    with pytest.raises(UnsafeCommandInputError, match="CurrentUser"):
        build_targets(spec)


@pytest.mark.parametrize(
    ("interval", "timeout", "expected"),
    [
        ("PT0S", "PT0S", (900.0, 60.0)),
        ("P1000000000D", "P1000000000D", (30 * 86400.0, 3600.0)),
        ("PT" + "9" * 5000 + "S", "PT" + "9" * 5000 + "S", (30 * 86400.0, 3600.0)),
        ("PT24H", "PT10M", (86400.0, 600.0)),
    ],
)
def test_unbounded_durations_are_held_to_the_bounds(
    interval: str, timeout: str, expected: tuple[float, float]
) -> None:
    verification = _spec(verification={"interval": interval, "taskTimeout": timeout}).verification
    assert (verification.interval_seconds, verification.task_timeout_seconds) == expected
