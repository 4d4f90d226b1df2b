"""Giving freed memory back to the operating system (glibc), for long sessions.

The daemon frees what a vanished client owned at once, but glibc's allocator keeps
freed heap pages for reuse, fragmented among live ones (and spread over per-thread
arenas: libzmq's I/O thread allocates what the event loop later frees), so resident
memory would still creep up over hours of connects and disconnects. Measured by the
reliability suite before this existed: +134 MB after a few dozen killed and idle
clients and one message of 200,000 empty frames (which libzmq buffers whole).
`malloc_trim(0)` returns the free pages of every arena to the kernel. Elsewhere (musl,
macOS, Windows) this does nothing.

Trimming returns free pages, not the high-water marks of glibc's per-thread arenas:
`daemon.allocator` caps their number before the daemon starts its threads.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


class MemoryTrimmer:
    """Trims the heap after a burst of frees: at once, then at most every `interval_s`.

    A request inside the interval runs when it ends, so the last one is never lost.

    The server asks for one after a client's resources were freed and whenever its
    last running turn ends, not per message. The trim itself (a few milliseconds on a
    large heap) runs on a worker thread: ctypes releases the GIL, so the event loop
    goes on meanwhile.

    Args:
      interval_s: Shortest time between two trims.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self._malloc_trim = _load_malloc_trim()
        self._interval_s = interval_s
        self._last = float("-inf")
        self._scheduled: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[int] | None = None
        self.trims = 0

    def request(self) -> None:
        """Trim now, or when the interval since the last trim ends (event-loop thread)."""
        if self._malloc_trim is None or self._scheduled is not None:
            return
        wait_s = self._last + self._interval_s - time.monotonic()
        if wait_s <= 0:
            self._trim()
        else:
            self._scheduled = asyncio.get_running_loop().call_later(wait_s, self._trim)

    def _trim(self) -> None:
        self._scheduled = None
        self._last = time.monotonic()
        if self._malloc_trim is not None:
            self._running = asyncio.get_running_loop().run_in_executor(
                None, self._malloc_trim, 0)
            self.trims += 1

    def close(self) -> None:
        """Cancel a pending trim."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
