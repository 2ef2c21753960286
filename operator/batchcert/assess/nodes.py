"""Assess every node's Key Vault extension: ``status.nodes`` and the ``NodesReady`` condition.

A node is *ready* when it is usable and our extension's provisioning state is Succeeded with no
Error-level status and no failed component, whatever its message says (healthy text varies:
"Plugin enabled" in a recorded KeyVaultForLinux answer, "Successfully started Key Vault extension
service" in the Batch docs); *transitioning* while the node or the extension is still coming up;
*failed* otherwise.

The real extension does not say why it fails: while it retries it reports only a generic
"Failed to download one or more certificates, retrying..." while Transitioning, and the cause is
written to the VM's local log (``../shared/docs/azure-behaviour.md``). Such a node is *failed*
with cause ``CertificateFetchFailing``; the reconcile then diagnoses the cause from the control
plane (``assess.diagnosis``). Per-cause text, where some answer carries it (the simulator's
talkative mode, older extension versions), still names the cause directly.

Invariants: ``failures`` is bounded; after a rotation, NodesReady stays ``RotationPropagating``
until the nodes have had one polling interval to fetch the new version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchcert.conditions import NODES_READY, ConditionUpdate
from batchcert.models.azure import ExtensionStatus, NodeExtensionReport, NodesReading
from batchcert.models.timestamps import format_rfc3339
from batchcert.reasons import NodesReason

MAX_FAILURES = 10

_TRANSITIONAL_NODE_STATES = frozenset(
    {
        "creating",
        "starting",
        "waitingforstarttask",
        "rebooting",
        "reimaging",
        "deallocating",
        "deallocated",
        "preempted",
        "leavingpool",
        "upgradingos",
    }
)
_FAILED_NODE_STATES = frozenset({"unusable", "starttaskfailed", "unknown"})

# (substring of the extension message, lower case) → cause, most specific first.
_CAUSES: tuple[tuple[str, NodesReason], ...] = (
    ("identity not found", NodesReason.IDENTITY_NOT_FOUND),
    ("msiclientid", NodesReason.IDENTITY_NOT_FOUND),
    ("does not have secrets get permission", NodesReason.VAULT_ACCESS_DENIED),
    ("forbidden", NodesReason.VAULT_ACCESS_DENIED),
    ("accessdenied", NodesReason.VAULT_ACCESS_DENIED),
    ("secretnotfound", NodesReason.CERTIFICATE_NOT_FOUND),
    ("certificatenotfound", NodesReason.CERTIFICATE_NOT_FOUND),
    ("not found", NodesReason.CERTIFICATE_NOT_FOUND),
    ("disabled", NodesReason.CERTIFICATE_DISABLED),
)

# The generic text the real extension shows while it cannot fetch (the cause is not in it).
_GENERIC_FETCH_FAILURE = ("failed to download", "retrying", "failed to fetch")

_CAUSE_ADVICE = {
    NodesReason.IDENTITY_NOT_FOUND: "the extension's msiClientId does not match an identity on the pool: "
    "check spec.identity.clientId",
    NodesReason.VAULT_ACCESS_DENIED: "the pool's identity cannot read the vault's secrets: grant it secrets "
    "get/list (access policy) or the Key Vault Secrets User role",
    NodesReason.CERTIFICATE_NOT_FOUND: "an observed certificate's secret does not exist in the vault",
    NodesReason.CERTIFICATE_DISABLED: "an observed certificate is disabled in the vault",
    NodesReason.EXTENSION_MISSING: "the Key Vault extension is not on the node",
    NodesReason.NODE_UNUSABLE: "the node is unusable",
    NodesReason.EXTENSION_FAILED: "the Key Vault extension failed",
    NodesReason.CERTIFICATE_FETCH_FAILING: "the Key Vault extension cannot download the certificates and the "
    "nodes do not say why",
}


@dataclass(frozen=True)
class NodeVerdict:
    state: str  # ready | transitioning | failed
    cause: NodesReason | None = None  # registered reasons only (mypy checks)
    message: str = ""


def _cause_of(text: str) -> NodesReason:
    lowered = text.lower()
    for needle, cause in _CAUSES:
        if needle in lowered:
            return cause
    return NodesReason.EXTENSION_FAILED


def _level(status: ExtensionStatus) -> str:
    return str(status.level if status.level is not None else "").lower()


def _is_generic_fetch_failure(text: str) -> bool:
    lowered = text.lower()
    return any(needle in lowered for needle in _GENERIC_FETCH_FAILURE)


def _messages(report: NodeExtensionReport) -> str:
    parts = [s.message or s.display_status or s.code or "" for s in report.statuses]
    parts += [s.message or "" for s in report.sub_statuses]
    return " ".join(p for p in parts if p).strip()


def _is_failed_fetch(status: ExtensionStatus) -> bool:
    """A component that says it failed, at any level.

    After a first success the extension keeps serving the versions it already has and reports a
    failed fetch (access revoked, certificate disabled or deleted) only as a *Warning* subStatus
    whose code ends in ``/failed``; such a node misses every rotation from then on, so it is a
    failed node, not a healthy one.
    """
    return (status.code or "").lower().endswith("/failed")


def assess_node(report: NodeExtensionReport) -> NodeVerdict:
    node_state = (report.node_state or "").lower()
    if report.error:
        return NodeVerdict("transitioning", None, report.error)
    provisioning = (report.provisioning_state or "").lower()
    text = _messages(report)
    failing = [
        s
        for s in report.statuses + report.sub_statuses
        if _level(s) in ("error", "2") or _is_failed_fetch(s)
    ]
    # A failing extension with requireInitialSync can make the node unusable: name the root
    # cause from the extension when it says one, the node state only when it does not.
    if report.extension_found and (provisioning == "failed" or failing):
        # The cause comes from the failing statuses when there are any (the healthy ones around
        # them, e.g. the list of downloaded certificates, say nothing about what broke).
        cause_text = " ".join(s.message or s.display_status or s.code or "" for s in failing)
        text = cause_text.strip() or text
        cause = _cause_of(text)
        if cause == NodesReason.EXTENSION_FAILED and _is_generic_fetch_failure(text):
            cause = NodesReason.CERTIFICATE_FETCH_FAILING
        return NodeVerdict("failed", cause, text or "extension provisioning failed")
    if report.extension_found and _is_generic_fetch_failure(text):
        # Saying it cannot download, under any provisioning state: Transitioning (not "coming
        # up") or Succeeded (installed earlier, failing now; no evidence rules that shape out).
        cause = _cause_of(text)
        return NodeVerdict(
            "failed",
            NodesReason.CERTIFICATE_FETCH_FAILING
            if cause == NodesReason.EXTENSION_FAILED
            else cause,
            text,
        )
    if node_state in _FAILED_NODE_STATES:
        return NodeVerdict(
            "failed", NodesReason.NODE_UNUSABLE, f"node state is {report.node_state}"
        )
    if node_state in _TRANSITIONAL_NODE_STATES:
        return NodeVerdict("transitioning", None, f"node state is {report.node_state}")
    if not report.extension_found:
        return NodeVerdict(
            "failed", NodesReason.EXTENSION_MISSING, "the Key Vault extension is not installed"
        )
    if provisioning == "succeeded":
        return NodeVerdict("ready", None, text)
    return NodeVerdict("transitioning", None, text or f"extension is {report.provisioning_state}")


def build_nodes_status(
    reading: NodesReading, previous_failures: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], list[NodeVerdict]]:
    verdicts = [assess_node(r) for r in reading.nodes]
    counts = Counter(v.state for v in verdicts)
    failures = [
        {
            "nodeId": report.node_id,
            "code": verdict.cause or NodesReason.EXTENSION_FAILED,
            "message": verdict.message[:512],
            "time": format_rfc3339(reading.read_at),
        }
        for report, verdict in zip(reading.nodes, verdicts, strict=True)
        if verdict.state == "failed"
    ]
    # Keep the first-seen time of a failure that persists, so "since when" stays meaningful.
    first_seen = {(f["nodeId"], f["code"]): f["time"] for f in previous_failures or []}
    for failure in failures:
        failure["time"] = first_seen.get((failure["nodeId"], failure["code"]), failure["time"])
    status = {
        "total": len(reading.nodes),
        "ready": counts["ready"],
        "transitioning": counts["transitioning"],
        "failed": counts["failed"],
        "summary": f"{counts['ready']}/{len(reading.nodes)}",  # for kubectl's printer column
        "lastCheckTime": format_rfc3339(reading.read_at),
        "failures": failures[:MAX_FAILURES],
    }
    return status, verdicts


def summarize_nodes(
    verdicts: list[NodeVerdict],
    *,
    target_nodes: int | None,
    rotation_pending_until: datetime | None,
) -> ConditionUpdate:
    """``rotation_pending_until`` is set while no node reading taken after the last rotation's
    polling interval has yet shown every node healthy."""
    total = len(verdicts)
    failed = [v for v in verdicts if v.state == "failed"]
    if failed:
        cause, count = Counter(v.cause or NodesReason.EXTENSION_FAILED for v in failed).most_common(
            1
        )[0]
        example = next(v for v in failed if (v.cause or NodesReason.EXTENSION_FAILED) == cause)
        return ConditionUpdate(
            NODES_READY,
            False,
            cause,
            f"{len(failed)}/{total} nodes failed; {count} with {cause}: {_CAUSE_ADVICE[cause]}"
            + (f" ({example.message[:200]})" if example.message else ""),
        )
    transitioning = sum(1 for v in verdicts if v.state == "transitioning")
    if transitioning:
        return ConditionUpdate(
            NODES_READY,
            False,
            NodesReason.EXTENSION_TRANSITIONING,
            f"{transitioning}/{total} nodes are still installing the Key Vault extension or "
            "fetching certificates",
        )
    if target_nodes is not None and total < target_nodes:
        return ConditionUpdate(
            NODES_READY,
            False,
            NodesReason.NODES_ALLOCATING,
            f"{total}/{target_nodes} nodes allocated",
        )
    if rotation_pending_until is not None:
        return ConditionUpdate(
            NODES_READY,
            False,
            NodesReason.ROTATION_PROPAGATING,
            f"a new certificate version is propagating; nodes poll Key Vault and should all have "
            f"it by {format_rfc3339(rotation_pending_until)}",
        )
    if total == 0:
        return ConditionUpdate(
            NODES_READY, True, NodesReason.NO_NODES, "the pool has no nodes to check"
        )
    return ConditionUpdate(
        NODES_READY,
        True,
        NodesReason.EXTENSION_SUCCEEDED,
        f"{total}/{total} nodes report the extension healthy",
    )
