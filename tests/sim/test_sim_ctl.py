"""``batchcert-dev sim <verb>``: shaping a running simulator's world from a shell.

Covers, through the real command line against a running simulator (the demo world): the clock
shown and advanced by a duration; an identity added; secrets access granted and revoked on a
vault; a certificate renewed and disabled; a node made busy, unable to fetch and hung, then
restored; pools listed with their nodes; a clear message and exit 2 when no simulator runs there.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from batchdev.cli import main
from batchsim.ctl import parse_duration
from batchsim.server import RunningSimulator


def ctl(sim: RunningSimulator, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(["sim", "--state-dir", str(sim.sim_json.parent), *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    try:
        return json.loads(out)
    except ValueError:
        return out


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("30d") == 30 * 86400


def test_clock_identity_grant_and_certificate(
    sim: RunningSimulator, demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.fromisoformat(ctl(sim, capsys, "clock")["now"])
    after = datetime.fromisoformat(ctl(sim, capsys, "clock", "--advance", "2d")["now"])
    assert (after - before).total_seconds() == pytest.approx(2 * 86400, abs=1)

    identity = ctl(sim, capsys, "identity", "team-b-identity")
    principal = identity["principalId"]
    assert identity["id"].endswith("/userAssignedIdentities/team-b-identity")

    def secrets_of(policies: Any) -> list[str] | None:
        for policy in policies["accessPolicies"]:
            if policy["object_id"] == principal:
                return sorted(policy["permissions"].get("secrets") or [])
        return None

    granted = ctl(sim, capsys, "grant", demo["vault"], principal)
    assert secrets_of(granted) == ["get", "list"]
    revoked = ctl(sim, capsys, "grant", demo["vault"], principal, "--revoke")
    assert not secrets_of(revoked)

    old = sim.control.certificate(demo["vault"], demo["certificate"])["current"]["version"]
    renewed = ctl(sim, capsys, "cert", demo["vault"], demo["certificate"], "--renew")
    assert renewed["version"] != old
    ctl(sim, capsys, "cert", demo["vault"], demo["certificate"], "--disable")
    assert (
        sim.control.certificate(demo["vault"], demo["certificate"])["current"]["enabled"] is False
    )


def test_node_made_busy_failing_and_restored(
    sim: RunningSimulator,
    arm: Any,
    demo: dict[str, Any],
    pool_body: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arm.pool.create(demo["resourceGroup"], demo["batchAccount"], "shaped", pool_body(nodes=1))
    sim.control.advance(60)
    listing = ctl(sim, capsys, "pools")
    assert "shaped" in listing
    [node_id] = [n["id"] for n in sim.control.pools()[0]["nodes"]]
    assert node_id in listing

    ctl(sim, capsys, "node", "shaped", node_id, "--busy", "1", "--fetch-blocked", "--hang")
    [node] = sim.control.pools()[0]["nodes"]
    assert (node["busySlots"], node["fetchBlocked"], node["taskHang"]) == (1, True, True)
    assert "busySlots=1 fetchBlocked taskHang" in ctl(sim, capsys, "pools")

    ctl(sim, capsys, "node", "shaped", node_id, "--busy", "0", "--fetch-ok", "--no-hang")
    ctl(sim, capsys, "node", "shaped", node_id, "--state", "unusable")
    [node] = sim.control.pools()[0]["nodes"]
    assert (node["busySlots"], node["fetchBlocked"], node["taskHang"]) == (0, False, False)
    assert node["state"] == "unusable"


def test_no_simulator_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--state-dir", str(tmp_path), "clock"]) == 2
    assert "no simulator runs with state dir" in capsys.readouterr().err
