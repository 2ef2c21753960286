"""The ``batchcert`` command line: what runs in production, ``run`` and ``status``.

Each subcommand comes from an ``add_parser(subparsers)`` function in a light module that imports
nothing heavy at import time, so ``batchcert --help`` stays fast. Developer tooling (simulator,
dev cluster, demo) is another distribution with its own command, ``batchcert-dev``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that each expose ``add_parser(subparsers)``.
SUBCOMMAND_MODULES = ("batchcert.runner", "batchcert.statuscmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchcert",
        description="Azure Batch pools with Key Vault certificates kept rotated, from Kubernetes.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
