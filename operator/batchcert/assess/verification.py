"""Node verification, decided: task output → per-node proof → ``status.nodes.verification`` and
what ``NodesReady`` says.

A node is *current* when its latest proof shows the current version of every certificate
(compared by SHA-1 thumbprint with Key Vault's); *stale* when a proof taken after the node had
its polling interval to fetch the current version shows an older version, or none, of some
certificate; *unverified* otherwise (no proof yet, busy, task failed or timed out, or a proof
older than the rotation's settling time).

``NodesReady`` with verification (``verification_condition``, api.md "Proof and Ready"): any
stale node gives ``False/NodesStale``; after a rotation, ``True/RotationVerified`` once every
node is proven current. While proof is missing: with ``requireProof`` ``False/
VerificationPending`` (in progress, never Stalled) until every node is proven; without it,
``False/VerificationPending`` from the settling time for at most ``taskTimeout``, then the
extension's verdict (``True/RotationUnverified`` with the unproven count). Before any rotation
(without ``requireProof``), and for extension failures that verification does not contradict,
the extension's verdict is kept.

After a restart (``restore_proofs``) the proofs are rebuilt from the status the last process
wrote, when it accounts for every node (no unverified node, every stale node listed, no
certificate rotated since its last run): the first turn then writes the same status and starts
no run before one is due. Otherwise only ``lastRunTime`` is kept and the nodes are proven anew.

Invariants: pure (no I/O, no clock: every time is an argument); ``staleNodes`` is bounded;
nothing in a recorded status (written by anyone with access to the object) raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from batchcert.conditions import NODES_READY, ConditionUpdate
from batchcert.models.spec import BatchCertPoolSpec
from batchcert.models.timestamps import format_rfc3339, parse_rfc3339
from batchcert.reasons import NodesReason

MAX_STALE_NODES = 10
_SCHEDULABLE = frozenset({"idle", "running"})
MAX_OUTPUT_CHARS = 16 * 1024  # the command prints a line per certificate; more is not ours
MAX_THUMBPRINTS = 64  # per Windows store line
_FINGERPRINT = re.compile(r"^sha1 fingerprint=(?P<hex>(?:[0-9a-f]{2}:){19}[0-9a-f]{2})$", re.I)
_HEX = re.compile(r"^[0-9A-Fa-f]{40}$")


@dataclass(frozen=True)
class CertificateKnowledge:
    """What Key Vault says about one spec certificate (metadata only)."""

    name: str
    current_thumbprint: str  # upper-case hex
    versions: dict[str, str] = field(default_factory=dict)  # thumbprint (hex) → version


@dataclass(frozen=True)
class NodeProof:
    node_id: str
    at: datetime
    found: (
        tuple[tuple[str, ...], ...] | None
    )  # per certificate: thumbprints seen (hex); None: no proof
    problem: str = ""  # why there is no proof (busy, timed out, failed)


@dataclass(frozen=True)
class NodeVerdict:
    state: str  # current | stale | unverified
    stale: tuple[dict[str, str], ...] = ()  # {certificate, thumbprint, version}


def parse_task_output(stdout: str, certificates: int) -> tuple[tuple[str, ...], ...] | None:
    """Thumbprints found per certificate, or None ("no proof") unless the output is exactly
    what the operator's command prints: line ``i`` is ``batchcert <i> <what was found>`` for
    every certificate in order, then ``batchcert done``, nothing else, within
    ``MAX_OUTPUT_CHARS``. What was found: ``SHA1 Fingerprint=AB:CD:…`` (OpenSSL), ``MISSING``,
    or comma-separated 40-hex thumbprints (Windows, at most ``MAX_THUMBPRINTS`` per line).

    Total: never raises, whatever the text (a hostile or broken node prints anything).
    """
    if not isinstance(stdout, str) or len(stdout) > MAX_OUTPUT_CHARS or certificates < 0:
        return None
    lines = [line.strip() for line in stdout.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != certificates + 1 or lines[-1] != "batchcert done":
        return None
    found: list[tuple[str, ...]] = []
    for index, line in enumerate(lines[:-1]):
        prefix = f"batchcert {index} "
        if not (line + " ").startswith(prefix):
            return None
        thumbprints = _thumbprints(line[len(prefix) :].strip())
        if thumbprints is None:
            return None
        found.append(thumbprints)
    return tuple(found)


def _thumbprints(text: str) -> tuple[str, ...] | None:
    if text == "MISSING" or text == "":
        return ()
    fingerprint = _FINGERPRINT.fullmatch(text)
    if fingerprint is not None:
        return (fingerprint["hex"].replace(":", "").upper(),)
    items = text.split(",")
    if len(items) > MAX_THUMBPRINTS or not all(_HEX.fullmatch(i) for i in items):
        return None
    return tuple(i.upper() for i in items)


def assess_proof(
    proof: NodeProof | None,
    certificates: list[CertificateKnowledge],
    settled_at: datetime | None,
) -> NodeVerdict:
    """``settled_at``: when the last rotation's polling interval ended (None: no rotation)."""
    if proof is None or proof.found is None or len(proof.found) != len(certificates):
        return NodeVerdict("unverified")
    stale: list[dict[str, str]] = []
    for cert, seen in zip(certificates, proof.found, strict=True):
        if cert.current_thumbprint and cert.current_thumbprint in seen:
            continue
        older = [t for t in seen if t in cert.versions]
        thumb = older[-1] if older else (seen[0] if seen else "")
        stale.append(
            {"certificate": cert.name, "thumbprint": thumb, "version": cert.versions.get(thumb, "")}
        )
    if not stale:
        return NodeVerdict("current")
    if settled_at is not None and proof.at < settled_at:
        return NodeVerdict("unverified")  # it has not had its polling interval yet
    return NodeVerdict("stale", tuple(stale))


