"""The operator's own log: one line per decision an on-call engineer needs, nothing in steady state.

What is logged (logger ``batchcert.decisions``):
* each condition whose status or reason changed in a turn, once: object, type, old → new status,
  reason, message (WARNING when a person must act, else INFO). ``Reconciling`` and ``Stalled``
  only restate the components, so they are not repeated;
* each Event the turn posts that is not already such a line (``CertificateRotated``, say);
* the process's start: version, namespaces watched, shard, peering, ports (``log_start``).
Azure call failures are logged where they are translated (``adapters/errors.py``).

Every line carries structured fields (``extra``): ``object``, ``condition``, ``status``,
``reason``; kopf's JSON formatter (``--log-format json``) writes them as JSON keys, the text
format shows them in the message.

Invariants: no token, credential or secret value is ever passed here (callers give conditions,
Events and settings only, and ``redact`` removes anything token-shaped from Azure's messages);
nothing is logged for a turn that changed nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from batchcert.reasons import RECONCILING, STALLED, is_user_action

log = logging.getLogger("batchcert.decisions")

# A JWT (an access token or a federated assertion) or a bearer header's value.
_TOKEN_SHAPED = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|(?i:bearer\s+)[A-Za-z0-9._~+/=-]{16,}"
)


class EventLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


def redact(text: str) -> str:
    """``text`` with anything token-shaped replaced: Azure's messages are echoed into the log."""
    return _TOKEN_SHAPED.sub("<redacted>", text)


def _by_type(conditions: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in conditions}


def log_turn(
    key: str,
    before: Sequence[dict[str, Any]],
    after: Sequence[dict[str, Any]],
    events: Iterable[EventLike] = (),
) -> None:
    """One line per changed condition, then one per Event not already told by such a line."""
    old = _by_type(before)
    told: set[str] = set()
    for condition in after:
        type_ = condition.get("type", "")
        if type_ in (RECONCILING, STALLED):
            continue
        previous = old.get(type_)
        status, reason = condition.get("status"), condition.get("reason", "")
        if previous is not None and (previous.get("status"), previous.get("reason")) == (
            status,
            reason,
        ):
            continue
        was = previous.get("status") if previous is not None else "-"
        level = logging.WARNING if status != "True" and is_user_action(reason) else logging.INFO
        log.log(
            level,
            "%s: %s %s -> %s (%s): %s",
            key,
            type_,
            was,
            status,
            reason,
            condition.get("message", ""),
            extra={"object": key, "condition": type_, "status": status, "reason": reason},
        )
        told.add(reason)
    for event in events:
        if event.reason in told:
            continue
        log.log(
            logging.WARNING if event.type == "Warning" else logging.INFO,
            "%s: event %s: %s",
            key,
            event.reason,
            event.message,
            extra={"object": key, "event": event.reason, "reason": event.reason},
        )


def log_start(**settings: Any) -> None:
    """The start-up line: what this process is and what it watches."""
    text = " ".join(f"{k}={v}" for k, v in settings.items())
    log.info("batchcert-operator starting: %s", text, extra=dict(settings))
