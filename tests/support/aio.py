"""Running a test's coroutine on a fresh event loop, with a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
    """Run `coroutine` to completion on a fresh event loop; fail after `timeout_s`."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))
