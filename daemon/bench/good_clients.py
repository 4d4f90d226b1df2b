"""Good clients for the reliability suite: they keep talking and check every turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Done

NPC_IDS = ["blacksmith", "innkeeper", "oracle"]
LINES = ["Can you repair my sword?", "What news from the road?", "Is the inn full tonight?",
         "Tell me about the old temple.", "Any work for a traveller?"]


def turn_problems(result: TurnResult) -> list[str]:
    """What is wrong with a turn that should have completed (empty = nothing)."""
    done = result.terminal
    if not isinstance(done, Done):
        return [f"turn {result.turn_id} ended with {type(done).__name__}: {done}"]
    problems = []
    if result.seqs != list(range(len(result.seqs))):
        problems.append(f"turn {result.turn_id}: seq not contiguous")
    if done.block_count != len(result.seqs):
        problems.append(f"turn {result.turn_id}: {len(result.seqs)} blocks, done says "
                        f"{done.block_count}")
    if done.sample_count * 2 != len(result.pcm):
        problems.append(f"turn {result.turn_id}: {len(result.pcm) // 2} samples, done says "
                        f"{done.sample_count}")
    if not result.final_flags or not result.final_flags[-1]:
        problems.append(f"turn {result.turn_id}: last block not final")
    return problems


@dataclass
class GoodClients:
    """Clients that keep talking and check every turn."""

    address: str
    count: int = 2
    ttfa_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    turns: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run_turns(self, turns_each: int) -> list[float]:
        """Each client runs `turns_each` turns now; returns their TTFAs."""
        before = len(self.ttfa_ms)
        await asyncio.gather(*(self._client(index, turns_each) for index in range(self.count)))
        return self.ttfa_ms[before:]

    def start(self) -> None:
        """Keep talking in the background until `stop`."""
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._client(index, None))
                       for index in range(self.count)]

    async def stop(self) -> None:
        """Finish the turns in flight and stop."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, index: int, turns: int | None) -> None:
        async with BridgeClient(self.address, client_name=f"good-{index}") as client:
            done = 0
            while (turns is None and not self._stop.is_set()) or (turns is not None
                                                                  and done < turns):
                npc_id = NPC_IDS[(index + done) % len(NPC_IDS)]
                line = LINES[(index * 3 + done) % len(LINES)]
                try:
                    result = await client.run_turn(npc_id, line, timeout_s=60)
                except TimeoutError as exc:
                    self.problems.append(f"good client {index}: {exc}")
                    return
                self.problems += turn_problems(result)
                if result.ttfa_ms is not None:
                    self.ttfa_ms.append(result.ttfa_ms)
                self.turns += 1
                done += 1
                await asyncio.sleep(0.1)
            if client.unrouted:
                self.problems.append(f"good client {index}: {len(client.unrouted)} message(s) "
                                     "after their turn's terminal event")


async def barge_in_storm(address: str, turns: int) -> dict[str, int | list[str]]:
    """`say` + `cancel`, or `say` + a new `say` to the same NPC, `turns` times, fast."""
    problems: list[str] = []
    terminals = {"done": 0, "cancelled": 0, "error": 0}
    async with BridgeClient(address, client_name="storm") as client:
        ids = []
        for index in range(turns):
            turn_id = await client.say("innkeeper", LINES[index % len(LINES)])
            ids.append(turn_id)
            if index % 2:
                await client.cancel(turn_id)
        for turn_id in ids:
            seen = 0
            async for event in client.events(turn_id, timeout_s=60):
                header = event.header if isinstance(event, DecodedAudio) else event
                if type(header).__name__.lower() in terminals:
                    seen += 1
                    terminals[type(header).__name__.lower()] += 1
            if seen != 1:
                problems.append(f"storm turn {turn_id}: {seen} terminal events")
        await asyncio.sleep(0.5)
        stray = [m for m in client.unrouted if getattr(m, "turn_id", None) in set(ids)]
        if stray:
            problems.append(f"storm: {len(stray)} message(s) after a terminal event")
    return {"turns": turns, **terminals, "problems": problems}
