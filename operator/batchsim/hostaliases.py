"""In-process host aliases: the ``hostAliases`` of a pod, for a process outside a pod.

The Azure simulator serves vault- and Batch-account-style host names (``mykv.vault.sim.test``) so
the SDKs' own checks (Key Vault's challenge-resource check in particular) run unweakened. Those
names resolve nowhere, so the operator, the demo and the tests map them to loopback here, the way
``curl --resolve`` or a pod's ``hostAliases`` would.

Invariants: only names matching an alias pattern are affected; every other lookup goes to the
real resolver untouched; TLS verification is unaffected (the name, not the address, is verified).
"""

from __future__ import annotations

import fnmatch
import socket
from collections.abc import Mapping
from typing import Any

_real_getaddrinfo = socket.getaddrinfo
_aliases: dict[str, str] = {}


def resolve_alias(host: str) -> str | None:
    """The address a host name is aliased to, or None when no pattern matches."""
    name = host.lower().rstrip(".")
    for pattern, address in _aliases.items():
        if fnmatch.fnmatchcase(name, pattern):
            return address
    return None


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode("idna")
    if isinstance(host, str):
        address = resolve_alias(host)
        if address is not None:
            host = address
    return _real_getaddrinfo(host, *args, **kwargs)


def install_host_aliases(aliases: Mapping[str, str]) -> None:
    """Add aliases for this process (idempotent; later patterns add to earlier ones)."""
    _aliases.update({k.lower(): v for k, v in aliases.items()})
    socket.getaddrinfo = _getaddrinfo


def clear_host_aliases() -> None:
    """Remove every alias and restore the real resolver."""
    _aliases.clear()
    socket.getaddrinfo = _real_getaddrinfo
