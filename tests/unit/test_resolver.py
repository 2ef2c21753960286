"""Host aliases through the operator's one aiohttp connector (``adapters/resolver.py``).

Covers: an aliased name resolves to its address and keeps its own name (as a hosts-file entry
does, so TLS still verifies the name); patterns are case-insensitive and ignore a trailing dot;
any other name goes to the fallback resolver untouched; nothing process-wide is patched; names
from a hosts file resolve while they are listed and stop when the file drops them (re-read when it
changes), and a missing or garbled file lists nothing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from batchcert.adapters.resolver import AliasResolver
from batchcert.config import parse_host_aliases


class RecordingResolver(AbstractResolver):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: Any = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host, host="203.0.113.7" if host == "example.org" else host,
                port=port, family=family, proto=0, flags=0,
            )
        ]  # fmt: skip

    async def close(self) -> None:
        pass


async def test_aliased_names_resolve_to_their_address_and_keep_their_name() -> None:
    fallback = RecordingResolver()
    resolver = AliasResolver(parse_host_aliases("*.sim.test=127.0.0.1"), fallback)
    [result] = await resolver.resolve("MyKV.vault.sim.test.", 443)
    assert result["host"] == "127.0.0.1" and result["hostname"] == "MyKV.vault.sim.test."
    assert fallback.asked == ["127.0.0.1"]


async def test_other_names_go_to_the_real_resolver_untouched() -> None:
    fallback = RecordingResolver()
    getaddrinfo = socket.getaddrinfo
    resolver = AliasResolver({"*.sim.test": "127.0.0.1"}, fallback)
    [result] = await resolver.resolve("example.org", 443)
    assert result["host"] == "203.0.113.7" and fallback.asked == ["example.org"]
    assert resolver.alias_of("vault.azure.net") is None
    assert socket.getaddrinfo is getaddrinfo  # nothing process-wide


async def test_hosts_file_names_resolve_only_while_listed(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# vaults\n127.0.0.1 demokv.vault.sim.test\n\nnot-an-entry\n")
    resolver = AliasResolver(
        {"login.sim.test": "127.0.0.1"}, RecordingResolver(), hosts_file=str(hosts)
    )
    assert resolver.alias_of("DemoKV.vault.sim.test.") == "127.0.0.1"
    assert resolver.alias_of("login.sim.test") == "127.0.0.1"
    assert resolver.alias_of("demokw.vault.sim.test") is None  # misspelt: not resolvable

    hosts.write_text("127.0.0.1 otherkv.vault.sim.test\n")
    later = os.stat(hosts).st_mtime_ns + 1_000_000_000
    os.utime(hosts, ns=(later, later))
    assert resolver.alias_of("demokv.vault.sim.test") is None  # the vault went away
    assert resolver.alias_of("otherkv.vault.sim.test") == "127.0.0.1"

    hosts.unlink()
    assert resolver.alias_of("otherkv.vault.sim.test") is None
