"""Fixtures for the fault suite: one simulator and one killable operator per test module, and the
figures every scenario records for docs/reliability.md.

``fstack`` (module) is a ``FaultStack`` whose operator watches only its own namespace.
Scenarios marked ``faults_full`` are skipped unless the marker expression names them
(``tests/conftest.py``); ``-m "faults or faults_full"`` runs them all. ``scenario`` (function)
is the row a test fills in; it is marked passed only when the test passed, and the session
writes every row to ``$BATCHCERT_RELIABILITY_JSON`` (default: the pytest temp dir's
``reliability.json``, whose path is printed at the end of the run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cluster import KubeCluster
    from support.faults import FaultStack, Figures, Scenario

_FIGURES_PATH: list[Path] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_PASSED] = report.passed


_PASSED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Figures]:
    from support.faults import Figures

    collected = Figures()
    yield collected
    target = os.environ.get("BATCHCERT_RELIABILITY_JSON")
    path = Path(target) if target else tmp_path_factory.getbasetemp() / "reliability.json"
    collected.write(path)
    _FIGURES_PATH.append(path)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _FIGURES_PATH:
        terminalreporter.write_line(
            f"fault-suite figures: {path} (render: python benchmarks/reliability_table.py {path})"
        )


@pytest.fixture(scope="module")
def fstack(
    kube_cluster: KubeCluster,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[FaultStack]:
    from support.faults import fault_stack

    prefix = "f-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace(
        "_", "-"
    )
    with fault_stack(kube_cluster, tmp_path_factory.mktemp("faults"), prefix[:40]) as stack:
        yield stack


@pytest.fixture
def scenario_row(request: pytest.FixtureRequest, figures: Figures) -> Iterator[Scenario]:
    """A row of docs/reliability.md, marked passed only when the test passed."""
    from support.faults import Scenario

    row = Scenario(name=request.node.name, group=request.module.__name__.rsplit(".", 1)[-1])
    yield row
    row.passed = bool(request.node.stash.get(_PASSED, False))
    figures.scenarios.append(row)


@pytest.fixture
def scenario(scenario_row: Scenario, fstack: FaultStack) -> Iterator[Scenario]:
    """``scenario_row`` on the shared fault stack, which is left clean for the next scenario."""
    yield scenario_row
    # Leave nothing behind for the next scenario (its request counts must be its own), and a
    # running operator: a scenario that failed between its kill and its restart must not fail
    # every scenario after it.
    fstack.control.clear_faults()
    if not fstack.operator.is_running():
        fstack.start_operator()
    fstack.delete_all()
