"""The LLM stage on real llama.cpp: tiny random-weight qwen2 GGUFs, one and two tiers."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from daemon.config import LlmConfig
from daemon.llm.base import ReplyDelta, ReplyStarted, ReplyStats, TierHandoff
from daemon.llm.pool import LlmPool
from daemon.llm.tiers import OpenerCutter, TieredLlm
from daemon.pipeline.text import rules_for
from daemon.priorities import AMBIENT, HIGH
from daemon.testing.random_gguf import TINY, write_qwen2_gguf
from tests.support.aio import run, wait_until

pytest.importorskip("gguf")

PERSONA = "You are Brom, the village blacksmith."
MESSAGES = [{"role": "system", "content": PERSONA},
            {"role": "user", "content": "Can you fix my sword?"}]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny qwen2 GGUFs with different weights: (fast, narrative)."""
    folder = tmp_path_factory.mktemp("gguf")
    return (write_qwen2_gguf(folder / "fast.gguf", TINY, seed=1),
            write_qwen2_gguf(folder / "narrative.gguf", TINY, seed=2))


def config(**changes: object) -> LlmConfig:
    settings: dict[str, object] = {"n_ctx": 1024, "n_threads": 1, "n_threads_batch": 1,
                                   "seed": 7, "max_reply_tokens": 24, "opener_max_tokens": 12}
    return LlmConfig(**(settings | changes))  # type: ignore[arg-type]


async def collect(stream) -> list[object]:
    return [item async for item in stream]


def texts(items: list[object]) -> str:
    return "".join(item.text for item in items if isinstance(item, ReplyDelta))


# --------------------------------------------------------------------------- one tier


def test_a_tiny_qwen2_gguf_streams_tokens_through_the_pool(tiny_models: tuple[Path, Path]
                                                          ) -> None:
    async def scenario() -> list[object]:
        pool = await LlmPool.load(tiny_models[0], config())
        try:
            return await collect(pool.reply("npc/1", MESSAGES, threading.Event()))
        finally:
            pool.close()

    items = run(scenario())
    assert isinstance(items[0], ReplyStarted)
    deltas = [item for item in items if isinstance(item, ReplyDelta)]
    assert len(deltas) > 3, "tokens arrive one by one"
    stats = items[-1]
    assert isinstance(stats, ReplyStats)
    # Random weights practically never end the turn: the reply runs to its cap.
    assert stats.finish_reason == "length" and stats.reply_tokens == 24
    assert stats.prompt.startswith("<|im_start|>system\n" + PERSONA)
    assert stats.prompt.endswith("<|im_start|>assistant\n")
    assert 0 < stats.prefill_tokens <= stats.prompt_tokens


class StopSeenAfter(threading.Event):
    """A stop event that the engine sees set from its (`checks` + 1)-th look on.

    The engine looks once per streamed piece, before handing it on, so this pins the
    moment "the engine sees the stop" to an exact point in its own loop, whatever the
    machine's speed: the test then checks what the code guarantees from that point.
    """

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._checks_left = checks
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        if self._checks_left == 0:
            return True
        self._checks_left -= 1
        return super().is_set()


def test_no_token_is_generated_after_the_engine_sees_the_stop_and_the_context_stays_usable(
        tiny_models: tuple[Path, Path]) -> None:
    async def scenario() -> tuple[list[object], list[object], int]:
        pool = await LlmPool.load(tiny_models[0], config(max_reply_tokens=200))
        stop = StopSeenAfter(3)
        try:
            stopped = await collect(pool.reply("npc/1", MESSAGES, stop))
            after = await collect(pool.reply("npc/1", MESSAGES, threading.Event()))
            return stopped, after, stop.looks
        finally:
            pool.close()

    stopped, after, looks = run(scenario())
    stats = stopped[-1]
    assert isinstance(stats, ReplyStats) and stats.finish_reason == "cancelled"
    assert looks == 4, "the engine stops looking (and generating) once it sees the stop"
    deltas = [i for i in stopped if isinstance(i, ReplyDelta)]
    assert len(deltas) == 3, "nothing is emitted after the stop is seen"
    final = after[-1]
    assert isinstance(final, ReplyStats) and final.finish_reason == "length"
    # The same conversation again: its prompt comes from the KV cache.
    assert final.prefill_tokens < final.prompt_tokens


def test_a_corrupt_gguf_fails_to_load_with_an_error_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "narrative.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="narrative.gguf"):
        run(LlmPool.load(corrupt, config()))


# --------------------------------------------------------------------------- the opener


def feed_all(cutter: OpenerCutter, deltas: list[str]) -> str:
    return "".join(cutter.feed(delta) for delta in deltas)


def test_the_opener_ends_at_the_first_sentence_boundary() -> None:
    cutter = OpenerCutter(max_tokens=30)
    spoken = feed_all(cutter, ["Ah", ",", " Mr", ". Smith", "'s", " sword", ".", " I", " can"])
    assert cutter.done and cutter.opener == "Ah, Mr. Smith's sword."
    assert spoken == cutter.opener, "what is spoken is exactly the opener"
    assert cutter.feed(" more") == "" and cutter.finish(end_of_turn=True) == ""


