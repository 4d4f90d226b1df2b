"""What a finished turn promises, checked on what a client received."""

from __future__ import annotations

import asyncio

import numpy as np

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Cancelled, Done
from tests.support.aio import run


def pcm_array(result: TurnResult) -> np.ndarray:
    """The turn's audio as int16 samples."""
    return np.frombuffer(bytes(result.pcm), dtype="<i2")


def assert_complete_turn(result: TurnResult, min_rms: float = 300.0) -> Done:
    """Everything a `done` turn promises, checked on what the client received.

    `min_rms`: the audio's RMS (int16 scale) must exceed it; Piper speech is well above
    300, a random-weight test model may be quieter.
    """
    done = result.terminal
    assert isinstance(done, Done), done
    assert result.seqs == list(range(len(result.seqs))), "seq numbers must be contiguous"
    assert done.block_count == len(result.seqs)
    assert done.sample_count == sum(samples for _, samples in result.block_arrivals)
    assert len(result.pcm) == 2 * done.sample_count
    assert result.final_flags[-1] is True and not any(result.final_flags[:-1])
    audio = pcm_array(result).astype(np.float64)
    assert audio.size > result.sample_rate_hz * 0.3, "expected some speech"
    rms = np.sqrt(np.mean(audio**2))
    assert rms > min_rms, f"audio is (near) silence: RMS {rms:.1f}"
    assert result.subtitles, "subtitles must precede the audio"
    assert " ".join(result.subtitles) == done.reply_text
    return done


def check_cancel_after_first_block(address: str, npc_id: str, line: str, next_line: str,
                                   timeout_s: float = 120.0,
                                   min_rms: float = 300.0) -> TurnResult:
    """Cancel a turn at its first block; check it is over and `npc_id` still talks.

    Returns:
      The cancelled turn's result.
    """
    async def scenario() -> tuple[TurnResult, BridgeClient, TurnResult]:
        async with BridgeClient(address) as client:
            pending: list[asyncio.Future[None]] = []

            def on_event(event: object, result: TurnResult) -> None:
                if isinstance(event, DecodedAudio) and not pending:
                    pending.append(asyncio.ensure_future(client.cancel(result.turn_id)))

            result = await client.run_turn(npc_id, line, on_event=on_event)
            await asyncio.sleep(1.0)  # anything of the turn still in flight would arrive now
            after = await client.run_turn(npc_id, next_line)
            return result, client, after

    result, client, after = run(scenario(), timeout_s)
    assert isinstance(result.terminal, Cancelled) and result.terminal.reason == "cancel"
    assert result.terminal.block_count <= len(result.seqs)
    assert result.seqs == list(range(len(result.seqs)))
    stray = [m for m in client.unrouted if getattr(m, "turn_id", None) == result.turn_id]
    assert stray == [], f"messages of the cancelled turn after `cancelled`: {stray}"
    assert_complete_turn(after, min_rms)
    return result
