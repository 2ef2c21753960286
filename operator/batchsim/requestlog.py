"""The simulator's request log and the counters derived from it.

Role: every simulated service records each request it answers here, so tests can assert what
the operator did (and did not do) against "Azure": which operations, how often, with which
status, as which principal, and — crucially — whether it ever read secret content
(``secret_read=True``, set by the Key Vault data plane on every secret-value read).

Invariants:
* entries are append-only and numbered by a monotonically increasing ``seq``; ``clear`` drops
  entries but never reuses numbers, so a test can remember ``seq`` and ask "what came after".
* the log is bounded (oldest entries are dropped beyond ``max_entries``); counters are kept
  separately and are not affected by that bound, so long benchmarks still count correctly.
* bodies are stored as given (already parsed JSON or text), truncated when huge.
* each entry carries when its request arrived (``received``) and was answered (``time``), so a
  benchmark can tell the simulator's time from the client's;
* each entry carries the caller's ``User-Agent`` (set per request by the server's middleware in
  :data:`CALLER_USER_AGENT`, so no service has to pass it); counters are also kept per user
  agent, so a benchmark can split what several operator processes (shards) asked for.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from batchsim.clock import SimClock

_MAX_BODY_CHARS = 64_000

# The User-Agent of the request being answered: set by the server's middleware for the request's
# task, read by ``RequestLog.record`` (every service records inside that task).
CALLER_USER_AGENT: ContextVar[str | None] = ContextVar("CALLER_USER_AGENT", default=None)
# When the request being answered arrived (before any injected latency): set by the same
# middleware, so an entry says how long the simulator held the request (``received`` → ``time``).
REQUEST_RECEIVED: ContextVar[datetime | None] = ContextVar("REQUEST_RECEIVED", default=None)


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    time: str
    service: str  # "entra" | "arm" | "keyvault" | "batch" | "control"
    operation: str  # e.g. "Pools_Get", "GetCertificate", "ComputeNode_ListExtensions"
    method: str
    path: str
    query: dict[str, str]
    api_version: str | None
    status: int
    principal: str | None  # the caller's object id when authenticated
    body: Any = None
    secret_read: bool = False
    user_agent: str | None = None
    received: str = ""  # when the request arrived; ``time`` is when it was answered

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RequestFilter:
    """Criteria for ``RequestLog.query``; every given criterion must hold."""

    service: str | None = None
    operation: str | None = None
    method: str | None = None
    path_regex: str | None = None
    status: int | None = None
    principal: str | None = None
    secret_read: bool | None = None
    user_agent_regex: str | None = None
    since_seq: int | None = None  # strictly after this seq
    limit: int | None = None

    def matches(self, record: RequestRecord) -> bool:
        if self.service is not None and record.service != self.service:
            return False
        if self.operation is not None and record.operation != self.operation:
            return False
        if self.method is not None and record.method.upper() != self.method.upper():
            return False
        if self.path_regex is not None and not re.search(self.path_regex, record.path):
            return False
        if self.status is not None and record.status != self.status:
            return False
        if self.principal is not None and record.principal != self.principal:
            return False
        if self.secret_read is not None and record.secret_read != self.secret_read:
            return False
        if self.user_agent_regex is not None and not re.search(
            self.user_agent_regex, record.user_agent or ""
        ):
            return False
        return not (self.since_seq is not None and record.seq <= self.since_seq)


@dataclass
class RequestLog:
    """Thread-safe, bounded request log plus per (service, operation, status) counters."""

    clock: SimClock | None = None
    max_entries: int = 50_000
    _entries: deque[RequestRecord] = field(init=False)
    _counters: Counter[tuple[str, str, int]] = field(init=False, default_factory=Counter)
    _agent_counters: Counter[tuple[str, str, str, int]] = field(init=False, default_factory=Counter)
    _secret_reads: int = field(init=False, default=0)
    _seq: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.max_entries)

    def record(
        self,
        service: str,
        operation: str,
        method: str,
        path: str,
        query: dict[str, str] | Iterable[tuple[str, str]] | None,
        api_version: str | None,
        status: int,
        principal: str | None,
        body: Any = None,
        secret_read: bool = False,
        user_agent: str | None = None,
    ) -> RequestRecord:
        agent = user_agent if user_agent is not None else CALLER_USER_AGENT.get()
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", "replace")
        if isinstance(body, str) and len(body) > _MAX_BODY_CHARS:
            body = body[:_MAX_BODY_CHARS] + "...(truncated)"
        now = self.clock.now() if self.clock is not None else None
        received = REQUEST_RECEIVED.get()
        with self._lock:
            self._seq += 1
            record = RequestRecord(
                seq=self._seq,
                time=_iso(now) if now is not None else "",
                service=service,
                operation=operation,
                method=method.upper(),
                path=path,
                query=dict(query or {}),
                api_version=api_version,
                status=int(status),
                principal=principal,
                body=body,
                secret_read=secret_read,
                user_agent=agent,
                received=_iso(received) if received is not None else "",
            )
            self._entries.append(record)
            self._counters[(service, operation, int(status))] += 1
            self._agent_counters[(agent or "", service, operation, int(status))] += 1
            if secret_read:
                self._secret_reads += 1
        return record

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def query(self, flt: RequestFilter | None = None) -> list[RequestRecord]:
        flt = flt or RequestFilter()
        with self._lock:
            found = [r for r in self._entries if flt.matches(r)]
        if flt.limit is not None:
            found = found[-flt.limit :]
        return found

    def counters(self) -> list[dict[str, Any]]:
        """``[{"service", "operation", "status", "count"}]``, sorted for stable output."""
        with self._lock:
            items = sorted(self._counters.items())
        return [{"service": s, "operation": o, "status": st, "count": n} for (s, o, st), n in items]

    def counters_by_user_agent(self) -> list[dict[str, Any]]:
        """``[{"userAgent", "service", "operation", "status", "count"}]`` ("" when none was
        sent), sorted; like ``counters``, not affected by the log's bound."""
        with self._lock:
            items = sorted(self._agent_counters.items())
        return [
            {"userAgent": a, "service": s, "operation": o, "status": st, "count": n}
            for (a, s, o, st), n in items
        ]

    def count(
        self, service: str | None = None, operation: str | None = None, status: int | None = None
    ) -> int:
        with self._lock:
            return sum(
                n
                for (s, o, st), n in self._counters.items()
                if (service is None or s == service)
                and (operation is None or o == operation)
                and (status is None or st == status)
            )

    @property
    def secret_reads(self) -> int:
        """How many secret-content reads were ever recorded (survives the log bound)."""
        with self._lock:
            return self._secret_reads

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counters.clear()
            self._agent_counters.clear()
            self._secret_reads = 0


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