def test_the_opener_ends_at_its_token_cap_on_a_whole_word() -> None:
    cutter = OpenerCutter(max_tokens=4)
    spoken = feed_all(cutter, [" Well", ",", " I", " sup"])
    assert cutter.done and cutter.opener == "Well, I"
    assert spoken.rstrip() == " Well, I", "the possibly cut word is dropped, never spoken"


def test_the_opener_follows_the_reply_language_abbreviations() -> None:
    words = ["A", " Sra", ". Costa", " chegou", ".", " Depois"]
    portuguese = OpenerCutter(max_tokens=30, rules=rules_for("pt-BR"))
    assert feed_all(portuguese, words) == "A Sra. Costa chegou."
    english = OpenerCutter(max_tokens=30)  # "Sra." is no English abbreviation
    assert feed_all(english, words) == "A Sra."


def test_an_opener_the_model_ends_itself_is_kept_whole() -> None:
    cutter = OpenerCutter(max_tokens=30)
    spoken = feed_all(cutter, ["Yes", " indeed"])
    spoken += cutter.finish(end_of_turn=True)
    assert spoken == "Yes indeed" == cutter.opener


# --------------------------------------------------------------------------- two tiers


async def tiered(paths: tuple[Path, Path], fast: LlmConfig | None = None,
                 narrative: LlmConfig | None = None) -> TieredLlm:
    fast, narrative = fast or config(), narrative or config(seed=11)
    return TieredLlm(await LlmPool.load(paths[0], fast), fast,
                     await LlmPool.load(paths[1], narrative, name="llm-narrative"), narrative)


def split_at_handoff(items: list[object]) -> tuple[list[object], TierHandoff, list[object]]:
    handoffs = [i for i, item in enumerate(items) if isinstance(item, TierHandoff)]
    assert len(handoffs) == 1, items
    index = handoffs[0]
    return items[:index], items[index], items[index + 1:]  # type: ignore[return-value]


@pytest.mark.parametrize("early_start", [True, False])
def test_two_tiers_hand_off_in_order_and_the_narrative_continues_the_opener(
        tiny_models: tuple[Path, Path], early_start: bool) -> None:
    async def scenario() -> tuple[list[object], list[object]]:
        llm = await tiered(tiny_models,
                           narrative=config(seed=11, narrative_early_start=early_start))
        try:
            first = await collect(llm.reply("npc/1", MESSAGES, threading.Event(),
                                            tiers="both"))
            second_messages = [*MESSAGES, {"role": "assistant", "content": "Aye."},
                               {"role": "user", "content": "How much?"}]
            second = await collect(llm.reply("npc/1", second_messages, threading.Event(),
                                             tiers="both"))
            return first, second
        finally:
            llm.close()

    first, second = run(scenario())
    for items in (first, second):
        opener_items, handoff, continuation = split_at_handoff(items)
        assert isinstance(opener_items[0], ReplyStarted)
        opener_stats = [i for i in opener_items if isinstance(i, ReplyStats)]
        assert len(opener_stats) == 1 and opener_stats[0].finish_reason in ("cancelled", "length")
        assert texts(opener_items).strip() == handoff.opener, "the opener is what was spoken"
        assert handoff.opener, "the tiny model writes words"
        assert texts(continuation), "the narrative tier continues"
        stats = continuation[-1]
        assert isinstance(stats, ReplyStats) and stats.finish_reason == "length"
        # Assistant prefill: the narrative's prompt ends inside the assistant turn, with
        # the opener and no end-of-turn token.
        assert stats.prompt.endswith("<|im_start|>user\n" + items_user(items) +
                                     "<|im_end|>\n<|im_start|>assistant\n" + handoff.opener)
    # Second turn: the narrative tier's own KV cache holds the earlier conversation.
    narrative_stats = split_at_handoff(second)[2][-1]
    assert narrative_stats.prefill_tokens < narrative_stats.prompt_tokens / 2


def items_user(items: list[object]) -> str:
    prompt = [i for i in items if isinstance(i, ReplyStats)][-1].prompt
    return prompt.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]


