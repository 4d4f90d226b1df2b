"""A turn whose prompt lost its oldest history keeps the cached turns after the cut
(daemon.llm.kv_shift), on the bundled SmolLM2 in real llama.cpp."""

from __future__ import annotations

import logging
import threading

import llama_cpp
import pytest

from daemon.config import LlmConfig
from daemon.llm.base import ChatMessage, ReplyStats
from daemon.llm.gguf import llm_gguf
from daemon.llm.kv_shift import MIN_DROPPED_TOKENS, MIN_KEPT_TOKENS, Cut, find_cut
from daemon.llm.llama import KvStateStore, LlamaContext
from tests.test_llm_prefill import long_conversation

PERSONA = list(range(1000, 1020))
DROPPED = list(range(2000, 2000 + MIN_DROPPED_TOKENS + 8))
KEPT = list(range(3000, 3000 + MIN_KEPT_TOKENS + 30))


def test_a_prompt_that_extends_the_cache_needs_no_cut() -> None:
    cached = PERSONA + DROPPED + KEPT
    assert find_cut(cached, cached + [7, 8, 9]) is None
    assert find_cut(cached, cached) is None


def test_the_dropped_span_is_found_and_a_diverging_tail_left_out() -> None:
    cached = PERSONA + DROPPED + KEPT + [5, 5, 5]  # the old reply's last tokens
    prompt = PERSONA + KEPT + [6, 6]  # its re-rendered end, then the new line
    assert find_cut(cached, prompt) == Cut(start=len(PERSONA),
                                           end=len(PERSONA) + len(DROPPED), kept=len(KEPT))


def test_small_differences_are_evaluated_afresh() -> None:
    short_span = PERSONA + DROPPED[:MIN_DROPPED_TOKENS - 1] + KEPT
    assert find_cut(short_span, PERSONA + KEPT + [6]) is None
    short_run = PERSONA + DROPPED + KEPT[:MIN_KEPT_TOKENS - 1]
    assert find_cut(short_run, PERSONA + KEPT[:MIN_KEPT_TOKENS - 1] + [6]) is None


def test_the_longest_matching_run_wins() -> None:
    # The first token of the kept run also appears earlier, followed by something else.
    decoy = [KEPT[0]] + list(range(4000, 4000 + MIN_KEPT_TOKENS))
    cached = PERSONA + DROPPED + decoy + DROPPED + KEPT
    cut = find_cut(cached, PERSONA + KEPT + [6])
    assert cut is not None and cut.kept == len(KEPT)
    assert cut.end == len(PERSONA + DROPPED + decoy + DROPPED)


@pytest.fixture(scope="module")
def context() -> LlamaContext:
    return LlamaContext(llm_gguf("smollm2"), LlmConfig(n_ctx=1024, seed=3),
                        KvStateStore(64 * 2**20), "test")


def _reply(context: LlamaContext, key: str, messages: list[ChatMessage]) -> ReplyStats:
    events: list[object] = []
    context.reply(key, messages, events.append, threading.Event(), max_tokens=8)
    stats = events[-1]
    assert isinstance(stats, ReplyStats) and stats.finish_reason in ("stop", "length")
    return stats


def _answered(context: LlamaContext, key: str) -> list[ChatMessage]:
    """Six exchanges and a seventh line, answered: the cache holds all of it."""
    messages = long_conversation()
    messages[-1]["content"] = "Hello there."
    _reply(context, key, messages)
    return messages


def _shortened(messages: list[ChatMessage], line: str) -> list[ChatMessage]:
    """The persona, the last two exchanges and a new line: four turns dropped."""
    return [messages[0], *messages[-5:-1], {"role": "user", "content": line}]


def test_a_turn_after_dropped_history_evaluates_only_its_line(
        context: LlamaContext, caplog: pytest.LogCaptureFixture) -> None:
    shortened = _shortened(_answered(context, "smith"), "And which one would you sell me?")
    tokens = context._tokens(context.format_prompt(shortened))
    kept_tokens = len(context._tokens(context.format_prompt(shortened[:-1])))

    with caplog.at_level(logging.INFO, logger="daemon.llm.llama"):
        stats = _reply(context, "smith", shortened)

    assert "cached tokens of dropped history removed" in caplog.text
    # Its line and the markup around it; without the cut, every token after the persona.
    assert 0 < stats.prefill_tokens <= len(tokens) - kept_tokens + 4, stats
    assert stats.reply_tokens > 0
    llama = context._llama
    assert llama.input_ids[:len(tokens)].tolist() == tokens  # what the cache holds
    # The kept cells were moved to close the gap: positions run 0..n-1, no hole.
    memory = llama_cpp.llama_get_memory(llama.ctx)
    assert llama_cpp.llama_memory_seq_pos_min(memory, 0) == 0
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == llama.n_tokens - 1


def test_a_prefill_evaluates_the_shortened_prompt_exactly(
        context: LlamaContext, caplog: pytest.LogCaptureFixture) -> None:
    shortened = _shortened(_answered(context, "smith/2"), "")
    with caplog.at_level(logging.INFO, logger="daemon.llm.llama"):
        done = context.prefill("smith/2", shortened)
    assert done == len(context._tokens(context.format_prompt(shortened)))
    assert "dropped history removed" not in caplog.text


def test_a_prefill_that_must_yield_early_leaves_the_cut_cache_to_the_turn(
        context: LlamaContext, caplog: pytest.LogCaptureFixture) -> None:
    """The prefill after a turn starts evaluating the shortened prompt exactly; a turn
    comes after its first step. It leaves the cache it started from with the dropped
    turns cut out, not 16 tokens of the new prompt, so the turn evaluates its line only."""
    shortened = _shortened(_answered(context, "smith/3"), "")
    asked = 0

    def turn_waiting() -> bool:  # from the second check on
        nonlocal asked
        asked += 1
        return asked > 1

    with caplog.at_level(logging.INFO, logger="daemon.llm.llama"):
        done = context.prefill("smith/3", shortened, turn_waiting, step_tokens=16)
    assert "cut out of the cache" in caplog.text
    kept = len(context._tokens(context.format_prompt(shortened[:-1])))
    assert done >= kept - 4  # the persona and both kept exchanges, up to their markup

    context.prefill("other", [{"role": "system", "content": "You are someone else."},
                              {"role": "user", "content": "Hi."}])  # the state was saved
    shortened[-1]["content"] = "And which one would you sell me?"
    stats = _reply(context, "smith/3", shortened)
    assert stats.prefill_tokens <= len(context._tokens(context.format_prompt(shortened))) \
        - kept + 4, stats
