"""``batchcert-dev sim``: run the Azure simulator in the foreground; with a verb
(``clock``, ``identity``, ``grant``, ``cert``, ``node``, ``pools``: ``batchsim.ctl``), shape the
world of one already running.

Kept free of heavy imports at module import time (the CLI imports every subcommand module to
build ``--help``): the simulator and its extras load only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the local Azure simulator (Entra ID, ARM, Key Vault, Batch) over HTTPS",
        description="Serve simulated Azure endpoints on 127.0.0.1 over HTTPS and write "
        "DIR/sim.json with the port, CA bundle, tenant and principals; with a VERB, shape the "
        "world of the simulator already running with that DIR (e.g. 'batchcert-dev sim "
        "--state-dir .state/demo/sim node render-pool NODE --busy 1').",
    )
    parser.add_argument(
        "--state-dir",
        default=".state/sim",
        help="where sim.json, the CA and the persisted state live (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="HTTPS port (default: the previous run's port, else a free one)",
    )
    parser.add_argument(
        "--seed",
        choices=("demo", "none"),
        default="demo",
        help="world to create on start (default: %(default)s)",
    )
    parser.add_argument(
        "--clock-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (default: %(default)s)",
    )
    parser.set_defaults(func=run)
    from batchsim.ctl import add_verbs

    add_verbs(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    from pathlib import Path

    from batchsim.server import SimOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = SimOptions(
        state_dir=Path(args.state_dir), port=args.port, seed=args.seed, clock_scale=args.clock_scale
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"batchcert-dev sim: writing {Path(args.state_dir) / 'sim.json'}; Ctrl-C to stop",
            flush=True,
        )
        await serve(options, stop)

    asyncio.run(main())
    return 0
