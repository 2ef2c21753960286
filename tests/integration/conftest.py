"""The operator stack for integration tests: one simulator (demo world, fast node behaviour)
and one real operator process per test module, on the session's real control plane."""

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
    from batchcert.sim.server import simulator
    from support.operator import running_operator
    from support.stack import OperatorStack

    workdir = tmp_path_factory.mktemp("stack")
    with simulator(state_dir=workdir / "sim", seed="demo", clock_scale=1.0) as sim:
        # Real-time clock, but nodes that arrive and boot in seconds rather than minutes.
        sim.control.set_node_behaviour(
            arrivalDelaySeconds=2,
            bootSeconds=1,
            removalDelaySeconds=2,
            deleteDurationSeconds=2,
            lroRetryAfterSeconds=1,
            extensionRetryIntervalSeconds=1,
            extensionMaxAttempts=3,
        )
        with running_operator(
            kube_cluster.kubeconfig, Path(sim.sim_json), workdir / "operator.log"
        ) as op:
            yield OperatorStack(kube_cluster, sim, op)
            assert op.is_running(), "the operator process died:\n" + op.log()[-4000:]