def build_verification_status(
    node_ids: list[str],
    verdicts: dict[str, NodeVerdict],
    last_run_time: datetime | None,
) -> dict[str, Any]:
    counts = {"current": 0, "stale": 0, "unverified": 0}
    stale_nodes: list[dict[str, str]] = []
    for node_id in node_ids:
        verdict = verdicts.get(node_id, NodeVerdict("unverified"))
        counts[verdict.state] += 1
        stale_nodes += [{"nodeId": node_id, **item} for item in verdict.stale]
    status: dict[str, Any] = {
        **counts,
        "summary": f"{counts['current']}/{len(node_ids)}",  # kubectl -o wide: verified/total
        "staleNodes": stale_nodes[:MAX_STALE_NODES],
    }
    if last_run_time is not None:
        status["lastRunTime"] = format_rfc3339(last_run_time)
    return status


def verification_condition(
    base: ConditionUpdate,
    status: dict[str, Any],
    *,
    rotated: bool,
    settled_at: datetime | None,
    task_timeout: timedelta,
    now: datetime,
    total: int,
    require_proof: bool = False,
) -> ConditionUpdate:
    """NodesReady with verification enabled (see the module docstring)."""
    if status["stale"]:
        first = status["staleNodes"][0] if status["staleNodes"] else {}
        return ConditionUpdate(
            NODES_READY,
            False,
            NodesReason.NODES_STALE,
            f"{status['stale']}/{total} nodes hold an older version (or none) of a certificate"
            + (
                f"; e.g. node {first['nodeId']} has {first['certificate']} with thumbprint "
                f"{first['thumbprint'] or '(none)'}: its Key Vault extension cannot fetch the "
                "current version (see `batchcert status` for every stale node)"
                if first
                else ""
            ),
        )
    if base.reason not in (NodesReason.ROTATION_PROPAGATING, NodesReason.EXTENSION_SUCCEEDED):
        return base  # an extension failure, or nodes coming up: its own verdict stands
    all_proven = bool(total) and status["current"] == total
    if rotated and all_proven:
        return ConditionUpdate(
            NODES_READY,
            True,
            NodesReason.ROTATION_VERIFIED,
            f"{total}/{total} nodes proven to hold the current version of every certificate",
        )
    if base.reason == NodesReason.ROTATION_PROPAGATING or all_proven:
        return base
    pending = ConditionUpdate(
        NODES_READY,
        False,
        NodesReason.VERIFICATION_PENDING,
        f"{status['current']}/{total} nodes proven current; {status['unverified']} not verified "
        "yet (busy, new, or the verification task failed or timed out): retrying"
        + ("; requireProof holds NodesReady until every node is proven" if require_proof else ""),
    )
    if require_proof:
        return pending  # in progress, never Stalled, until every node is proven current
    if not rotated or settled_at is None:
        return base
    if now < settled_at + task_timeout:
        return pending  # at most the polling interval + taskTimeout after the rotation
    return ConditionUpdate(
        NODES_READY,
        True,
        NodesReason.ROTATION_UNVERIFIED,
        f"the extension reports every node healthy; {status['current']}/{total} proven current, "
        f"{status['unverified']} not proven yet (busy or new): proof completes as slots free",
    )


@dataclass(frozen=True)
class RecordedCertificate:
    """One spec certificate as the turn knows it: its current thumbprint, its last rotation."""

    name: str
    current_thumbprint: str  # upper-case hex
    rotated_at: datetime | None  # lastRotationTime (None: never rotated)


