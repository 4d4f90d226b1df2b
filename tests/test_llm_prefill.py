"""Background prefill yields to a waiting turn and keeps what it evaluated."""

from __future__ import annotations

from daemon.config import LlmConfig
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.models import resolve_llm


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
    context = LlamaContext(resolve_llm("smollm2"), LlmConfig(n_ctx=2048), states, "test")
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
    assert saved.scores.shape[0] <= 1  # one row of logits, not one per prompt token

    context.prefill("other", [{"role": "system", "content": "You are someone else."},
                              {"role": "user", "content": "Hi."}])  # switch conversations
    # Back on the first conversation: its saved state is restored and only the rest
    # is evaluated, in one go this time.
    assert context.prefill("smith/1", messages) == total
