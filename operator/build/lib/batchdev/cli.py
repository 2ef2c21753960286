"""The ``batchcert-dev`` command line: ``cluster``, ``sim`` and ``demo``.

Each subcommand's module imports nothing heavy at import time, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMAND_MODULES = ("batchdev.devcluster.cli", "batchsim.cli", "batchdev.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchcert-dev",
        description="Developer tooling for batchcert-operator: a local control plane, the Azure "
        "simulator and the demo.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
