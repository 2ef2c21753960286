"""JSON merge patch (RFC 7386): the minimal one from one status to another, and its application.

Status is written only when it changed, and then only what changed: objects are patched key by
key (a removed key becomes ``null``), lists and scalars are replaced whole. Applying a patch says
what the API server will hold after our write (metrics, and a turn taken before the watch has
delivered the write); ``apply_merge_patch(old, build_merge_patch(old, new)) == new``.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: ``target`` after ``patch`` (``null`` removes; an object patches an object, or
    an empty one where the target held something else)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            before = result.get(key)
            result[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            result[key] = value
    return result
