"""The ``batchcert`` command line.

Each subsystem contributes its own subcommand through an ``add_parser(subparsers)`` function in a
light module that imports nothing heavy at import time, so ``batchcert --help`` stays fast and the
production image (which lacks the simulator's extras) can still run ``batchcert run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that each expose ``add_parser(subparsers)``; a missing optional module is skipped so the
# CLI degrades gracefully while subsystems are being built.
SUBCOMMAND_MODULES = (
    "batchcert.runner",
    "batchcert.sim.cli",
    "batchcert.devcluster.cli",
    "batchcert.demo",
    "batchcert.statuscmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchcert",
        description="Azure Batch pools with Key Vault certificates kept rotated, from Kubernetes.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
