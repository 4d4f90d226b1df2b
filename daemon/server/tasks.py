"""Background work off the critical path, named, registered and cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

_LOGGER = logging.getLogger(__name__)


class BackgroundTasks:
    """A registry of tasks whose failures are logged, never raised (style rule 5)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coroutine: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """Run `coroutine` as a named task; it is kept until it ends or `cancel_all`."""
        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("background task %s failed", name)

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
