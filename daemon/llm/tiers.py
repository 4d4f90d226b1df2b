"""Two-tier replies: a fast model speaks the opener, a narrative model continues it.

The original system opened every reply with a fast model (Qwen 1.5B, ~0.1 s to first
text) and continued it with a narrative model (Qwen 14B). To sound like one reply in
one voice, the narrative model receives the opener as the beginning of its own answer
(assistant prefill, see `LlamaContext.reply`) and goes on from exactly that text, so
no word is repeated and nothing is re-said.

Timeline of one two-tier reply:
  * both tiers start at once: the fast tier generates; the narrative tier evaluates
    the prompt up to the open assistant turn (persona and history mostly come from its
    KV cache) and then waits for the opener (with `narrative_early_start = false` it
    starts only at the hand-off, so that on a small CPU the opener has every core);
  * the opener ends at the fast tier's first sentence boundary (or after
    `opener_max_tokens`, at the last whole word); the fast tier is stopped there;
  * the narrative tier evaluates the opener's tokens and streams the continuation.

`TieredLlm.reply` yields one stream: the opener's deltas, a `TierHandoff` marker, the
continuation's deltas, so the turn can switch speech profiles at the marker. A narrative
tier that fails, or sends no text within `narrative_timeout_ms` of the hand-off, ends
the reply after the opener (with a warning): it never silences the opener.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from daemon.config import LlmConfig, Tiers
from daemon.engines.thread import AnyEvent
from daemon.llm.base import (
    ChatMessage,
    ReplyDelta,
    ReplyEvent,
    ReplyItem,
    ReplyStats,
    TierEngine,
    TierHandoff,
)
from daemon.pipeline.text import ENGLISH_RULES, TextRules, ends_phrase, rules_for
from daemon.priorities import NORMAL

_LOGGER = logging.getLogger(__name__)


# How often a narrative job waiting for the opener looks at its stop event. The opener
# is always handed over (or abandoned) by the event loop; this only bounds how long a
# stop takes to end the wait on its own.
_HANDOFF_POLL_S = 0.05


class OpenerCutter:
    """Decides where the fast tier's opener ends, as its text streams in.

    Text is released up to the last whitespace only (the word being written may still
    grow), so nothing released is ever taken back. The opener ends at the first
    sentence boundary (. ! ? followed by whitespace; "Mr." and initials excluded) or
    after `max_tokens` deltas, at the last whole word.

    Args:
      max_tokens: Deltas (about tokens) after which the opener ends without a boundary.
      rules: The reply's language's marks and abbreviations (the chunker's own rules).
    """

    def __init__(self, max_tokens: int, rules: TextRules = ENGLISH_RULES) -> None:
        self._max_tokens = max_tokens
        self._rules = rules
        self._text = ""
        self._released = 0  # characters of _text handed out
        self._deltas = 0
        self._scanned = 0  # whitespace positions before this were checked for boundaries
        self.done = False

    @property
    def opener(self) -> str:
        """The opener: everything released, without surrounding whitespace."""
        return self._text[: self._released].strip()

    def feed(self, text: str) -> str:
        """Add a delta; return the text that may be spoken now (maybe "").

        Sets `done` when the opener is complete; later calls return "".
        """
        if self.done:
            return ""
        self._text += text
        self._deltas += 1
        cut = self._sentence_end()
        if cut is not None:
            self.done = True
            return self._release(cut)
        # Up to the last whitespace: the word after it may still grow.
        last_space = max(self._text.rfind(" "), self._text.rfind("\n"))
        released = self._release(last_space + 1)
        if self._deltas >= self._max_tokens:
            self.done = True  # the word in progress may be cut: dropped
        return released

    def finish(self, end_of_turn: bool) -> str:
        """The fast tier stopped by itself; return the text still to speak.

        Args:
          end_of_turn: True when the model ended its turn (the last word is whole);
            False when it hit its token cap (the last word may be cut: dropped).
        """
        if self.done:
            return ""
        self.done = True
        return self._release(len(self._text)) if end_of_turn else ""

    def _release(self, end: int) -> str:
        if end <= self._released:
            return ""
        released = self._text[self._released:end]
        self._released = end
        return released

    def _sentence_end(self) -> int | None:
        """Index just after the first sentence-ending mark followed by whitespace."""
        text = self._text
        for ws in range(max(self._scanned, 1), len(text)):
            if not text[ws].isspace() or text[ws - 1].isspace():
                continue
            if ends_phrase(text, ws, self._rules.sentence_marks, self._rules):
                return ws
        self._scanned = len(text)
        return None


class _Handoff:
    """The opener, passed from the event loop to the narrative tier's engine thread."""

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[str | None] = concurrent.futures.Future()

    def resolve(self, opener: str | None) -> None:
        """Hand the opener over (None = abandon the continuation); later calls are ignored."""
        if not self._future.done():
            self._future.set_result(opener)

    def wait(self, stop: threading.Event) -> str | None:
        """Block (engine thread) until resolved or `stop` is set; None = abandoned."""
        while True:
            try:
                return self._future.result(timeout=_HANDOFF_POLL_S)
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    return None


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END = object()


class TieredLlm:
    """The LLM stage of every turn: one or two tiers of llama.cpp pools.

    Args:
      fast: Pool of the fast tier (`[llm]`).
      fast_config: Its settings (`opener_max_tokens` is used here).
      narrative: Pool of the narrative tier (`[llm_narrative]`), or None.
      narrative_config: Its settings (`narrative_timeout_ms` and `narrative_early_start`
        are used here).
    """

    def __init__(
        self,
        fast: TierEngine,
        fast_config: LlmConfig,
        narrative: TierEngine | None = None,
        narrative_config: LlmConfig | None = None,
    ) -> None:
        self._fast = fast
        self._narrative = narrative
        self._opener_max_tokens = fast_config.opener_max_tokens
        timeout_ms = narrative_config.narrative_timeout_ms if narrative_config else 0
        self._narrative_timeout_s = timeout_ms / 1000.0 if timeout_ms else None
        self._early_start = narrative_config.narrative_early_start if narrative_config else True
        self._draining: set[asyncio.Task[None]] = set()

    def _pools(self, tiers: Tiers) -> list[TierEngine]:
        pools = []
        if tiers in ("fast", "both"):
            pools.append(self._fast)
        if tiers in ("narrative", "both"):
            if self._narrative is None:
                raise ValueError(f"tiers = {tiers!r} needs a narrative model ([llm_narrative])")
            pools.append(self._narrative)
        return pools

    async def prefill(self, personas: dict[str, list[ChatMessage]],
                      tiers: dict[str, Tiers] | None = None) -> None:
        """Evaluate each NPC's persona once on the pools of its tiers (warm-up).

        Args:
          personas: Warm-up messages by NPC id.
          tiers: Tiers by NPC id; missing = "fast".
        """
        tiers = tiers or {}
        for tier in ("fast", "narrative"):
            chosen = {key: messages for key, messages in personas.items()
                      if tiers.get(key, "fast") in (tier, "both")}
            if chosen:
                await self._pools(tier)[0].prefill(chosen)

    async def prefill_one(self, key: str, messages: list[ChatMessage],
                          tiers: Tiers = "fast") -> None:
        """Evaluate `messages` under `key` on the pools of `tiers` (after a history cut)."""
        for pool in self._pools(tiers):
            await pool.prefill_one(key, messages)

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None, tiers: Tiers) -> None:
        """Evaluate `key`'s prompt up to the line being typed, on the first tier of `tiers`.

        Only the first tier: it writes the reply's first words, which are what the
        player waits for; a two-tier reply's narrative tier starts later anyway.
        """
        await self._pools(tiers)[0].prefill_typing(key, messages, persona_key)

    async def after_turn(self, key: str, messages: list[ChatMessage], tiers: Tiers,
                         history_cut: bool) -> None:
        """Bring conversation `key`'s KV caches up to date, off the next turn's path.

        Args:
          key: The conversation.
          messages: Its prompt for the next turn, up to the new line (history recorded).
          tiers: The tiers of its NPC.
          history_cut: The history was shortened: every tier's prompt prefix changed.
            Otherwise only a two-tier reply needs it: the fast tier stopped after the
            opener, so the continuation (now in the history) is not in its cache and
            the next opener would wait for its evaluation.
        """
        await self.prefill_one(key, messages, tiers if history_cut else "fast")

    async def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        stop: threading.Event,
        persona_key: str | None = None,
        tiers: Tiers = "fast",
        priority: int = NORMAL,
        language: str = "en",
    ) -> AsyncGenerator[ReplyItem, None]:
        """Stream the reply for conversation `key` from the tiers named.

        Yields `ReplyStarted`, `ReplyDelta`s and `ReplyStats` of each tier used; with
        `tiers="both"` the opener's items come first, then one `TierHandoff`, then the
        continuation's items (a failed or late narrative tier ends the stream after the
        hand-off, logged as a warning).

        Raises:
          ValueError: the fast tier's prompt does not fit its context, or a narrative
            tier is asked for but not loaded.
        """
        if tiers != "both":
            pool = self._pools(tiers)[0]
            async with aclosing(pool.reply(key, messages, stop, persona_key,
                                           priority=priority)) as events:
                async for event in events:
                    yield event
            return
        async with aclosing(self._two_tier(key, messages, stop, persona_key,
                                           priority, rules_for(language))) as items:
            async for item in items:
                yield item

    async def _two_tier(
        self, key: str, messages: list[ChatMessage], stop: threading.Event,
        persona_key: str | None, priority: int, rules: TextRules,
    ) -> AsyncGenerator[ReplyItem, None]:
        assert self._narrative is not None
        handoff = _Handoff()
        continuation: asyncio.Queue[object] = asyncio.Queue()  # bounded by max_reply_tokens
        narrative: asyncio.Task[None] | None = None

        def start_narrative() -> asyncio.Task[None]:
            assert self._narrative is not None
            return asyncio.create_task(
                self._pump(self._narrative.reply(key, messages, stop, persona_key,
                                                 opener=handoff.wait, priority=priority),
                           continuation),
                name=f"narrative-{key}")

        if self._early_start:
            narrative = start_narrative()
        try:
            cutter = OpenerCutter(self._opener_max_tokens, rules)
            opener_done = threading.Event()
            finish_reason = "cancelled"
            fast = self._fast.reply(key, messages, AnyEvent(stop, opener_done), persona_key,
                                    max_tokens=self._opener_max_tokens + 1, priority=priority)
            async with aclosing(fast) as items:
                async for item in items:
                    if isinstance(item, ReplyDelta):
                        text = cutter.feed(item.text)
                        if text:
                            yield ReplyDelta(text)
                        if cutter.done:
                            opener_done.set()  # no token after the opener's last one
                        continue
                    if isinstance(item, ReplyStats):
                        finish_reason = item.finish_reason
                    yield item
            rest = cutter.finish(end_of_turn=finish_reason == "stop")
            if rest:
                yield ReplyDelta(rest)
            if stop.is_set():
                return
            handoff.resolve(cutter.opener)
            if narrative is None:
                narrative = start_narrative()
            yield TierHandoff(cutter.opener)
            async for continued in self._continuation(continuation, key):
                yield continued
        finally:
            handoff.resolve(None)
            if narrative is not None and not narrative.done():
                # Its engine job ends at its next token (or after its current prefill);
                # the turn need not wait for that: the pool frees the context itself.
                narrative.cancel()
                self._draining.add(narrative)
                narrative.add_done_callback(self._draining.discard)

    async def _continuation(self, items: asyncio.Queue[object], key: str
                            ) -> AsyncGenerator[ReplyItem, None]:
        loop = asyncio.get_running_loop()
        timeout_s = self._narrative_timeout_s
        deadline = loop.time() + timeout_s if timeout_s is not None else None
        while True:
            try:
                if deadline is None:
                    item = await items.get()
                else:
                    item = await asyncio.wait_for(items.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                _LOGGER.warning("%s: the narrative tier gave no text within %.0f ms of the "
                                "hand-off; the reply ends with the opener", key,
                                (timeout_s or 0.0) * 1000)
                return
            if item is _END:
                return
            if isinstance(item, _Failure):
                _LOGGER.warning("%s: the narrative tier failed (%s: %s); the reply ends "
                                "with what was spoken", key, type(item.error).__name__,
                                item.error)
                return
            if isinstance(item, ReplyDelta):
                deadline = None
            yield item  # type: ignore[misc]

    @staticmethod
    async def _pump(stream: AsyncGenerator[ReplyEvent, None],
                    items: asyncio.Queue[object]) -> None:
        """Run a tier's stream to its end in the background, queueing what it yields."""
        try:
            async with aclosing(stream) as source:
                async for item in source:
                    items.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the consumer reports it (narrative failure)
            items.put_nowait(_Failure(exc))
            return
        items.put_nowait(_END)

    def forget(self, keys: list[str]) -> None:
        """Drop the saved KV states of conversations `keys` in every tier."""
        self._fast.forget(keys)
        if self._narrative is not None:
            self._narrative.forget(keys)

    def close(self) -> None:
        """Stop the engine threads of both tiers (after their current job)."""
        self._fast.close()
        if self._narrative is not None:
            self._narrative.close()
