"""kopf's private API (batchcert.kopfprivate): one importer, a pinned minor, hooks that still work.

Covers: no operator module but ``batchcert.kopfprivate`` imports ``kopf._cogs`` (import-linter
cannot name a subpackage of an external package, so the syntax tree is read here); kopf is
pinned to the tested minor in pyproject.toml and constraints.txt; the watch-stream wrap takes
effect inside kopf: kopf's own ``infinite_watch`` (what its reactor runs) yields lean bodies.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching

from batchcert import kopfprivate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "batchcert"


def _imports_private_kopf(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kopf._"):
            return True
        if isinstance(node, ast.Import) and any(a.name.startswith("kopf._") for a in node.names):
            return True
    return False


def test_only_kopfprivate_imports_kopfs_private_modules() -> None:
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _imports_private_kopf(path)
    }
    assert importers == {"kopfprivate.py"}


def test_kopf_is_pinned_to_the_tested_minor() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "kopf~=1.45.2" in project["dependencies"]
    assert "kopf==1.45.2" in (REPO / "constraints.txt").read_text().splitlines()


async def test_the_stream_wrap_takes_effect_inside_kopf(monkeypatch: Any) -> None:
    async def fetch_objs(**_: Any) -> AsyncIterator[Any]:
        body = {
            "metadata": {
                "name": "p",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            }
        }
        yield [body], "7"

    monkeypatch.setattr(watching, "continuous_watch", watching.continuous_watch)  # restored after
    monkeypatch.setattr(watching.fetching, "fetch_objs", fetch_objs)
    kopfprivate.keep_watched_bodies_lean()
    settings = kopf.OperatorSettings()
    settings.watching.initial_streaming = False
    stream = watching.infinite_watch(
        settings=settings,
        resource=kopf.Resource("batchcert.dev", "v1", "batchcertpools"),
        namespace=None,
        _iterations=1,
    )
    first = await stream.__anext__()
    await stream.aclose()
    assert first["object"]["metadata"] == {"name": "p", "annotations": {}}
