"""Host aliases for the operator's one aiohttp connector: a pod's ``hostAliases``, in-process.

A custom cloud (Azure Stack Hub behind private DNS, or the project's simulator) may serve vault-
and Batch-account-style names that the process's resolver cannot resolve. ``cloud.hostAliases``
maps name patterns to addresses for the operator's own HTTP connections only, so the Azure SDKs'
checks (Key Vault's challenge-resource check in particular) run unweakened on the real names.
``cloud.hostsFile`` adds exact names from a hosts(5) file, re-read when it changes: names that
come and go (a vault's) resolve only while they are listed, as DNS answers NXDOMAIN otherwise.

Invariants: only names matching a pattern or listed in the file are affected; every other lookup
goes to aiohttp's default resolver (and fails there as it would); nothing process-wide is
patched; TLS still verifies the name, not the address; an unreadable file lists nothing.
"""

from __future__ import annotations

import fnmatch
import os
import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class AliasResolver(AbstractResolver):
    """Resolve aliased names to their address; delegate the rest."""

    def __init__(
        self,
        aliases: Mapping[str, str],
        fallback: AbstractResolver | None = None,
        *,
        hosts_file: str | None = None,
    ):
        self._aliases = {pattern.lower(): address for pattern, address in aliases.items()}
        self._fallback = fallback or DefaultResolver()
        self._hosts_file = hosts_file
        self._hosts: dict[str, str] = {}
        self._hosts_stamp: tuple[int, int] | None = None

    def alias_of(self, host: str) -> str | None:
        name = host.lower().rstrip(".")
        for pattern, address in self._aliases.items():
            if fnmatch.fnmatchcase(name, pattern):
                return address
        return self._listed().get(name)

    def _listed(self) -> dict[str, str]:
        """The hosts file's names, read again only when its size or modification time moved."""
        if self._hosts_file is None:
            return {}
        try:
            info = os.stat(self._hosts_file)
        except OSError:
            self._hosts, self._hosts_stamp = {}, None
            return self._hosts
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._hosts_stamp:
            self._hosts, self._hosts_stamp = read_hosts_file(self._hosts_file), stamp
        return self._hosts

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


def read_hosts_file(path: str) -> dict[str, str]:
    """``name -> address`` from a hosts(5) file; comments, blanks and odd lines are skipped."""
    names: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split("#", 1)[0].split()
                for name in fields[1:]:
                    names.setdefault(name.lower().rstrip("."), fields[0])
    except OSError:
        return {}
    return names
