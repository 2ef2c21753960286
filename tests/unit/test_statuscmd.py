"""``batchcert status`` rendering (batchcert.statuscmd), on status captured from integration runs.

Covers: every section a user reads at a glance (pool, identity, certificate version, thumbprint,
validity, expected renewal, rotations, nodes, conditions in a fixed order, recent Events oldest
first and bounded); node failures listed with their reasons; the Ready verdict and its exit
status rule (Ready only for the current generation); the exit codes' verdicts (Ready, Stalled,
converging, each for the current generation only); what the pool runs (VM size, image, node
agent as Azure reports them) beside what the spec asks, a difference flagged; a pause annotation
as the operator reads it (an ignored value said so); ``--wait``'s durations; relative times; an
object with no status. The watch itself: tests/integration/test_helm.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchcert.statuscmd import RECENT_EVENTS, humanize, is_ready, render_status

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "status"
NOW = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def captured(name: str) -> dict[str, Any]:
    return dict(json.loads((CAPTURED / f"{name}.json").read_text()))


def event(reason: str, minutes_ago: int, type_: str = "Normal") -> dict[str, Any]:
    at = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": type_, "reason": reason, "message": f"{reason} message", "lastTimestamp": at}


def test_ready_object_reads_at_a_glance() -> None:
    obj = captured("rotation-propagating")
    obj["status"]["conditions"][0].update(status="True", reason="Ready", message="all good")
    text = render_status(obj, [event("PoolCreated", 9), event("CertificateRotated", 2)], NOW)
    (cert,) = obj["status"]["certificates"]
    for expected in (
        "Status:       Ready: Ready - all good",
        f"Pool:         {obj['status']['pool']['name']}",
        obj["status"]["pool"]["resourceId"],
        obj["spec"]["identity"]["resourceId"],
        "Client ID:  looked up from the resource",
        cert["version"],
        cert["thumbprint"],
        f"Not after:         {cert['notAfter']} (in ",
        f"Expected renewal:  {cert['expectedRenewalTime']} (in ",
        "1 rotation(s) seen",
        "Nodes:        1/1 ready, 0 transitioning, 0 failed",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    conditions = text[text.index("Conditions:") : text.index("Events")]
    order = [conditions.index(t) for t in ("Ready ", "PoolReady", "CertificateReady", "NodesReady")]
    assert order == sorted(order)
    events = text[text.index("Events") :]
    assert events.index("PoolCreated") < events.index("CertificateRotated")
    assert "9m" in events and "2m" in events


def test_failing_object_names_the_reason_and_is_not_ready() -> None:
    obj = captured("certificate-not-found")
    text = render_status(obj, [], NOW)
    assert text.startswith("Name:         broken\n")
    assert "Status:       NOT Ready" in text
    assert "CertificateNotFound" in text
    assert "Events:       none" in text
    assert not is_ready(obj)


def test_node_failures_are_listed_with_reasons() -> None:
    obj = captured("ready")
    obj["status"]["nodes"].update(
        ready=0,
        failed=1,
        failures=[
            {
                "nodeId": "tvmps_1",
                "code": "VaultAccessDenied",
                "message": "the identity cannot read secrets",
                "time": "2026-11-28T13:50:00Z",
            }
        ],
    )
    text = render_status(obj, [], NOW)
    assert "0/1 ready, 0 transitioning, 1 failed" in text
    line = next(line for line in text.splitlines() if "tvmps_1" in line)
    assert "VaultAccessDenied" in line and "10m" in line and "cannot read secrets" in line


def test_ready_only_for_the_current_generation() -> None:
    obj = captured("ready")
    assert is_ready(obj)
    obj["metadata"]["generation"] += 1
    assert not is_ready(obj)
    assert "older generation" in render_status(obj, [], NOW)


def test_events_are_bounded_to_the_most_recent() -> None:
    events = [event(f"Reason{i}", 100 - i) for i in range(RECENT_EVENTS + 5)]
    text = render_status(captured("ready"), events, NOW)
    assert "Reason0 " not in text
    assert f"Reason{RECENT_EVENTS + 4}" in text


def test_no_status_yet() -> None:
    obj = captured("ready")
    del obj["status"]
    text = render_status(obj, [], NOW)
    assert "NOT Ready: NoStatus" in text
    assert "not seen in Azure yet" in text and "not checked yet" in text


def test_what_the_pool_runs_is_shown_beside_the_spec_and_a_difference_flagged() -> None:
    obj = captured("ready")
    obj["spec"]["vmSize"] = "STANDARD_D4S_V3"  # a refused disruptive change: the spec moved on
    obj["status"]["pool"].update(
        vmSize="standard_d2s_v3",  # Azure's spelling; the difference is the size, not the case
        image="canonical/0001-com-ubuntu-server-jammy/22_04-lts/latest",
        nodeAgentSkuId="batch.node.ubuntu 22.04",
    )
    obj["spec"]["image"] = {
        "publisher": "canonical",
        "offer": "0001-com-ubuntu-server-jammy",
        "sku": "22_04-lts",
    }
    obj["spec"]["nodeAgentSkuId"] = "batch.node.ubuntu 22.04"
    text = render_status(obj, [], NOW)
    assert "  VM size:    standard_d2s_v3 (DIFFERS: the spec asks for STANDARD_D4S_V3)" in text
    # The same image (Azure fills in `latest`) and agent: shown as they run, nothing flagged.
    assert "  Image:      canonical/0001-com-ubuntu-server-jammy/22_04-lts/latest\n" in text
    assert "  Node agent: batch.node.ubuntu 22.04\n" in text
    assert text.count("DIFFERS") == 1


def test_a_pause_annotation_is_shown_as_the_operator_reads_it() -> None:
    from batchcert.models.names import PAUSED_ANNOTATION

    obj = captured("ready")
    obj["metadata"]["annotations"] = {PAUSED_ANNOTATION: "True"}
    assert "Paused:       yes" in render_status(obj, [], NOW)
    obj["metadata"]["annotations"] = {PAUSED_ANNOTATION: "yes please"}
    text = render_status(obj, [], NOW)
    assert "Paused:       no: annotation batchcert.dev/paused='yes please' is ignored" in text
    obj["metadata"]["annotations"] = {PAUSED_ANNOTATION: "false"}
    assert "Paused:" not in render_status(obj, [], NOW)


def test_before_azure_reports_the_pool_the_spec_is_shown_as_the_spec() -> None:
    obj = captured("ready")
    obj["status"]["pool"] = {"name": "story"}  # written before the pool's facts were kept
    text = render_status(obj, [], NOW)
    assert f"  VM size:    {obj['spec']['vmSize']} (the spec; not reported by Azure yet)" in text
    assert "DIFFERS" not in text


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (65, "1m5s"), (3600 * 26, "1d2h"), (-90, "1m30s")]
)
def test_humanize(seconds: float, text: str) -> None:
    assert humanize(seconds) == text


def _with_conditions(generation: int, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": {"conditions": list(conditions)}}


def test_verdict_tells_ready_stalled_and_converging_apart() -> None:
    from batchcert.statuscmd import Verdict, verdict_of

    ready = {"type": "Ready", "status": "True", "observedGeneration": 2}
    stalled = {"type": "Stalled", "status": "True", "observedGeneration": 2}
    assert verdict_of(_with_conditions(2, ready)) is Verdict.READY
    assert verdict_of(_with_conditions(2, stalled)) is Verdict.STALLED
    # An older generation's verdict says nothing about the spec the user just applied.
    assert verdict_of(_with_conditions(3, stalled)) is Verdict.CONVERGING
    assert verdict_of(_with_conditions(3, ready)) is Verdict.CONVERGING
    assert verdict_of(_with_conditions(1)) is Verdict.CONVERGING
    assert [int(v) for v in Verdict] == [0, 1, 2, 3, 4], "documented exit codes"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), ("0.5s", 0.5)],
)
def test_wait_timeout_reads_like_kubectl(text: str, seconds: float) -> None:
    from batchcert.statuscmd import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 minutes", "-5s"])
def test_wait_timeout_refuses_what_is_not_a_duration(text: str) -> None:
    import argparse

    from batchcert.statuscmd import parse_duration

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
