"""``batchcert-dev sim <verb>``: shape a running simulator's world from a shell.

``batchcert-dev sim`` alone runs the simulator; with a verb it talks to one already running,
found by its ``sim.json`` (``--state-dir``), through the control API (``client.SimControl``):

    clock [--advance 30d]                       show the simulated time, or move it on
    identity NAME                               a user-assigned identity (prints its ids)
    grant VAULT PRINCIPAL_ID [--revoke]         secrets get/list on a vault (access policy)
    cert VAULT NAME (--renew|--disable|--enable)
    node POOL NODE [--busy N] [--fetch-blocked|--fetch-ok] [--hang|--no-hang] [--state S]
    pools                                       every pool and its nodes, one line each

Names default to the demo world's subscription, resource group and Batch account (``sim.json``'s
``demo``), overridable with ``--subscription``, ``--resource-group`` and ``--account``.

Invariants: standard library only at import (the CLI imports every subcommand module for
``--help``); every answer is printed as the control API gave it, so nothing here models Azure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``30d`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 2h or 30d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_verbs(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=False)
    for name, help_ in (
        ("clock", "show the simulated time, or advance it"),
        ("identity", "add a user-assigned managed identity"),
        ("grant", "give a principal secrets get/list on a vault (or take it away)"),
        ("cert", "renew, disable or enable a certificate"),
        ("node", "make a node busy, unable to fetch, hang its tasks, or change its state"),
        ("pools", "list every pool and its nodes"),
    ):
        verb = verbs.add_parser(name, help=help_, description=help_)
        verb.add_argument("--subscription", help="default: the demo world's")
        verb.add_argument("--resource-group", help="default: the demo world's")
        verb.add_argument("--account", help="Batch account (default: the demo world's)")
        verb.set_defaults(func=run_verb)
        _VERB_ARGUMENTS[name](verb)


def _clock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--advance", type=parse_duration, help="e.g. 30d, 2h, 90s")


def _identity(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")


def _grant(p: argparse.ArgumentParser) -> None:
    p.add_argument("vault", help="the vault's name (demokv in the demo world)")
    p.add_argument("principal_id", help="the identity's principalId (object id)")
    p.add_argument("--revoke", action="store_true", help="remove the access policy instead")


def _cert(p: argparse.ArgumentParser) -> None:
    p.add_argument("vault")
    p.add_argument("name")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--renew", action="store_true", help="a new version now")
    action.add_argument("--disable", action="store_true")
    action.add_argument("--enable", action="store_true")


def _node(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool")
    p.add_argument("node", help="the node id (batchcert-dev sim pools lists them)")
    p.add_argument("--busy", type=int, metavar="SLOTS", help="task slots held by user work")
    fetch = p.add_mutually_exclusive_group()
    fetch.add_argument("--fetch-blocked", dest="fetch_blocked", action="store_true", default=None)
    fetch.add_argument("--fetch-ok", dest="fetch_blocked", action="store_false")
    hang = p.add_mutually_exclusive_group()
    hang.add_argument("--hang", dest="hang", action="store_true", default=None)
    hang.add_argument("--no-hang", dest="hang", action="store_false")
    p.add_argument("--state", help="e.g. unusable, offline; 'none' restores the node")


def _pools(p: argparse.ArgumentParser) -> None:
    del p


_VERB_ARGUMENTS = {
    "clock": _clock,
    "identity": _identity,
    "grant": _grant,
    "cert": _cert,
    "node": _node,
    "pools": _pools,
}


def run_verb(args: argparse.Namespace) -> int:
    from batchsim.client import SimControl, SimControlError

    sim_json = Path(args.state_dir) / "sim.json"
    if not sim_json.exists():
        print(
            f"no simulator runs with state dir {args.state_dir} ({sim_json} is missing): start "
            "one with 'batchcert-dev sim --state-dir DIR', or pass the demo's "
            "(--state-dir .state/demo/sim)",
            file=sys.stderr,
        )
        return 2
    control = SimControl(sim_json)
    try:
        result = _VERBS[args.verb](control, args)
    except SimControlError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True) if not isinstance(result, str) else result)
    return 0


def _ids(control: Any, args: argparse.Namespace) -> tuple[str, str, str]:
    demo = control.info.get("demo") or {}
    return (
        args.subscription or demo.get("subscriptionId", ""),
        args.resource_group or demo.get("resourceGroup", ""),
        args.account or demo.get("batchAccount", ""),
    )


def _do_clock(control: Any, args: argparse.Namespace) -> Any:
    return control.advance(args.advance) if args.advance else control.clock()


def _do_identity(control: Any, args: argparse.Namespace) -> Any:
    subscription, group, _ = _ids(control, args)
    return control.add_identity(subscription, group, args.name)


def _do_grant(control: Any, args: argparse.Namespace) -> Any:
    operation = "remove" if args.revoke else "add"
    return control.grant(args.vault, args.principal_id, {"secrets": ["get", "list"]}, operation)


def _do_cert(control: Any, args: argparse.Namespace) -> Any:
    if args.renew:
        return {"version": control.renew_certificate(args.vault, args.name)}
    return control.set_certificate_enabled(args.vault, args.name, enabled=bool(args.enable))


def _do_node(control: Any, args: argparse.Namespace) -> Any:
    ids = (*_ids(control, args), args.pool)
    fields: dict[str, Any] = {}
    if args.busy is not None:
        fields["busySlots"] = args.busy
    if args.fetch_blocked is not None:
        fields["fetchBlocked"] = args.fetch_blocked
    if args.hang is not None:
        fields["taskHang"] = args.hang
    result: Any = None
    if fields:
        result = control.set_node(*ids, node_id=args.node, **fields)
    if args.state is not None:
        state = None if args.state == "none" else args.state
        result = control.set_node_state(*ids, node_id=args.node, state=state)
    if result is None:
        raise SystemExit("say what to change: --busy, --fetch-blocked/--fetch-ok, --hang, --state")
    return result


def _do_pools(control: Any, args: argparse.Namespace) -> str:
    del args
    lines = []
    for pool in control.pools():
        arm_id = str(pool.get("id", "?"))
        lines.append(f"{arm_id.rsplit('/', 1)[-1]}  ({arm_id})")
        for node in pool.get("nodes") or []:
            flags = [
                f"busySlots={node['busySlots']}" if node.get("busySlots") else "",
                "fetchBlocked" if node.get("fetchBlocked") else "",
                "taskHang" if node.get("taskHang") else "",
            ]
            extra = " ".join(f for f in flags if f)
            lines.append(f"  {node.get('id', '?')}  {node.get('state', '?')}  {extra}".rstrip())
    return "\n".join(lines) or "(no pools)"


_VERBS = {
    "clock": _do_clock,
    "identity": _do_identity,
    "grant": _do_grant,
    "cert": _do_cert,
    "node": _do_node,
    "pools": _do_pools,
}
