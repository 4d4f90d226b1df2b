"""Keeping the KV cache of a conversation whose oldest turns were dropped (context shift).

When a conversation nears `n_ctx`, its oldest turns are dropped (`Dialogue.shorten`).
The new prompt is then the old one with a span cut out after the persona, and llama.cpp's
prefix matching would evaluate everything after the cut again: ~1000 tokens, 3-4 s on
one CPU thread, paid by the turn that meets the full context when the background prefill
had no time to do it first (BENCHMARKS.md, "Memory").

Instead the cut span's cells are removed from the KV cache and the cells after it moved
back to close the gap (`llama_memory_seq_rm`, `llama_memory_seq_add`; llama.cpp rotates
their keys to the new positions at the next decode). What remains was evaluated while the
dropped turns were in view, so it is not bit-for-bit what evaluating the shortened prompt
would give: the approximation llama.cpp's server makes when it shifts a full context
(its `--context-shift`), here at turn boundaries and with the persona always kept. On
SmolLM2-135M the next token's distribution after a 90-token cut drifted 0.08-0.15 nats
(KL) from the exact one's. So it is used only where a player waits: by a turn
(`LlamaContext.reply`), and by a prefill (after a turn, while typing) that must yield to
a waiting turn before it has evaluated the shortened prompt exactly, as it usually does.
"""

from __future__ import annotations

from dataclasses import dataclass

import llama_cpp

MIN_DROPPED_TOKENS = 32
"""A smaller difference is an edit of the line, not dropped history: evaluated afresh."""

MIN_KEPT_TOKENS = 64
"""Moving fewer cells than this saves less than the shift's own work is worth."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Cells to remove from a cache so that it starts like the new prompt.

    Attributes:
      start: First removed position (everything before it is shared already).
      end: First kept position after the removed span.
      kept: Cells from `end` on that match the new prompt; they move to `start`.
    """

    start: int
    end: int
    kept: int

    @property
    def tokens_after(self) -> int:
        """Cached tokens the prompt shares once the cut is made."""
        return self.start + self.kept


def shared_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading token ids `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def find_cut(cached: list[int], prompt: list[int]) -> Cut | None:
    """Where `prompt` is `cached` with a span removed, if that saves real work.

    Args:
      cached: Token ids in the KV cache, in position order.
      prompt: Token ids of the new prompt.

    Returns:
      The cut that leaves the longest run of cached tokens matching the prompt after
      the shared prefix, or None when the prompt simply extends the cache, when the span
      is under `MIN_DROPPED_TOKENS` or the moved run under `MIN_KEPT_TOKENS`.
    """
    start = shared_prefix_length(cached, prompt)
    if start >= len(cached) or start >= len(prompt):
        return None
    best: Cut | None = None
    rest = prompt[start:]
    for end in range(start + MIN_DROPPED_TOKENS, len(cached) - MIN_KEPT_TOKENS + 1):
        if cached[end] != rest[0]:
            continue
        kept = shared_prefix_length(cached[end:], rest)
        if kept >= MIN_KEPT_TOKENS and (best is None or kept > best.kept):
            best = Cut(start, end, kept)
    return best


def can_shift(llama: llama_cpp.Llama) -> bool:
    """Whether `llama`'s KV cache can move cells (`llama_memory_can_shift`).

    Recurrent models, for instance, cannot.
    """
    memory = llama_cpp.llama_get_memory(llama.ctx)
    return memory is not None and bool(llama_cpp.llama_memory_can_shift(memory))


def apply_cut(llama: llama_cpp.Llama, cut: Cut) -> None:
    """Remove the cut span from `llama`'s KV cache and close the gap.

    Also drops cached cells after the kept run, and sets llama-cpp-python's record of
    the cached tokens (`input_ids`, `n_tokens`) to what the cache now holds, so that its
    prefix matching evaluates only what follows. Call only where `can_shift(llama)`.
    """
    memory = llama_cpp.llama_get_memory(llama.ctx)
    moved_end = cut.end + cut.kept
    # Sequence 0 is the only one a `Llama` uses; -1 as the end means "to the last cell".
    llama_cpp.llama_memory_seq_rm(memory, 0, moved_end, -1)
    llama_cpp.llama_memory_seq_rm(memory, 0, cut.start, cut.end)
    llama_cpp.llama_memory_seq_add(memory, 0, cut.end, moved_end, cut.start - cut.end)
    ids = llama.input_ids
    ids[cut.start:cut.tokens_after] = ids[cut.end:moved_end].copy()
    llama.n_tokens = cut.tokens_after
    # The logits on hand belong to the last token before the cut: the next step must
    # evaluate at least one token (llama-cpp-python's flag, as after `load_state`).
    llama._requires_eval = True
