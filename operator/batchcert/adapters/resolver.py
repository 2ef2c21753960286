"""Host aliases for the operator's one aiohttp connector: a pod's ``hostAliases``, in-process.

A custom cloud (Azure Stack Hub behind private DNS, or the project's simulator) may serve vault-
and Batch-account-style names that the process's resolver cannot resolve. ``cloud.hostAliases``
maps name patterns to addresses for the operator's own HTTP connections only, so the Azure SDKs'
checks (Key Vault's challenge-resource check in particular) run unweakened on the real names.

Invariants: only names matching a pattern are affected; every other lookup goes to aiohttp's
default resolver; nothing process-wide is patched; TLS still verifies the name, not the address.
"""

from __future__ import annotations

import fnmatch
import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class AliasResolver(AbstractResolver):
    """Resolve aliased names to their address; delegate the rest."""

    def __init__(self, aliases: Mapping[str, str], fallback: AbstractResolver | None = None):
        self._aliases = {pattern.lower(): address for pattern, address in aliases.items()}
        self._fallback = fallback or DefaultResolver()

    def alias_of(self, host: str) -> str | None:
        name = host.lower().rstrip(".")
        for pattern, address in self._aliases.items():
            if fnmatch.fnmatchcase(name, pattern):
                return address
        return None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.alias_of(host)
        if address is None:
            return await self._fallback.resolve(host, port, family)
        results = await self._fallback.resolve(address, port, family)
        # Report the name asked for, as a hosts-file entry would.
        return [{**result, "hostname": host} for result in results]

    async def close(self) -> None:
        await self._fallback.close()
