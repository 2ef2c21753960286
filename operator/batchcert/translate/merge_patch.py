"""The minimal JSON merge patch (RFC 7386) from one status to another.

Status is written only when it changed, and then only what changed: objects are patched key by
key (a removed key becomes ``null``), lists and scalars are replaced whole.
"""

from __future__ import annotations

from typing import Any


def build_merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = build_merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before or key not in old:
            patch[key] = value
    return patch
