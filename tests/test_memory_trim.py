"""Giving freed memory back: requests in a burst make one `malloc_trim`, after the burst.

Real glibc `malloc_trim` through ctypes (the daemon's own `MemoryTrimmer`).
"""

from __future__ import annotations

import asyncio

import pytest

from daemon.server.memory import MemoryTrimmer

pytestmark = pytest.mark.skipif(not MemoryTrimmer().available, reason="not glibc")


def test_requests_in_a_burst_make_one_trim_after_it() -> None:
    async def scenario() -> tuple[int, bool, int]:
        trimmer = MemoryTrimmer(interval_s=0.0, settle_s=0.05)
        trimmer.request()
        trimmer.request()  # joins the pending one
        before = trimmer.trims  # none yet: the frees of the burst have not settled
        pending = trimmer.pending
        await trimmer.wait()
        return before, pending, trimmer.trims

    assert asyncio.run(scenario()) == (0, True, 1)


def test_a_request_after_a_trim_waits_for_the_interval() -> None:
    async def scenario() -> tuple[int, bool, int]:
        trimmer = MemoryTrimmer(interval_s=30.0, settle_s=0.0)
        trimmer.request()
        await trimmer.wait()
        trimmer.request()  # inside the 30 s interval: scheduled, not run
        await asyncio.sleep(0.05)
        trims, pending = trimmer.trims, trimmer.pending
        trimmer.close()  # the daemon's shutdown: nothing runs after it
        await asyncio.sleep(0)
        return trims, pending, trimmer.trims

    assert asyncio.run(scenario()) == (1, True, 1)


def test_a_turn_that_starts_meanwhile_holds_the_trim_back() -> None:
    """`hold` (a turn started) drops the waiting trim; the next request schedules anew."""
    async def scenario() -> tuple[bool, int, int]:
        trimmer = MemoryTrimmer(interval_s=0.0, settle_s=0.05)
        trimmer.request()
        trimmer.hold()
        await asyncio.sleep(0.1)  # past the settle time: it would have run by now
        held = (trimmer.pending, trimmer.trims)
        trimmer.request()  # the turn ended
        await trimmer.wait()
        return (*held, trimmer.trims)

    assert asyncio.run(scenario()) == (False, 0, 1)
