"""ISO-8601 durations as Azure Batch uses them (``PT15M``, ``P1DT2H``): parse to seconds.

Azure may echo a duration in another spelling than we sent (``PT900S`` for ``PT15M``), so
comparisons go through seconds. Years and months are refused: Batch never uses them.
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration_seconds(text: str) -> float:
    match = _DURATION.match(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT15M")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("weeks", 0) * 604800
        + parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )


def same_duration(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return parse_duration_seconds(a) == parse_duration_seconds(b)
    except ValueError:
        return a == b
