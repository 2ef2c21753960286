"""The shipped GitOps health definitions, as files (their verdicts: tests/consumers).

Covers: argocd-cm.yaml embeds deploy/gitops/argocd/health.lua verbatim under the key Argo CD looks
up; neither the Lua nor Flux's healthCheckExprs keep a list of reasons of their own (the only
reason either names is the pause, which Argo CD shows as Suspended): they read Stalled,
Reconciling and Ready, which the operator derives from the reason registry; the Lua calls no
function from a library Argo CD does not open.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from batchcert.reasons import REASONS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LUA = REPO / "deploy" / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = REPO / "deploy" / "gitops" / "argocd" / "argocd-cm.yaml"
FLUX = REPO / "deploy" / "gitops" / "flux" / "kustomizations.yaml"
KEY = "resource.customizations.health.batchcert.dev_BatchCertPool"


def _code(lua: str) -> str:
    return "\n".join(line.split("--")[0] for line in lua.splitlines())


def test_argocd_cm_embeds_this_lua() -> None:
    config = yaml.safe_load(ARGOCD_CM.read_text())
    assert config["metadata"]["name"] == "argocd-cm"
    assert config["data"][KEY] == LUA.read_text()


def _flux_expressions() -> str:
    docs = [d for d in yaml.safe_load_all(FLUX.read_text()) if d]
    exprs = [e for d in docs for e in d.get("spec", {}).get("healthCheckExprs", [])]
    assert len(exprs) == 1 and exprs[0]["kind"] == "BatchCertPool"
    return " ".join(exprs[0][k] for k in ("inProgress", "failed", "current"))


@pytest.mark.parametrize("source", ["lua", "flux"])
def test_no_reason_list_outside_the_registry(source: str) -> None:
    text = _code(LUA.read_text()) if source == "lua" else _flux_expressions()
    named = {r.name for r in REASONS if re.search(rf"\b{r.name}\b", text)}
    assert named <= {"ReconcilePaused", "Ready", "Reconciling"}, named


def test_lua_uses_only_what_argocd_opens() -> None:
    # Argo CD opens base, table, package and a reduced os: string.*, math.*, io.* are nil there
    assert not re.search(r"\b(string|math|io|utf8|debug|coroutine)\.", _code(LUA.read_text()))
    assert not re.search(r":(format|sub|find|match|gsub|lower|upper|len)\(", _code(LUA.read_text()))