def restore_proofs(
    recorded: Any, node_ids: list[str], certificates: list[RecordedCertificate]
) -> tuple[dict[str, NodeProof], datetime | None]:
    """The proofs a ``status.nodes.verification`` written before a restart stands for, taken at
    its ``lastRunTime``, and that time (see the module docstring)."""
    last = parse_rfc3339(recorded.get("lastRunTime")) if isinstance(recorded, dict) else None
    if last is None:
        return {}, None
    stale_found = _recorded_stale(recorded, node_ids, certificates)
    counts = [recorded.get(k) for k in ("current", "stale", "unverified")]
    if (
        stale_found is None
        or counts != [len(node_ids) - len(stale_found), len(stale_found), 0]
        or any(c.rotated_at is not None and c.rotated_at > last for c in certificates)
    ):
        return {}, last
    proofs = {}
    for node_id in node_ids:
        seen = stale_found.get(node_id, {})
        found = tuple(
            ((seen[i],) if seen[i] else ()) if i in seen else (c.current_thumbprint,)
            for i, c in enumerate(certificates)
        )
        proofs[node_id] = NodeProof(node_id, last, found)
    return proofs, last


def _recorded_stale(
    recorded: dict[str, Any], node_ids: list[str], certificates: list[RecordedCertificate]
) -> dict[str, dict[int, str]] | None:
    """node → certificate index → thumbprint found, from ``staleNodes``; None when an item
    names a node or certificate this turn does not know."""
    listed = recorded.get("staleNodes")
    if not isinstance(listed, list):
        return None
    index_of = {c.name: i for i, c in reversed(list(enumerate(certificates)))}
    found: dict[str, dict[int, str]] = {}
    for item in listed:
        if not isinstance(item, dict):
            return None
        node_id, index = item.get("nodeId"), index_of.get(str(item.get("certificate")))
        if node_id not in node_ids or index is None:
            return None
        found.setdefault(str(node_id), {})[index] = str(item.get("thumbprint") or "").upper()
    return found


@dataclass(frozen=True)
class RunPlan:
    """One turn's view of a verified pool's certificates and its verification settings."""

    settled_at: datetime | None  # when the last rotation's polling interval ended
    polling: timedelta
    interval: timedelta
    timeout: timedelta
    current: tuple[str, ...]  # per spec certificate: the current thumbprint (upper-case hex)


def build_run_plan(spec: BatchCertPoolSpec, cert_items: list[dict[str, Any]]) -> RunPlan:
    polling = timedelta(seconds=spec.key_vault_extension.polling_interval_seconds)
    rotations = [parse_rfc3339(i.get("lastRotationTime")) for i in cert_items]
    return RunPlan(
        settled_at=max((r + polling for r in rotations if r is not None), default=None),
        polling=polling,
        interval=timedelta(seconds=spec.verification.interval_seconds),
        timeout=timedelta(seconds=spec.verification.task_timeout_seconds),
        current=tuple(str(i.get("thumbprint") or "").upper() for i in cert_items),
    )


def due_nodes(
    proofs: dict[str, NodeProof],
    attempted: dict[str, datetime],
    plan: RunPlan,
    node_states: dict[str, str | None],
    now: datetime,
) -> list[str]:
    """Nodes a new run should prove: schedulable, not tried within ``min(polling, interval)``
    (unless a rotation settled since), and with no proof, a proof not current from before the
    last rotation settled, older than ``interval``, or not current and older than a polling
    interval."""
    settled_at = plan.settled_at
    due = []
    for node_id, state in node_states.items():
        if (state or "").lower() not in _SCHEDULABLE:
            continue
        tried = attempted.get(node_id)
        rotated_since = settled_at is not None and tried is not None and tried < settled_at <= now
        recently = tried is not None and now - tried < min(plan.polling, plan.interval)
        if recently and not rotated_since:
            continue  # tried recently (busy, failed, or proven): give it time
        if _is_due(proofs.get(node_id), plan, now):
            due.append(node_id)
    return due


def _is_due(proof: NodeProof | None, plan: RunPlan, now: datetime) -> bool:
    if proof is None:
        return True  # a new node (or never proven)
    if plan.settled_at is not None and proof.at < plan.settled_at <= now:
        # A rotation settled since its proof: look again unless the proof already shows every
        # current version (a run just before the window's end proved it; status keeps whole
        # seconds, so a restart must not read that run as older than the rotation).
        return not _is_current(proof, plan)
    if now - proof.at >= plan.interval:
        return True
    # Not current last time: look again once its extension has polled again.
    return now - proof.at >= plan.polling and not _is_current(proof, plan)


def _is_current(proof: NodeProof, plan: RunPlan) -> bool:
    """The proof shows every certificate's current thumbprint (unknown → not current)."""
    if proof.found is None or len(proof.found) != len(plan.current):
        return False
    return all(bool(t) and t in seen for t, seen in zip(plan.current, proof.found, strict=True))
