"""The LLM slot gate: most urgent first, and ambient turns never take the last place."""

from __future__ import annotations

import asyncio

from daemon.llm.admission import SlotGate
from daemon.priorities import AMBIENT, HIGH, NORMAL
from tests.support.aio import run


def test_waiting_turns_get_places_by_priority_then_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        gate = SlotGate(1, reserve=0)
        granted: list[str] = []
        await gate.acquire(NORMAL)  # the one place is taken

        async def wait(name: str, priority: int) -> None:
            await gate.acquire(priority)
            granted.append(name)
            gate.release()

        waiters = [asyncio.create_task(wait(name, priority)) for name, priority in
                   [("bark", AMBIENT), ("line-1", NORMAL), ("urgent", HIGH), ("line-2", NORMAL)]]
        await asyncio.sleep(0)
        assert gate.top_waiting == HIGH
        gate.release()
        await asyncio.gather(*waiters)
        return granted

    assert run(scenario()) == ["urgent", "line-1", "line-2", "bark"]


def test_ambient_turns_leave_the_reserved_place_to_the_others() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = SlotGate(2, reserve=1)
        await gate.acquire(AMBIENT)
        second_bark = asyncio.create_task(gate.acquire(AMBIENT))
        await asyncio.sleep(0)
        bark_waits = not second_bark.done()
        await asyncio.wait_for(gate.acquire(NORMAL), 1)  # the reserved place, at once
        gate.release()
        gate.release()
        await asyncio.wait_for(second_bark, 1)
        return bark_waits, second_bark.done()

    assert run(scenario()) == (True, True)


def test_a_waiter_cancelled_gives_nothing_up_and_takes_nothing() -> None:
    async def scenario() -> int | None:
        gate = SlotGate(1, reserve=0)
        await gate.acquire(NORMAL)
        waiter = asyncio.create_task(gate.acquire(HIGH))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        gate.release()
        await asyncio.wait_for(gate.acquire(AMBIENT), 1)  # the place is free again
        return gate.top_waiting

    assert run(scenario()) is None
