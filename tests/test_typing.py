"""Prefill while the player types (`typing` messages): real llama.cpp, real daemon."""

from __future__ import annotations

import threading

import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Error, ErrorCode
from daemon.config import LlmConfig
from daemon.launcher import DaemonProcess
from daemon.llm.base import ReplyStats
from daemon.llm.conversation import Conversation, persona_messages
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.llm.pool import LlmPool
from daemon.server.typing import complete_words
from tests.support.aio import run
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
