"""The operator's log: what an on-call engineer reads (``batchcert.oplog``, ``adapters.errors``).

Covers: a changed condition is one line (object, type, old -> new, reason, message), WARNING when
a person must act; Reconciling/Stalled are not repeated; an unchanged turn logs nothing; an
Event already told by its condition line is not repeated, others are logged; structured fields
reach kopf's JSON formatter; Azure failures are logged once with status and code, 404 at DEBUG,
and anything token-shaped in Azure's message is removed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from batchcert.adapters.errors import log_failure
from batchcert.errors import AzureCallError
from batchcert.oplog import log_start, log_turn, redact
from batchcert.reconcile.outcome import Event

KEY = "team-a/render-pool"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLWJ5dGVz"


def cond(type_: str, status: str, reason: str, message: str = "m") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("batchcert.")]


def test_each_changed_condition_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = [
        cond("Ready", "False", "Reconciling"),
        cond("Reconciling", "True", "Reconciling"),
        cond("PoolReady", "False", "Reconciling"),
        cond("NodesReady", "False", "NodesAllocating"),
    ]
    after = [
        cond("Ready", "False", "VaultAccessDenied", "grant the identity secrets get/list"),
        cond("Stalled", "True", "VaultAccessDenied"),
        cond("PoolReady", "True", "PoolReady"),
        cond("NodesReady", "False", "NodesAllocating"),
    ]
    log_turn(KEY, before, after)
    lines = [(r.levelno, r.getMessage()) for r in records(caplog)]
    assert lines == [
        (
            logging.WARNING,
            f"{KEY}: Ready False -> False (VaultAccessDenied): grant the identity secrets get/list",
        ),
        (logging.INFO, f"{KEY}: PoolReady False -> True (PoolReady): m"),
    ]
    first = records(caplog)[0]
    assert (first.object, first.condition, first.reason) == (KEY, "Ready", "VaultAccessDenied")  # type: ignore[attr-defined]


def test_nothing_changed_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    same = [cond("Ready", "True", "Ready"), cond("PoolReady", "True", "PoolReady")]
    log_turn(KEY, same, [dict(c, message="other words") for c in same], [])
    assert records(caplog) == []


def test_events_not_told_by_a_condition_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log_turn(
        KEY,
        [cond("CertificateReady", "True", "CertificateReady")],
        [cond("CertificateReady", "False", "CertificateNotFound")],
        [
            Event("Warning", "CertificateNotFound", "certificate x does not exist"),
            Event("Normal", "CertificateRotated", "certificate y rotated to version 2"),
        ],
    )
    messages = [r.getMessage() for r in records(caplog)]
    assert len(messages) == 2
    assert messages[1] == f"{KEY}: event CertificateRotated: certificate y rotated to version 2"


def test_structured_fields_in_kopf_json_mode(caplog: pytest.LogCaptureFixture) -> None:
    from kopf._core.actions.loggers import ObjectJsonFormatter

    caplog.set_level(logging.DEBUG)
    log_turn(KEY, [], [cond("NodesReady", "False", "NodesStale", "node n1 holds version 1")])
    log_start(version="1.2.3", namespaces="all", shard="0/1")
    formatter = ObjectJsonFormatter()
    turn, start = (json.loads(formatter.format(r)) for r in records(caplog))
    assert turn["object"] == KEY
    assert (turn["condition"], turn["status"], turn["reason"]) == (
        "NodesReady",
        "False",
        "NodesStale",
    )
    assert start["version"] == "1.2.3"
    assert start["shard"] == "0/1"


def test_azure_failures_are_logged_with_status_and_code_never_a_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    log_failure(
        AzureCallError(
            service="arm",
            operation="Pool_Get",
            status=403,
            code="AuthorizationFailed",
            message=f"client does not have authorization; assertion {JWT}; Bearer {JWT[:40]}",
        )
    )
    log_failure(
        AzureCallError(
            service="arm", operation="Pool_Get", status=404, code="NotFound", message="no pool"
        )
    )
    warning, not_found = records(caplog)
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert text.startswith("Azure arm Pool_Get failed: 403 AuthorizationFailed: client does not")
    assert "eyJ" not in text
    assert "<redacted>" in text
    assert not_found.levelno == logging.DEBUG


def test_redact_leaves_ordinary_text() -> None:
    text = "vault mykv.vault.azure.net: secret mycert version 8f5f3f491afd48cb99286ba2aacd39af"
    assert redact(text) == text
