"""glibc's malloc arenas, capped before the daemon starts its threads.

With glibc's default of up to 8 arenas per core, every thread that allocates (the event
loop, libzmq's I/O thread, the engine threads, ONNX Runtime's and CTranslate2's pools)
can grow an arena of its own, and each keeps its high-water mark: `malloc_trim`
(`daemon.server.memory`) returns free pages, not that spread. Measured by the soak
(`npc-voice bench reliability`, BENCHMARKS.md "Reliability"): RSS growth +217 MB with
glibc's default, +74 MB with two arenas. Elsewhere (musl, macOS, Windows) nothing is done.

No imports beyond the standard library: `npc-voice serve` calls this before it imports
numpy and the engines (OpenBLAS starts threads at import).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter number for the arena cap (malloc.h)."""


def limit_malloc_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at `count`, unless `MALLOC_ARENA_MAX` is set already.

    Call it before any other thread allocates: glibc fixes its arena limit when the first
    extra arena is made, so a later cap is ignored. Allocation stays thread-safe; threads
    share the arenas (the daemon's threads allocate little in their hot loops).

    Returns:
      True if the cap was set (glibc), False elsewhere or when the environment sets it.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))
