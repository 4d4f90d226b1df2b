"""Background prefill yields to a waiting turn, keeps what it evaluated, and forgets it
when its client has left."""

from __future__ import annotations

import asyncio
import threading

from daemon.config import LlmConfig
from daemon.config_file import load_config
from daemon.llm.base import ReplyStats
from daemon.llm.conversation import Conversation
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.llm.pool import LlmPool
from daemon.llm.tiers import TieredLlm
from daemon.metrics import Telemetry
from daemon.server.clients import Client
from daemon.server.memory import MemoryTrimmer
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turns import TurnManager


def long_conversation() -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are Brom, the village blacksmith."}]
    for index in range(6):
        messages.append({"role": "user", "content": f"Tell me about sword number {index}."})
        messages.append({"role": "assistant",
                         "content": "It was forged in the old style, folded many times, "
                                    "with a hilt of oak and a blade of good northern steel."})
    messages.append({"role": "user", "content": ""})
    return messages


def test_prefill_yields_then_resumes_from_what_it_kept() -> None:
    states = KvStateStore(64 * 2**20)
    context = LlamaContext(llm_gguf("smollm2"), LlmConfig(n_ctx=2048), states, "test")
    messages = long_conversation()
    total = len(context._tokens(context.format_prompt(messages)))
    assert total > 3 * 32

    asked = 0

    def waiting_turn() -> bool:  # a turn starts waiting after the first step
        nonlocal asked
        asked += 1
        return asked > 1

    partial = context.prefill("smith/1", messages, waiting_turn, step_tokens=32)
    assert 0 < partial < total
    saved = states.get("smith/1")
    assert saved is not None and saved.n_tokens == partial  # what was evaluated is kept
    assert saved.scores.shape[0] == 1  # one row of logits, not one per prompt token

    context.prefill("other", [{"role": "system", "content": "You are someone else."},
                              {"role": "user", "content": "Hi."}])  # switch conversations
    # Back on the first conversation: its saved state is restored and only the rest
    # is evaluated, in one go this time.
    assert context.prefill("smith/1", messages) == total


def test_a_state_longer_than_one_batch_restores() -> None:
    """A conversation past `n_batch` tokens is saved and restored like a short one.

    llama-cpp-python's `Llama.scores` holds n_batch rows of logits unless `logits_all`;
    a state saved with no row at all failed on restore ("could not broadcast ... (0,
    49152)"), and every turn of that NPC after its history passed n_batch tokens was lost.
    The context now keeps one row (`load_state` filled all n_batch rows, 48 MiB resident
    with n_batch 256), and a state saves that row.
    """
    states = KvStateStore(64 * 2**20)
    context = LlamaContext(llm_gguf("smollm2"), LlmConfig(n_ctx=2048, n_batch=32), states,
                           "test")
    messages = long_conversation()
    total = len(context._tokens(context.format_prompt(messages)))
    assert total > 2 * 32
    assert context.prefill("smith/1", messages) == total
    saved = states.get("smith/1")
    assert saved is not None and saved.n_tokens == total and saved.scores.shape[0] == 1

    context.prefill("other", [{"role": "system", "content": "You are someone else."},
                              {"role": "user", "content": "Hi."}])  # switch conversations
    messages[-1]["content"] = "And the seventh?"
    deltas: list[object] = []
    context.reply("smith/1", messages, deltas.append, threading.Event(), max_tokens=4)
    stats = deltas[-1]
    assert isinstance(stats, ReplyStats) and stats.reply_tokens > 0
    assert stats.prefill_tokens < 16  # the restored state held everything before the line
    assert context._llama.scores.shape == (1, context._llama.n_vocab())  # after 2 restores


def test_a_prefill_that_ends_after_its_client_left_keeps_no_state() -> None:
    """The prefill after a turn saves a state; if its client left meanwhile, it goes.

    Real llama.cpp (SmolLM2) behind the daemon's own pool and turn manager. The client
    here leaves before the prefill runs; in the daemon the prefill waits for a free
    context at ambient priority, so leaving first is the ordinary case under load.
    A client still connected keeps its state: that case shows the check can fail.
    With no turn running, the end of each prefill asks for a trim of the heap.
    """

    config = load_config(None)
    system, user, assistant = long_conversation()[:3]
    conversation = Conversation(system["content"], config.llm.history_turns)
    conversation.record(user["content"], assistant["content"])

    async def scenario() -> tuple[bool, bool, bool]:
        pool = await LlmPool.load(llm_gguf("smollm2"), config.llm, name="test")
        trimmer = MemoryTrimmer(settle_s=60.0)  # stays pending: the request is what counts
        try:
            telemetry = Telemetry()
            manager = TurnManager(config, TieredLlm(pool, config.llm), {}, Sender(telemetry),
                                  BackgroundTasks(), telemetry, trimmer)
            left, stayed = Client(b"\x00left", 2**20), Client(b"\x00stayed", 2**20)
            left.gone = True
            await manager.after_turn(left, "blacksmith/left", conversation, "fast", True)
            await manager.after_turn(stayed, "blacksmith/stayed", conversation, "fast", True)
            return (pool._states.get("blacksmith/left") is not None,
                    pool._states.get("blacksmith/stayed") is not None,
                    trimmer.pending or trimmer.trims > 0)
        finally:
            trimmer.close()
            pool.close()

    kept_for_the_one_who_left, kept_for_the_one_who_stayed, trimmed = asyncio.run(scenario())
    assert kept_for_the_one_who_stayed
    assert not kept_for_the_one_who_left
    assert trimmed or not MemoryTrimmer().available


def test_q8_0_keys_make_smaller_states_that_restore() -> None:
    """`cache_type_k = "q8_0"`: keys at 34 bytes per 32 values instead of 64, values F16.

    The saved state of the same conversation shrinks by that ratio (KV cells are most of
    it), and a turn after switching NPCs restores it and replies.
    """
    messages = long_conversation()
    sizes = {}
    for cache_type in ("f16", "q8_0"):
        states = KvStateStore(64 * 2**20)
        context = LlamaContext(llm_gguf("smollm2"), LlmConfig(n_ctx=2048,
                                                              cache_type_k=cache_type),
                               states, "test")
        context.prefill("smith/1", messages)
        saved = states.get("smith/1")
        assert saved is not None
        sizes[cache_type] = saved.llama_state_size
        context.prefill("other", [{"role": "system", "content": "You are someone else."},
                                  {"role": "user", "content": "Hi."}])
        messages[-1]["content"] = "And the seventh?"
        deltas: list[object] = []
        context.reply("smith/1", messages, deltas.append, threading.Event(), max_tokens=4)
        stats = deltas[-1]
        assert isinstance(stats, ReplyStats) and stats.reply_tokens > 0
        assert stats.prefill_tokens < 16  # restored, not evaluated again
        messages[-1]["content"] = ""
    expected = (34 / 32 + 2) / 4  # (q8_0 keys + F16 values) / (F16 keys + F16 values)
    assert abs(sizes["q8_0"] / sizes["f16"] - expected) < 0.02