def test_a_failing_narrative_tier_leaves_a_complete_opener(
        tiny_models: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    # The persona alone overflows the narrative model's context: llama.cpp raises in
    # the narrative tier, after the fast tier has started speaking.
    long_persona = PERSONA + " Remember: " + "x" * 400
    messages = [{"role": "system", "content": long_persona}, MESSAGES[1]]

    async def scenario() -> list[object]:
        llm = await tiered(tiny_models, narrative=config(n_ctx=256))
        try:
            return await collect(llm.reply("npc/1", messages, threading.Event(), tiers="both"))
        finally:
            llm.close()

    with caplog.at_level(logging.WARNING, logger="daemon.llm.tiers"):
        items = run(scenario())
    opener_items, handoff, continuation = split_at_handoff(items)
    assert handoff.opener and texts(opener_items).strip() == handoff.opener
    assert not texts(continuation), "no text after the hand-off, and no exception"
    assert "narrative tier failed" in caplog.text


def test_a_slow_narrative_tier_is_given_up_after_its_timeout(
        tiny_models: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[object]:
        llm = await tiered(tiny_models, narrative=config(narrative_timeout_ms=1, n_ctx=2048))
        busy_stop = threading.Event()
        # Another conversation holds the narrative model's only context for a while.
        busy = asyncio.create_task(collect(llm._narrative.reply(
            "npc/2", MESSAGES, busy_stop, max_tokens=1500)))
        await asyncio.sleep(0.05)
        try:
            return await collect(llm.reply("npc/1", MESSAGES, threading.Event(), tiers="both"))
        finally:
            busy_stop.set()
            await busy
            llm.close()

    with caplog.at_level(logging.WARNING, logger="daemon.llm.tiers"):
        items = run(scenario())
    _, handoff, continuation = split_at_handoff(items)
    assert handoff.opener
    assert not texts(continuation)
    assert "no text within 1 ms" in caplog.text


def test_a_stop_during_the_opener_ends_both_tiers(tiny_models: tuple[Path, Path]) -> None:
    async def scenario() -> tuple[list[object], list[object]]:
        llm = await tiered(tiny_models)
        stop = threading.Event()
        items: list[object] = []
        try:
            async for item in llm.reply("npc/1", MESSAGES, stop, tiers="both"):
                items.append(item)
                if isinstance(item, ReplyDelta):
                    stop.set()
            # Both pools are free again: a new turn runs to the end.
            after = await collect(llm.reply("npc/1", MESSAGES, threading.Event(),
                                            tiers="both"))
            return items, after
        finally:
            llm.close()

    items, after = run(scenario())
    assert not any(isinstance(item, TierHandoff) for item in items)
    split_at_handoff(after)


# --------------------------------------------------------------------------- priorities


class HeldOpen(threading.Event):
    """A stop event that is never set, but holds the engine at its `at`-th look until
    `release` is set: the test then knows exactly where the engine stands."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self._at = at
        self.looks = 0
        self.reached = threading.Event()
        self.release = threading.Event()

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks == self._at:
            self.reached.set()
            self.release.wait(30)
        return False


def test_an_ambient_reply_gives_its_context_to_a_waiting_urgent_turn_and_resumes(
        tiny_models: tuple[Path, Path]) -> None:
    async def scenario() -> list[tuple[str, str]]:
        pool = await LlmPool.load(tiny_models[0], config(max_reply_tokens=30, instances=1))
        order: list[tuple[str, str]] = []

        async def consume(who: str, stream: object) -> None:
            async for item in stream:  # type: ignore[attr-defined]
                order.append((who, type(item).__name__))

        held = HeldOpen(at=5)
        try:
            ambient = asyncio.create_task(consume("ambient", pool.reply(
                "npc/a", MESSAGES, held, priority=AMBIENT)))
            await asyncio.to_thread(held.reached.wait, 30)  # 4 tokens out, 5th look now
            urgent = asyncio.create_task(consume("high", pool.reply(
                "npc/b", MESSAGES, threading.Event(), priority=HIGH)))
            await wait_until(lambda: pool.waiting_priority == HIGH)
            held.release.set()
            await asyncio.gather(ambient, urgent)
            return order
        finally:
            pool.close()

    order = run(scenario())
    ambient_done = order.index(("ambient", "ReplyStats"))
    assert order.index(("high", "ReplyStarted")) < ambient_done, "the urgent turn went first"
    assert order.index(("high", "ReplyStats")) < ambient_done
    ambient_deltas = [i for i, (who, kind) in enumerate(order)
                      if who == "ambient" and kind == "ReplyDelta"]
    assert ambient_deltas[-1] > order.index(("high", "ReplyStats")), "and the ambient resumed"
    assert [kind for who, kind in order if who == "ambient"].count("ReplyStarted") == 1


def test_an_urgent_turn_never_yields_to_an_ambient_one(tiny_models: tuple[Path, Path]) -> None:
    async def scenario() -> list[str]:
        pool = await LlmPool.load(tiny_models[0], config(max_reply_tokens=20, instances=1))
        order: list[str] = []
        held = HeldOpen(at=3)
        try:
            async def consume(who: str, stream: object) -> None:
                async for item in stream:  # type: ignore[attr-defined]
                    if isinstance(item, ReplyStats):
                        order.append(who)

            urgent = asyncio.create_task(consume("high", pool.reply(
                "npc/b", MESSAGES, held, priority=HIGH)))
            await asyncio.to_thread(held.reached.wait, 30)
            ambient = asyncio.create_task(consume("ambient", pool.reply(
                "npc/a", MESSAGES, threading.Event(), priority=AMBIENT)))
            await wait_until(lambda: pool.waiting_priority == AMBIENT)
            held.release.set()
            await asyncio.gather(urgent, ambient)
            return order
        finally:
            pool.close()

    assert run(scenario()) == ["high", "ambient"]
