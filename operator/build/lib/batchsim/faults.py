"""Fault injection: make chosen requests slow, fail, vanish, or fail their long-running operation.

Role: the control API registers ``FaultRule``s; the host router asks ``FaultInjector.match``
for every request (after deciding which service it is for) and applies the first matching rule.

A rule matches on service (``arm`` | ``batch`` | ``keyvault`` | ``entra``), HTTP method and a
path regex (searched in the path, query excluded), and applies for ``count`` requests and/or
until ``duration_s`` of real time has passed, whichever ends first. Its effect:

* ``latency_s``: wait before answering (combinable with any other effect);
* ``status``: answer with that status and a body in the service's own error shape (or the
  rule's ``body``), plus the rule's headers (e.g. ``Retry-After``);
* ``drop``: close the connection without an HTTP response;
* ``lro_failure``: let the request start its long-running operation, then make the operation
  end ``Failed`` with the given error (ARM pool DELETE is the one LRO the simulator has).

Invariants: rules are tried in insertion order; a rule whose count is used up or whose window
has passed is discarded; matching is thread-safe.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("arm", "batch", "keyvault", "entra")


@dataclass
class FaultRule:
    rule_id: str
    service: str | None = None
    method: str | None = None
    path_regex: str | None = None
    latency_s: float = 0.0
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    lro_failure: dict[str, str] | None = None  # {"code", "message"}
    count: int | None = None  # remaining applications (None: unlimited)
    expires_at: float | None = None  # real monotonic deadline
    hits: int = 0

    def matches(self, service: str, method: str, path: str) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "service": self.service,
            "method": self.method,
            "pathRegex": self.path_regex,
            "latencySeconds": self.latency_s,
            "status": self.status,
            "body": self.body,
            "headers": self.headers,
            "drop": self.drop,
            "lroFailure": self.lro_failure,
            "remaining": self.count,
            "hits": self.hits,
        }


class FaultSpecError(ValueError):
    """A fault definition sent to the control API is not valid."""


class FaultInjector:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._monotonic = monotonic

    def add_from_json(self, spec: dict[str, Any]) -> FaultRule:
        """Build a rule from the control API's JSON shape (see sim/README.md)."""
        if not isinstance(spec, dict):
            raise FaultSpecError("a fault is a JSON object")
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise FaultSpecError("'match' must be an object")
        service = match.get("service")
        if service is not None and service not in SERVICES:
            raise FaultSpecError(f"'match.service' must be one of {', '.join(SERVICES)}")
        path_regex = match.get("pathRegex")
        if path_regex is not None:
            try:
                re.compile(path_regex)
            except re.error as exc:
                raise FaultSpecError(f"'match.pathRegex' is not a valid regex: {exc}") from exc
        status = spec.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise FaultSpecError("'status' must be an HTTP status code")
        lro = spec.get("lroFailure")
        if lro is not None and not isinstance(lro, dict):
            raise FaultSpecError("'lroFailure' must be an object {code, message}")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise FaultSpecError("'count' must be a positive integer")
        duration = spec.get("durationSeconds")
        if duration is not None and (not isinstance(duration, (int, float)) or duration <= 0):
            raise FaultSpecError("'durationSeconds' must be a positive number")
        latency = spec.get("latencySeconds", 0.0)
        if not isinstance(latency, (int, float)) or latency < 0:
            raise FaultSpecError("'latencySeconds' must be a non-negative number")
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict):
            raise FaultSpecError("'headers' must be an object")
        drop = bool(spec.get("drop", False))
        if status is None and not drop and lro is None and not latency:
            raise FaultSpecError("a fault needs one of status, drop, lroFailure, latencySeconds")
        rule = FaultRule(
            rule_id=f"fault-{next(self._ids)}",
            service=service,
            method=match.get("method"),
            path_regex=path_regex,
            latency_s=float(latency),
            status=status,
            body=spec.get("body"),
            headers={str(k): str(v) for k, v in headers.items()},
            drop=drop,
            lro_failure=(
                {
                    "code": str(lro.get("code", "InternalServerError")),
                    "message": str(lro.get("message", "The operation failed (injected fault).")),
                }
                if lro is not None
                else None
            ),
            count=count,
            expires_at=self._monotonic() + float(duration) if duration is not None else None,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def match(self, service: str, method: str, path: str) -> FaultRule | None:
        now = self._monotonic()
        with self._lock:
            self._rules = [r for r in self._rules if r.expires_at is None or r.expires_at > now]
            for rule in self._rules:
                if not rule.matches(service, method, path):
                    continue
                rule.hits += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                return rule
        return None

    def list(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.rule_id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
