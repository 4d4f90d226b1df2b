"""The LLM stage's contract: chat messages, reply events, and the `LlmStage` protocol.

A turn talks to its LLM through `LlmStage` only, so a second backend (an
OpenAI-compatible server, say) is a new class, not a rewrite of the turn. Nothing here
imports an engine: tests and the service core can use these types without the native
llama.cpp build.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from daemon.config import Tiers
from daemon.priorities import NORMAL

ChatMessage = dict[str, str]
"""{"role": "system" | "user" | "assistant", "content": text}."""

OpenerSource = Callable[[threading.Event], "str | None"]
"""Called on the engine thread; blocks until the opener of a two-tier reply is known.

Receives the job's stop event; returns the opener text, or None when the reply was
abandoned (cancelled, or the fast tier failed) and nothing should be generated.
"""


class PromptTooLong(ValueError):
    """A prompt, with room for its reply, does not fit the model's context.

    Raised before anything is evaluated (in process) or when the LLM server refuses the
    request. The turn that meets it drops the oldest half of the conversation's history
    and asks again (`daemon.pipeline.turn`); with no history left to drop, the player's
    line is what does not fit (`text_too_long`).

    Attributes:
      prompt_tokens: Tokens in the formatted prompt (0 when the server did not say).
      context_tokens: The model's context (`n_ctx`; 0 when the server did not say).
      reply_tokens: Tokens kept free for the reply (0: the server reserves none).
    """

    def __init__(self, prompt_tokens: int, context_tokens: int, reply_tokens: int,
                 detail: str = "") -> None:
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens
        self.reply_tokens = reply_tokens
        super().__init__(detail or (
            f"the prompt has {prompt_tokens} tokens; with {reply_tokens} for the reply it "
            f"does not fit the model's context of {context_tokens} ([llm] n_ctx)"))

    def about(self, subject: str) -> PromptTooLong:
        """The same error, its message led by what the prompt was (a config key)."""
        return PromptTooLong(self.prompt_tokens, self.context_tokens, self.reply_tokens,
                             f"{subject}: {self}")


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """Emitted first, when a context has picked the request up (ends the queueing)."""


@dataclass(frozen=True, slots=True)
class ReplyDelta:
    """A piece of reply text (one token, or a few when UTF-8 or stop strings are held)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReplyStats:
    """How the prompt and reply went, emitted once after the last delta.

    Attributes:
      prompt_tokens: Tokens in the formatted prompt (with the opener, for a continuation).
      prefill_tokens: Prompt tokens evaluated (the rest were reused from the KV cache).
      reply_tokens: Tokens generated.
      finish_reason: "stop" (end of turn token), "length" (cap) or "cancelled".
      prompt: The formatted prompt text the model continued (for logs and tests).
    """

    prompt_tokens: int
    prefill_tokens: int
    reply_tokens: int
    finish_reason: str
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class TierHandoff:
    """Marker in a two-tier reply stream: the opener is complete, the continuation follows.

    Attributes:
      opener: The opener as the fast tier wrote it (the narrative tier continues this).
    """

    opener: str


ReplyEvent = ReplyStarted | ReplyDelta | ReplyStats
"""What one model (one llama.cpp context) emits for one reply."""

ReplyItem = ReplyEvent | TierHandoff
"""What `LlmStage.reply` yields: the events of each tier, and the hand-off between them."""


class TierEngine(Protocol):
    """One model serving one tier.

    In-process llama.cpp contexts (`pool.LlmPool`) or an LLM server (`openai.OpenAiTier`).
    """

    def reply(self, key: str, messages: list[ChatMessage], stop: threading.Event,
              persona_key: str | None = None, max_tokens: int | None = None,
              opener: OpenerSource | None = None, priority: int = NORMAL
              ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream one model's reply of conversation `key` (see `LlmStage.reply`).

        `opener` makes the reply continue an opener written by another model;
        `priority` (`AMBIENT`, `NORMAL`, `HIGH`) orders turns competing for the model.
        """
        ...

    async def prefill(self, personas: dict[str, list[ChatMessage]]) -> None:
        """Evaluate each persona's prompt once, so that its turns start from the cache."""
        ...

    async def prefill_one(self, key: str, messages: list[ChatMessage]) -> None:
        """Evaluate `messages` under `key` in the background (after a history cut)."""
        ...

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None = None) -> None:
        """Evaluate `key`'s prompt up to the line being typed, at the lowest priority.

        The line being typed is the last message; its text stays open (no end-of-turn
        markup after it).
        """
        ...

    def forget(self, keys: list[str]) -> None:
        """Drop the cached state of conversations that ended."""
        ...

    def close(self) -> None:
        """Stop the engine."""
        ...


class LlmStage(Protocol):
    """The LLM side of every turn (`daemon.llm.tiers.TieredLlm` is the llama.cpp one)."""

    def reply(self, key: str, messages: list[ChatMessage], stop: threading.Event,
              persona_key: str | None = None, tiers: Tiers = "fast", priority: int = NORMAL,
              language: str = "en") -> AsyncGenerator[ReplyItem, None]:
        """Stream the reply of conversation `key` to `messages` (persona first).

        `language` (BCP 47) is the reply's: a two-tier reply's opener ends at a sentence
        boundary by that language's marks.

        Yields one `ReplyStarted` per tier, its `ReplyDelta`s and one `ReplyStats`; a
        two-tier reply puts one `TierHandoff` between the opener and the continuation.
        Generation stops without another token once `stop` is set or the iterator is
        closed.

        Raises:
          PromptTooLong: the prompt, with room for the reply, does not fit the model's
            context.
        """
        ...

    async def prefill(self, personas: dict[str, list[ChatMessage]],
                      tiers: dict[str, Tiers] | None = None) -> None:
        """Evaluate each NPC's persona once, so that turns start from its cached state."""
        ...

    async def after_turn(self, key: str, messages: list[ChatMessage], tiers: Tiers,
                         history_cut: bool) -> None:
        """Bring conversation `key`'s cached state up to date, off the next turn's path."""
        ...

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None, tiers: Tiers) -> None:
        """Evaluate `key`'s prompt up to the line being typed (the last message).

        On the tier that writes a reply's first words.
        """
        ...

    def forget(self, keys: list[str]) -> None:
        """Drop the cached state of conversations that ended."""
        ...

    def close(self) -> None:
        """Stop the engines."""
        ...
