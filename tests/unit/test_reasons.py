"""The reason registry (batchcert.reasons) and everything that must agree with it.

Covers: a reason name means one thing whatever condition carries it; every CamelCase reason the
operator's code can write (found by reading every module's syntax tree, not by a list kept here) is
in the registry for the condition that carries it; every reason constant (one StrEnum per
condition) is registered, and every registered reason has its constant; the reconcile's transition Events follow the
registry's Event types; an unknown reason counts as needing a person; the reason table in
docs/usage.md is the one rendered from the registry.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchcert import reasons as reasons_module
from batchcert.conditions import ConditionUpdate, apply_conditions
from batchcert.reasons import (
    CERTIFICATE_READY,
    COMPONENT_TYPES,
    NODES_READY,
    POOL_READY,
    READY,
    REASON_CONSTANTS,
    REASONS,
    Action,
    EventType,
    action_of,
    find_reason,
)
from batchcert.reconcile.transitions import transition_events
from support.reason_table import render_reason_table

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "batchcert"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

# The condition type a module's reasons are written for, where the module serves one condition
# (any other module: whichever type the call names, or every component when it names none).
# Every module of the operator is read (but the registry itself).
MODULE_TYPES = {
    "assess/certificates.py": CERTIFICATE_READY,
    "assess/nodes.py": NODES_READY,
    "assess/diagnosis.py": NODES_READY,
    "assess/verification.py": NODES_READY,
    "reconcile/diagnose.py": NODES_READY,
    "reconcile/pool.py": POOL_READY,
    "reconcile/steps/nodes.py": NODES_READY,
    "reconcile/steps/certificates.py": CERTIFICATE_READY,
}
SOURCES = {
    str(path.relative_to(PACKAGE)): MODULE_TYPES.get(str(path.relative_to(PACKAGE)))
    for path in sorted(PACKAGE.rglob("*.py"))
    if path.name != "reasons.py"
}
REASON_CALLS = {
    "ConditionUpdate",
    "Diagnosis",
    "_proven",
    "CertificateVerdict",
    "NodeVerdict",
    "Classification",
    "_ready",
    "_not_ready",
    "refuse",
}
SUMMARY_NAMES = {"RECONCILING", "STALLED"}
TYPE_NAMES = {
    "POOL_READY": POOL_READY,
    "CERTIFICATE_READY": CERTIFICATE_READY,
    "NODES_READY": NODES_READY,
    "READY": READY,
}


def _types_of(node: ast.AST, types: list[str]) -> list[str]:
    """A constant of one condition's enum (``CertificateReason.X``) is written for that condition
    alone, wherever the module writing it serves several."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        enum = getattr(reasons_module, node.value.id, None)
        owners = [t for t, namespaces in REASON_CONSTANTS.items() if enum in namespaces]
        if enum is not None and owners:
            return [t for t in types if t in owners] or owners
    return types


def _camel(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id.endswith("Reason")
        and hasattr(reasons_module, node.value.id)
    ):
        return str(getattr(getattr(reasons_module, node.value.id), node.attr).value)  # a constant
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        if text[:1].isupper() and text.isalnum() and not text.isupper() and " " not in text:
            return text
    return None


