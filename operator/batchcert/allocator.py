"""The process's memory below Python objects: the C allocator, and TLS connections' buffers.

Measured at 1000 pools (benchmarks/results/issue15/memory, ``memory_probe.py --rotate``): after a
rotation's burst (1000 turns, status writes and their echoes at once) glibc's heap held 48 MB
free against 24 MB in use, and none of it went back to the system: glibc returns only the top of
its heap, and its dynamic mmap threshold moves large buffers (asyncio's 256 KiB TLS read buffers,
big JSON answers) into the heap once one of that size has been freed. Two remedies, both glibc's own:

* a fixed mmap threshold (128 KiB, glibc's starting value) keeps large blocks in their own
  mappings, returned whole when freed, and two arenas at most for the few helper threads: glibc's
  own environment variables, ``MALLOC_MMAP_THRESHOLD_=131072`` and ``MALLOC_ARENA_MAX=2``
  (``GLIBC_TUNABLES_ENV``), set by the image (Dockerfile), deploy/base and every launcher of the
  tests and benchmarks; no code;
* ``malloc_trim(0)`` once a while (``trim_periodically``, unless ``BATCHCERT_MALLOC_TRIM=false``),
  when more than ``TRIM_ABOVE_BYTES`` lie free and the process grew by as much since its last
  trim, returns the free pages inside the heap (``madvise``), not only its top.

Each TLS connection of asyncio (every Azure and Kubernetes API connection) also allocates a read
buffer of ``asyncio.sslproto.SSLProtocol.max_size``, 256 KiB: with 115-145 connections open at
1000 pools (ARM, Key Vault, ten Batch accounts, the API server) that was 26-36 MB, a fifth of the
process. TLS records are at most 16 KiB, and our answers are small: ``tune`` sets 64 KiB
(asyncio reads more often from a socket that has more; nothing else changes). The attribute is
private to asyncio: where it is missing, ``tune`` warns once and changes nothing.

Invariants: nothing here changes what the program computes; every glibc call is a no-op where the
C library is not glibc (musl, macOS) or is older than 2.33 (``mallinfo2``); a failed lookup never
raises.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from asyncio import sslproto
from typing import Any

log = logging.getLogger(__name__)

# glibc's own tunables, read when the process starts (the image and deploy/ set them).
GLIBC_TUNABLES_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
TRIM_EVERY_SECONDS = 10.0
TRIM_ABOVE_BYTES = 4 * 2**20
TLS_READ_BUFFER_BYTES = 64 * 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


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
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname (find_library would run ldconfig)
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None
    return libc


_LIBC = _glibc()


_warned_missing_buffer_size = False


def tune() -> bool:
    """Smaller TLS read buffers for connections made from now on; False (after one warning):
    this Python's asyncio has no ``SSLProtocol.max_size`` to set, and nothing was changed."""
    global _warned_missing_buffer_size
    # A class attribute of a private stdlib module, read when each connection is made (3.11's
    # ``SSLProtocol.__init__``); checked by tests/unit/test_allocator.py.
    if not hasattr(sslproto.SSLProtocol, "max_size"):
        if not _warned_missing_buffer_size:
            _warned_missing_buffer_size = True
            log.warning(
                "asyncio.sslproto.SSLProtocol has no max_size on this Python: TLS read buffers "
                "keep asyncio's default size"
            )
        return False
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
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


def resident_bytes() -> int:
    """The process's resident set (``/proc/self/statm``), in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


class Trimmer:
    """``malloc_trim(0)`` when more than ``above`` bytes lie free in the heap and the process
    has grown by more than ``above`` since it last trimmed.

    A trim gives pages back but leaves their chunks free in glibc's bins, so the free figure
    (``fordblks``) does not fall after it: judged on that alone, every call after one burst
    would trim again. Growth of the resident set since the last trim says whether pages were
    taken again (a burst reused the free chunks, then freed them).
    """

    def __init__(self, above: int = TRIM_ABOVE_BYTES) -> None:
        self.above = above
        self._resident_after_trim: int | None = None  # None: never trimmed

    def __call__(self) -> int:
        """Trim if worth it; returns the free bytes whose pages it gave back (0: no trim)."""
        if _LIBC is None:
            return 0
        free = int(_LIBC.mallinfo2().fordblks)
        if free <= self.above:
            return 0
        last = self._resident_after_trim
        if last is not None and resident_bytes() - last <= self.above:
            return 0
        _LIBC.malloc_trim(0)
        self._resident_after_trim = resident_bytes()
        return free


async def trim_periodically(every: float = TRIM_EVERY_SECONDS) -> None:
    """Run for the life of the operator (cancelled with it); a few ms per trim at 1000 pools."""
    if _LIBC is None:
        return
    trim = Trimmer()
    while True:
        await asyncio.sleep(every)
        freed = trim()
        if freed:
            log.debug("malloc_trim: %.1f MB lay free in the heap", freed / 2**20)
