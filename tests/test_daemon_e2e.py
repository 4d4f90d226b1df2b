"""End to end: a real daemon process, real sockets, real llama.cpp and Piper."""

from __future__ import annotations

import asyncio

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Cancelled
from daemon.launcher import DaemonProcess
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn, check_cancel_after_first_block
from tests.support.scenarios import LINES, turns_at_once


def test_a_typed_line_comes_back_as_streamed_speech(daemon: DaemonProcess) -> None:
    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address) as client:
            assert {npc.npc_id for npc in client.welcome.npcs} >= {"blacksmith", "innkeeper"}
            return await client.run_turn("blacksmith", "Can you repair my sword?")

    result = run(scenario())
    done = assert_complete_turn(result)
    assert result.sample_rate_hz == 22050
    timings = done.timings
    stages = [timings.llm_first_token_ms, timings.first_chunk_ms, timings.tts_first_audio_ms,
              timings.first_block_ms, timings.last_block_ms]
    assert all(s is not None for s in stages) and stages == sorted(stages)
    # The persona was prefilled at start-up: only the new part of the prompt is evaluated.
    assert 0 < timings.prefill_tokens < timings.prompt_tokens
    assert timings.rtf is not None and timings.rtf > 0


def test_second_turn_reuses_the_conversation_kv_cache(daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(daemon.address) as client:
            first = await client.run_turn("innkeeper", "Do you have a room?")
            second = await client.run_turn("innkeeper", "How much is it?")
            return first, second

    first, second = run(scenario())
    a, b = assert_complete_turn(first), assert_complete_turn(second)
    # The second prompt holds the first turn: longer, yet most of it comes from the cache.
    assert b.timings.prompt_tokens > a.timings.prompt_tokens
    assert b.timings.prefill_tokens < b.timings.prompt_tokens - a.timings.prompt_tokens + 20


def test_client_may_ask_for_another_sample_rate(daemon: DaemonProcess) -> None:
    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address, sample_rate_hz=48000) as client:
            assert client.welcome.sample_rate_hz == 48000
            assert all(npc.sample_rate_hz == 48000 for npc in client.welcome.npcs)
            return await client.run_turn("oracle", "What does my future hold?")

    result = run(scenario())
    assert_complete_turn(result)
    assert result.sample_rate_hz == 48000


def test_cancel_mid_stream_stops_the_turn_and_the_next_turn_works(daemon: DaemonProcess) -> None:
    check_cancel_after_first_block(daemon.address, "oracle",
                             "Tell me the whole prophecy of the twin moons, in detail.",
                             "Thank you.")


def test_a_new_say_to_the_same_npc_barges_in(daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(daemon.address) as client:
            second: asyncio.Task[TurnResult] | None = None

            def barge_in(event: object, _result: TurnResult) -> None:
                nonlocal second
                if isinstance(event, DecodedAudio) and second is None:
                    second = asyncio.create_task(client.run_turn("blacksmith", "Never mind."))

            first = await client.run_turn("blacksmith", "Tell me a long story about your forge.",
                                          on_event=barge_in)
            assert second is not None
            return first, await second

    first, second = run(scenario())
    assert isinstance(first.terminal, Cancelled) and first.terminal.reason == "barge_in"
    assert_complete_turn(second)


def test_two_clients_talking_to_two_npcs_at_once(daemon: DaemonProcess) -> None:
    async def one(npc: str, line: str) -> TurnResult:
        async with BridgeClient(daemon.address, client_name=f"player-{npc}") as client:
            return await client.run_turn(npc, line)

    async def scenario() -> list[TurnResult]:
        return await asyncio.gather(one("blacksmith", "How much for a helmet?"),
                                    one("innkeeper", "Any gossip tonight?"))

    for result in run(scenario()):
        assert_complete_turn(result)


def test_three_npcs_answer_three_clients_at_once(daemon: DaemonProcess) -> None:
    for result in run(turns_at_once(daemon.address, LINES), timeout_s=240).values():
        assert_complete_turn(result)
