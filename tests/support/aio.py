"""Running a test's coroutine on a fresh event loop, with a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
    """Run `coroutine` to completion on a fresh event loop; fail after `timeout_s`."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll `condition` (state owned by another party: a pool, a thread) until it holds.

    Raises:
      TimeoutError: it did not hold within `timeout_s`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # nothing to await: the state is polled
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)
