"""Which turn gets an LLM slot next: by priority, then first come first served.

Both LLM backends have a fixed number of places where a reply can run at once (llama.cpp
contexts in process, a server's slots), so turns wait for one. `SlotGate` hands them out
highest priority first, and never lets ambient turns (barks) take the last free place:
a turn the player waits for then always starts at once, whatever the barks do. The
in-process pool also asks `should_yield` between tokens, so a running ambient reply
gives its context up when a more urgent turn is waiting (it resumes later, continuing
its own text).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from daemon.priorities import AMBIENT


class SlotGate:
    """`capacity` places, handed out by priority.

    Args:
      capacity: Places that can be held at once.
      reserve: Places ambient turns may never take (only when capacity > reserve).
    """

    def __init__(self, capacity: int, reserve: int = 1) -> None:
        self._capacity = capacity
        self._reserve = reserve if capacity > reserve else 0
        self._held = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

        self.top_waiting: int | None = None
        """Priority of the most urgent waiting turn, or None. A plain attribute, updated
        on the event loop: engine threads read it between tokens (`should_yield`)."""

    def _update_top(self) -> None:
        live = [-entry[0] for entry in self._waiting if not entry[2].done()]
        self.top_waiting = max(live) if live else None

    def _may_take(self, priority: int) -> bool:
        free = self._capacity - self._held
        return free > (self._reserve if priority <= AMBIENT else 0)

    @asynccontextmanager
    async def place(self, priority: int) -> AsyncIterator[None]:
        """Hold a place for the duration of the block (waiting for one first)."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, priority: int) -> None:
        """Wait for a place; cancellation while waiting gives nothing up."""
        if self._may_take(priority):
            self._held += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (-priority, next(self._order), future)
        heapq.heappush(self._waiting, entry)
        self._update_top()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as the waiter was cancelled
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._update_top()
            raise

    def release(self) -> None:
        """Give a place back and hand it to the most urgent waiter allowed to take it."""
        self._held -= 1
        self._grant()

    def _grant(self) -> None:
        while self._waiting:
            neg_priority, _, future = self._waiting[0]
            if future.done():
                heapq.heappop(self._waiting)
                continue
            if not self._may_take(-neg_priority):
                break
            heapq.heappop(self._waiting)
            self._held += 1
            future.set_result(None)
        self._update_top()
