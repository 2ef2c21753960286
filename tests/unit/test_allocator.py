"""The process's memory hooks (batchcert.allocator): on glibc, a trim gives free heap pages back;
TLS connections made after ``tune`` read into 64 KiB, not asyncio's 256 KiB.

The fragmented heap is made on purpose: many blocks below the mmap threshold, all freed but
every 16th, so the free space lies between live blocks where glibc's own top trim cannot reach
it. A ``Trimmer`` must return it (RSS falls by most of it) and report what lay free; it must
leave the heap alone under its threshold, and not trim again until the process has taken pages
again. Where the C library is not glibc every glibc hook is a no-op (the module's invariant),
which the last test states.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import pytest

from batchcert import allocator

glibc = pytest.mark.skipif(allocator.info() is None, reason="the C library is not glibc >= 2.33")


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


@glibc
def test_a_trim_returns_the_free_pages_between_live_blocks() -> None:
    blocks = [bytearray(16 * 1024) for _ in range(4000)]  # 64 MB in the heap (< mmap threshold)
    kept = blocks[::16]
    del blocks
    info = allocator.info()
    assert info is not None and info["free_bytes"] > 40 * 2**20
    before = rss_bytes()
    assert allocator.Trimmer(above=2**62)() == 0  # under the threshold: left alone
    assert rss_bytes() > before - 8 * 2**20
    trim = allocator.Trimmer(above=4 * 2**20)
    assert trim() > 40 * 2**20
    assert rss_bytes() < before - 30 * 2**20
    # The chunks stay free in glibc's bins, but their pages are given back: no second trim,
    # until a burst takes pages again and frees them.
    assert trim() == 0
    again = [bytearray(16 * 1024) for _ in range(1000)]  # reuse 16 MB, free it again
    del again
    assert trim() > 0
    assert len(kept) == 250


@glibc
async def test_the_periodic_trim_runs_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(allocator.Trimmer, "__call__", lambda self: calls.append(1) or 0)
    task = asyncio.ensure_future(allocator.trim_periodically(every=0.01))
    await asyncio.sleep(0.05)
    assert not task.done() and len(calls) >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_tls_connections_made_after_tuning_read_into_64_kib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl
    from asyncio import sslproto

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    monkeypatch.setattr(allocator, "_LIBC", None)  # the buffers only: no mallopt on pytest
    allocator.tune()
    waiter = asyncio.get_running_loop().create_future()
    protocol = sslproto.SSLProtocol(
        asyncio.get_running_loop(), asyncio.Protocol(), ssl.create_default_context(), waiter
    )
    assert len(protocol._ssl_buffer) == 64 * 1024  # was 256 KiB per connection


def test_every_hook_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncio import sslproto

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    monkeypatch.setattr(allocator, "_LIBC", None)
    assert allocator.info() is None
    assert allocator.Trimmer(above=0)() == 0
    assert asyncio.run(allocator.trim_periodically(every=0)) is None


def test_the_tls_buffer_is_set_where_the_attribute_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncio import sslproto

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)
    assert allocator.tune() is True
    assert sslproto.SSLProtocol.max_size == allocator.TLS_READ_BUFFER_BYTES


def test_a_missing_tls_buffer_attribute_warns_once_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from asyncio import sslproto

    monkeypatch.delattr(sslproto.SSLProtocol, "max_size")
    monkeypatch.setattr(allocator, "_warned_missing_buffer_size", False)
    with caplog.at_level("WARNING", logger=allocator.__name__):
        assert allocator.tune() is False
        assert allocator.tune() is False
    assert not hasattr(sslproto.SSLProtocol, "max_size")
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_glibc_is_tuned_by_the_environment_everywhere_the_operator_runs(tmp_path: Path) -> None:
    import json

    from support.operator import operator_env

    repo = Path(__file__).resolve().parents[2]
    dockerfile = (repo / "Dockerfile").read_text()
    deployment = (repo / "deploy" / "base" / "operator" / "deployment.yaml").read_text()
    for name, value in allocator.GLIBC_TUNABLES_ENV.items():
        assert f"{name}={value}" in dockerfile
        assert f'name: {name}\n              value: "{value}"' in deployment
    sim = tmp_path / "sim.json"  # the launchers of the tests and benchmarks all use operator_env
    principal = {"clientId": "c", "clientSecret": "s"}
    sim.write_text(json.dumps({"tenantId": "t", "principals": {"operator": principal}}))
    assert allocator.GLIBC_TUNABLES_ENV.items() <= operator_env(sim).items()
