"""The process's memory below Python objects: the C allocator, and TLS connections' buffers.

Measured at 1000 pools (benchmarks/results/issue15/memory, ``memory_probe.py --rotate``): after a
rotation's burst (1000 turns, status writes and their echoes at once) glibc's heap held 48 MB
free against 24 MB in use, and none of it went back to the system: glibc returns only the top of
its heap, and its dynamic mmap threshold moves large buffers (TLS records of 256 KiB, big JSON
answers) into the heap once one of that size has been freed. Two remedies, both glibc's own:

* a fixed mmap threshold (128 KiB, glibc's starting value) keeps large blocks in their own
  mappings, returned whole when freed, and two arenas at most for the few helper threads;
* ``malloc_trim(0)`` once a while, when more than ``TRIM_ABOVE_BYTES`` lie free, returns the
  free pages inside the heap (``madvise``), not only its top.

Each TLS connection of asyncio (every Azure and Kubernetes API connection) also allocates a read
buffer of ``asyncio.sslproto.SSLProtocol.max_size``, 256 KiB: with 115-145 connections open at
1000 pools (ARM, Key Vault, ten Batch accounts, the API server) that was 26-36 MB, a fifth of the
process. TLS records are at most 16 KiB, and our answers are small: ``tune`` sets 64 KiB
(asyncio reads more often from a socket that has more; nothing else changes).

Invariants: nothing here changes what the program computes; every glibc call is a no-op where the
C library is not glibc (musl, macOS) or is older than 2.33 (``mallinfo2``); a failed lookup never
raises.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from asyncio import sslproto
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2
TRIM_EVERY_SECONDS = 10.0
TRIM_ABOVE_BYTES = 4 * 2**20
TLS_READ_BUFFER_BYTES = 64 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _glibc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None
    return libc


_LIBC = _glibc()


def tune() -> bool:
    """Smaller TLS read buffers; glibc's fixed mmap threshold and arena cap (call before threads
    start). False: the C library is not glibc (the buffers are set anyway)."""
    # A class attribute of a private stdlib module, read when each connection is made (3.11's
    # ``SSLProtocol.__init__``); checked by tests/unit/test_allocator.py.
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
    if _LIBC is None:
        return False
    _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    _LIBC.mallopt(M_ARENA_MAX, ARENAS)
    return True


def info() -> dict[str, int] | None:
    """glibc's ``mallinfo2`` in bytes: its heap, in use and free (free but held = fragmentation)."""
    if _LIBC is None:
        return None
    raw = _LIBC.mallinfo2()
    return {
        "heap_bytes": raw.arena,
        "mmapped_bytes": raw.hblkhd,
        "in_use_bytes": raw.uordblks,
        "free_bytes": raw.fordblks,
        "trimmable_bytes": raw.keepcost,
    }


def trim_if_worth_it(above: int = TRIM_ABOVE_BYTES) -> int:
    """``malloc_trim(0)`` when more than ``above`` bytes lie free; returns the bytes free before."""
    if _LIBC is None:
        return 0
    free = int(_LIBC.mallinfo2().fordblks)
    if free > above:
        _LIBC.malloc_trim(0)
    return free if free > above else 0


async def trim_periodically(every: float = TRIM_EVERY_SECONDS) -> None:
    """Run for the life of the operator (cancelled with it); a few ms per trim at 1000 pools."""
    if _LIBC is None:
        return
    while True:
        await asyncio.sleep(every)
        freed = trim_if_worth_it()
        if freed:
            log.debug("malloc_trim: %.1f MB were free in the heap", freed / 2**20)
