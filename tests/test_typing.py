"""Typing ahead (`typing` messages): the prefill, and the reply started on a typed sentence.

Real llama.cpp, real daemon."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Cancelled, Done, Error, ErrorCode
from daemon.config import LlmConfig
from daemon.launcher import DaemonProcess
from daemon.llm.base import ReplyStats
from daemon.llm.conversation import Conversation, persona_messages
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.llm.pool import LlmPool
from daemon.pipeline.text import ends_sentence
from daemon.server.typing import complete_words
from tests.support.aio import run, wait_until
from tests.support.assertions import assert_complete_turn

PERSONA = "You are Brom, the village blacksmith. Answer in one short sentence."
TYPED = "Can you repair my sword before nightf"
LINE = "Can you repair my sword before nightfall?"


@pytest.mark.parametrize(("typed", "words"), [
    ("Can you repair my sw", "Can you repair my"),
    ("Can you repair my ", "Can you repair my"),
    ("  Can you", "Can"),
    ("Can", ""),
    ("", ""),
    ("line one\nline two", "line one\nline"),
    ("line one\ntw", "line one"),
])
def test_only_complete_words_are_prefilled(typed: str, words: str) -> None:
    assert complete_words(typed) == words


def test_the_typed_prefix_is_a_prefix_of_the_finished_prompt() -> None:
    context = LlamaContext(llm_gguf("smollm2"), LlmConfig(n_ctx=1024),
                           KvStateStore(2**26), "test")
    conversation = Conversation(PERSONA, 4)
    conversation.record("Hello.", "Well met, traveller.")
    typed = context.format_prompt_prefix(conversation.messages_for(complete_words(TYPED)))
    finished = context.format_prompt(conversation.messages_for(LINE))
    assert typed.endswith("before") and finished.startswith(typed)
    # and so are their tokens: the cache of the typed part serves the finished line
    typed_tokens = context._tokens(typed)
    assert context._tokens(finished)[: len(typed_tokens)] == typed_tokens


def test_a_line_prefilled_while_typed_leaves_only_its_last_words_to_evaluate() -> None:
    async def scenario() -> tuple[ReplyStats, ReplyStats]:
        pool = await LlmPool.load(llm_gguf("smollm2"),
                                  LlmConfig(n_ctx=1024, max_reply_tokens=8, seed=1))
        try:
            await pool.prefill({"smith": persona_messages(PERSONA)})
            conversation = Conversation(PERSONA, 4)
            await pool.prefill_typing("smith/typed", conversation.messages_for(
                complete_words(TYPED)), "smith")
            stats = []
            for key in ("smith/typed", "smith/untyped"):
                items = [item async for item in pool.reply(
                    key, conversation.messages_for(LINE), threading.Event(),
                    persona_key="smith")]
                stats.append(next(i for i in items if isinstance(i, ReplyStats)))
            return stats[0], stats[1]
        finally:
            pool.close()

    typed, untyped = run(scenario())
    assert typed.prompt_tokens == untyped.prompt_tokens
    # Without typing: the whole line and the end-of-turn markup after the persona's
    # cached prefix. With it: " nightfall?" and the markup only.
    assert untyped.prefill_tokens >= typed.prefill_tokens + 6
    assert typed.prefill_tokens <= 10, typed


def test_typing_errors_name_what_was_wrong_and_a_typed_line_is_then_answered(
        daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[list[Error], TurnResult]:
        async with BridgeClient(daemon.address) as client:
            limit = client.welcome.limits.max_text_chars
            await client.typing("nobody", "Hello th")
            await client.typing("blacksmith", "x" * (limit + 1))
            errors = [await client.next_control(), await client.next_control()]
            for partial in ("Can", "Can you rep", "Can you repair my", TYPED):
                await client.typing("blacksmith", partial)
            return errors, await client.run_turn("blacksmith", LINE)

    errors, result = run(scenario())
    assert [e.code for e in errors] == [ErrorCode.UNKNOWN_NPC, ErrorCode.TEXT_TOO_LONG]
    assert all(isinstance(e, Error) and e.turn_id is None for e in errors)
    assert "nobody" in errors[0].message
    assert_complete_turn(result)


@pytest.mark.parametrize(("text", "language", "ends"), [
    ("Can you repair my sword?", "en", True),
    ("Can you repair my sword?  ", "en", True),
    ('He said "go away."', "en", True),
    ("Well...", "en", True),
    ("Can you repair my sword", "en", False),
    ("Ask Dr.", "en", False),
    ("Ask J.", "en", False),
    ("¿Dónde está la herrería?", "es", True),
    ("鍛冶屋はどこですか。", "ja", True),
    ("", "en", False),
])
def test_a_typed_line_ends_a_sentence_only_with_a_real_sentence_mark(
        text: str, language: str, ends: bool) -> None:
    assert ends_sentence(text, language) is ends


OTHER = "Can you repair my shield?"


def test_a_typed_sentence_is_answered_before_its_say_and_released_by_it(
        daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, list[object]]:
        async with BridgeClient(daemon.address) as client:
            await client.typing("blacksmith", LINE)
            # Any wait passes; one lets the reply get under way before the say.
            await asyncio.sleep(0.3)
            result = await client.run_turn("blacksmith", LINE)
            return result, list(client.unrouted)

    result, unrouted = run(scenario())
    done = assert_complete_turn(result)
    # Nothing of the reply reached the client before its say, under any other id.
    assert not unrouted, unrouted
    assert done.turn_id == result.turn_id
    timings = done.timings
    assert timings.speculative and timings.speculative_lead_ms is not None
    assert timings.speculative_lead_ms > 0
    # Times count from the say: none is negative, and they stay in order.
    assert timings.first_block_ms is not None and timings.first_block_ms >= 0
    assert 0 <= (timings.llm_first_token_ms or 0) <= timings.first_block_ms


def test_a_changed_or_different_line_drops_the_reply_started_on_the_typed_one(
        daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult, list[object]]:
        async with BridgeClient(daemon.address) as client:
            await client.typing("blacksmith", LINE)
            await client.typing("blacksmith", OTHER)  # edited: a new reply starts
            edited = await client.run_turn("blacksmith", OTHER)
            await client.typing("blacksmith", LINE)
            sent_instead = await client.run_turn("blacksmith", "Hello there.")
            return edited, sent_instead, list(client.unrouted)

    log_before = len(daemon.log_text())
    edited, sent_instead, unrouted = run(scenario())
    assert not unrouted, unrouted
    assert assert_complete_turn(edited).timings.speculative
    assert not assert_complete_turn(sent_instead).timings.speculative
    log = daemon.log_text()[log_before:]
    assert log.count("the reply started on a typed line was dropped (the line changed)") == 1
    assert "speculative turn" in log and "dropped" in log


def test_a_say_with_another_profile_does_not_take_the_reply_typed_ahead(
        daemon: DaemonProcess) -> None:
    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address) as client:
            await client.typing("blacksmith", LINE)
            return await client.run_turn("blacksmith", LINE, profile="cinematic")

    done = assert_complete_turn(run(scenario()))
    assert done.profile == "cinematic" and not done.timings.speculative


def test_typing_a_sentence_while_the_npc_speaks_does_not_interrupt_it(
        daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(daemon.address) as client:
            typed = False

            def type_at_first_block(event: object, _result: TurnResult) -> None:
                nonlocal typed
                if isinstance(event, DecodedAudio) and not typed:
                    typed = True
                    asyncio.get_running_loop().create_task(
                        client.typing("blacksmith", OTHER))

            speaking = await client.run_turn("blacksmith", "Tell me about your forge.",
                                             on_event=type_at_first_block)
            assert typed
            return speaking, await client.run_turn("blacksmith", OTHER)

    speaking, said = run(scenario())
    assert not isinstance(speaking.terminal, Cancelled)
    assert isinstance(speaking.terminal, Done)
    assert not assert_complete_turn(said).timings.speculative


def test_a_reply_typed_ahead_and_never_said_is_dropped_after_ten_seconds(
        daemon: DaemonProcess) -> None:
    """The player typed a sentence and walked away: its reply goes (it holds a turn of
    the client's limit); the line said later starts a reply of its own."""
    expired = "the reply started on a typed line was dropped (no say within 10 s)"

    async def scenario() -> tuple[TurnResult, list[object]]:
        async with BridgeClient(daemon.address) as client:
            log_before = len(daemon.log_text())
            await client.typing("innkeeper", "Do you have a room for the night?")
            await wait_until(lambda: expired in daemon.log_text()[log_before:],
                             timeout_s=60)
            result = await client.run_turn("innkeeper", "Do you have a room for the night?")
            return result, list(client.unrouted)

    result, unrouted = run(scenario(), timeout_s=120)
    assert not unrouted, unrouted
    assert not assert_complete_turn(result).timings.speculative
