"""RFC 3339 timestamps, the one parse/format pair (status fields, Azure answers, metrics).

Invariants: formatting is UTC to whole seconds with a ``Z`` (what Kubernetes writes);
parsing accepts ``Z`` or an offset, treats a naive time as UTC, and answers None, never raises,
for anything that is not a timestamp (status is read from users' clusters and Azure's answers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_rfc3339(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if not raw or not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
