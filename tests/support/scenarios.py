"""Client scenarios several tests share."""

from __future__ import annotations

import asyncio

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio

LINES = {"blacksmith": "Can you fix my sword?", "innkeeper": "Is there a room free?",
         "oracle": "What does the future hold?"}
"""One line per packaged NPC."""


async def turns_at_once(address: str, lines: dict[str, str],
                        cancel: str | None = None) -> dict[str, TurnResult]:
    """One client per NPC, all saying their line at the same moment.

    `cancel` names an NPC whose turn is cancelled at its first block. Fails if any
    message of a turn arrives after its terminal event.
    """
    async def one(npc_id: str, line: str) -> TurnResult:
        async with BridgeClient(address, client_name=f"k-{npc_id}") as client:
            pending: list[asyncio.Future[None]] = []

            def on_event(event: object, result: TurnResult) -> None:
                if npc_id == cancel and isinstance(event, DecodedAudio) and not pending:
                    pending.append(asyncio.ensure_future(client.cancel(result.turn_id)))

            result = await client.run_turn(npc_id, line, on_event=on_event, timeout_s=120)
            await asyncio.sleep(0.5)  # anything of a cancelled turn would arrive now
            assert not [m for m in client.unrouted
                        if getattr(m, "turn_id", None) == result.turn_id]
            return result

    results = await asyncio.gather(*(one(npc, line) for npc, line in lines.items()))
    return dict(zip(lines, results, strict=True))