def written_reasons() -> set[tuple[str, str, str]]:
    """(file, condition type, reason) for every reason literal the code can write."""
    found: set[tuple[str, str, str]] = set()
    for relative, module_type in SOURCES.items():
        tree = ast.parse((PACKAGE / relative).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name not in REASON_CALLS:
                    continue
                args = list(node.args)
                if (
                    name == "CertificateVerdict"
                    and args
                    and getattr(args[0], "value", None) is True
                ):
                    continue  # a per-certificate "fine", never a condition's reason
                types = [module_type] if module_type else list(COMPONENT_TYPES)
                if name == "refuse":
                    types = [READY]
                if name == "CertificateVerdict":
                    types = [CERTIFICATE_READY]
                if name == "ConditionUpdate" and args and isinstance(args[0], ast.Name):
                    if args[0].id in SUMMARY_NAMES:
                        continue  # Reconciling and Stalled restate the components' reasons
                    named = TYPE_NAMES.get(args[0].id)
                    types = [named] if named else list(COMPONENT_TYPES)
                for arg in args:
                    reason = _camel(arg)
                    if reason and reason not in ("Retry", "Throttled", "UserAction"):
                        found.update((relative, t, reason) for t in _types_of(arg, types))
            elif isinstance(node, ast.Tuple) and relative == "assess/nodes.py":
                # the extension-message → cause table
                for element in node.elts:
                    reason = _camel(element)
                    if reason:
                        found.add((relative, NODES_READY, reason))
    return found


def test_the_code_writes_only_registered_reasons() -> None:
    written = written_reasons()
    # Reasons are written through the constants (reasons.REASON_CONSTANTS: mypy refuses any other
    # value where a verdict's type names them) or, for Ready's own in the summaries, as literals:
    # the scan reads both, and holds each registered for the condition its module writes.
    assert (READY, "Ready") in {(t, r) for _, t, r in written}, "the scan finds what is written"
    assert len(written) >= 5, "the scan finds what the code writes"
    missing = sorted((f, t, r) for f, t, r in written if find_reason(t, r) is None)
    assert not missing, f"add these to batchcert/reasons.py: {missing}"


def test_a_reason_means_one_thing_on_every_condition() -> None:
    actions: dict[str, set[Action]] = {}
    for reason in REASONS:
        actions.setdefault(reason.name, set()).add(reason.action)
    assert {n: a for n, a in actions.items() if len(a) > 1} == {}
    assert len({(r.type, r.name) for r in REASONS}) == len(REASONS)


def test_unknown_reasons_need_a_person() -> None:
    assert action_of("SomethingNew") is Action.USER


def test_successes_and_nothing_else_are_true() -> None:
    assert {r.name for r in REASONS if r.action is Action.NONE} == {
        "Ready",
        "PoolReady",
        "CertificatesReady",
        "ExtensionSucceeded",
        "NoNodes",
        "RotationVerified",
        "RotationUnverified",  # True: the extension's verdict, proof still completing
    }


@pytest.mark.parametrize(
    "reason", [r for r in REASONS if r.type in COMPONENT_TYPES], ids=lambda r: f"{r.type}-{r.name}"
)
def test_transition_events_follow_the_registry(reason: object) -> None:
    from batchcert.reasons import Reason

    assert isinstance(reason, Reason)
    healthy = {
        POOL_READY: ConditionUpdate(POOL_READY, True, "PoolReady", "ok"),
        CERTIFICATE_READY: ConditionUpdate(CERTIFICATE_READY, True, "CertificatesReady", "ok"),
        NODES_READY: ConditionUpdate(NODES_READY, True, "ExtensionSucceeded", "ok"),
    }
    before = apply_conditions([], healthy.values(), generation=1, now=T0)
    status = (
        True if reason.action is Action.NONE else (None if reason.name == "Reconciling" else False)
    )
    healthy[reason.type] = ConditionUpdate(reason.type, status, reason.name, "why")
    after = apply_conditions(before, healthy.values(), generation=1, now=T0)
    events = transition_events(before, after)
    if reason.action is Action.NONE:
        assert events == []
        return
    expected = [] if reason.event is None else [(reason.event.value, reason.name)]
    assert [(e.type, e.reason) for e in events] == expected


def test_ready_posts_normal_when_it_turns_true() -> None:
    failing = apply_conditions(
        [],
        [ConditionUpdate(t, None, "Reconciling", "first") for t in COMPONENT_TYPES],
        generation=1,
        now=T0,
    )
    ok = [
        ConditionUpdate(POOL_READY, True, "PoolReady", "ok"),
        ConditionUpdate(CERTIFICATE_READY, True, "CertificatesReady", "ok"),
        ConditionUpdate(NODES_READY, True, "NoNodes", "ok"),
    ]
    events = transition_events(failing, apply_conditions(failing, ok, generation=1, now=T0))
    assert [(e.type, e.reason) for e in events] == [(EventType.NORMAL.value, "Ready")]


def test_the_reason_table_in_the_docs_is_the_registry() -> None:
    table = render_reason_table()
    usage = (REPO / "docs" / "usage.md").read_text()
    assert table in usage, "docs/usage.md's reason table differs from the registry; want:\n" + table


def test_every_reason_constant_is_registered_for_its_condition() -> None:
    # Code that writes a reason through these constants cannot write an unregistered one.
    missing = [
        (type_, member.value)
        for type_, namespaces in REASON_CONSTANTS.items()
        for namespace in namespaces
        for member in namespace
        if find_reason(type_, member.value) is None
    ]
    assert missing == []
    # ... and every registered reason has its constant.
    constants = {
        (type_, member.value)
        for type_, namespaces in REASON_CONSTANTS.items()
        for namespace in namespaces
        for member in namespace
    }
    assert {(r.type, r.name) for r in REASONS} <= constants
