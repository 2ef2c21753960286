"""HTTP plumbing shared by the control API's handler groups (``control*.py``).

Invariants: handlers raise ``ControlError`` (status + message) for bad input or unknown things;
``control._errors`` turns it into ``{"error": "..."}``; bodies are JSON objects or empty.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.Response]]
Route = tuple[str, str, Handler]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def ok(body: Any = None, status: int = 200) -> web.Response:
    return web.json_response(body if body is not None else {"ok": True}, status=status)


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def need(data: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    value = data.get(key)
    if (
        value is None
        or not isinstance(value, kind)
        or (isinstance(value, bool) and kind is not bool)
    ):
        raise ControlError(400, f"'{key}' is required ({getattr(kind, '__name__', kind)})")
    return value


_MISSING = object()


def optional(
    data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    """``data[key]`` if present and of ``kind`` (``default`` when absent or null), else a 400."""
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlError(400, f"'{key}' must be {getattr(kind, '__name__', kind)}")
    return value
