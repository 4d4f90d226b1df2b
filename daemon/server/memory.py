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
    """Trims the heap `settle_s` after a burst of frees began, at most every `interval_s`.

    Requests while one is pending join it, so the last one is never lost.

    The server asks for one after a client's resources were freed, whenever its last
    running turn ends and when a conversation's background prefill ends with no turn
    running, not per message. The wait lets the burst finish first: a turn's task
    frees its audio and text after its terminal event is sent, libzmq frees the frames
    once they are written, and a trim run before those frees returned nothing of them.
    A turn that starts meanwhile calls `hold`: the trim would hand back the very pages
    its LLM and TTS buffers are about to reuse, and take the heap's locks while they
    allocate (Piper's first audio was ~10 ms later after a trim: BENCHMARKS.md,
    "Memory"); its own end asks again. The trim itself (a few milliseconds on a large
    heap) runs on a worker thread: ctypes releases the GIL, so the event loop goes on.

    Args:
      interval_s: Shortest time between two trims.
      settle_s: Wait between a request and its trim.
    """

    def __init__(self, interval_s: float = 1.0, settle_s: float = 0.25) -> None:
        self._malloc_trim = _load_malloc_trim()
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._last = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.trims = 0

    @property
    def available(self) -> bool:
        """Whether glibc's `malloc_trim` was found (False on musl, macOS, Windows)."""
        return self._malloc_trim is not None

    @property
    def pending(self) -> bool:
        """A trim is waiting or running."""
        return self._task is not None and not self._task.done()

    def request(self) -> None:
        """Trim once the frees have settled and the interval has passed (event-loop thread)."""
        if self._malloc_trim is None or self.pending:
            return
        wait_s = max(self._settle_s, self._last + self._interval_s - time.monotonic())
        self._task = asyncio.get_running_loop().create_task(
            self._trim_after(self._malloc_trim, wait_s), name="malloc-trim")

    async def _trim_after(self, malloc_trim: Callable[[int], int], wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        self._last = time.monotonic()
        self.trims += 1
        await asyncio.get_running_loop().run_in_executor(None, malloc_trim, 0)

    def hold(self) -> None:
        """Drop a trim still waiting (a turn started); one already running finishes."""
        self.close()

    async def wait(self) -> None:
        """Until the pending trim, if any, has run."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def close(self) -> None:
        """Cancel a trim still waiting (one already running on its thread finishes)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
