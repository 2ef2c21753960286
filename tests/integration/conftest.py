"""The operator stack for integration tests: one simulator (demo world, fast node behaviour)
and one real operator process per test module, on the session's real control plane. The
module's objects are dropped when it ends, so the next module's operator sees only its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support.cluster import KubeCluster
    from support.stack import OperatorStack


@pytest.fixture(scope="module")
def stack(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorStack]:
    from support.operator import running_operator
    from support.stack import OperatorStack, fast_simulator, forget_objects

    workdir = tmp_path_factory.mktemp("stack")
    try:
        with (
            fast_simulator(workdir / "sim") as sim,
            running_operator(
                kube_cluster.kubeconfig, Path(sim.sim_json), workdir / "operator.log"
            ) as op,
        ):
            yield OperatorStack(kube_cluster, sim, op)
            assert op.is_running(), "the operator process died:\n" + op.log()[-4000:]
    finally:
        forget_objects(kube_cluster)  # the next module's operator starts on a clean cluster
