"""A pool of llama.cpp contexts shared by every turn, with priorities and NPC affinity.

`llm.instances` contexts can generate at the same time (each on its own thread). A turn
waits for a free context, most urgent first (`admission.SlotGate`), and prefers one that
already holds its NPC's KV state, which saves a state restore. A running ambient reply
yields its context between two tokens when a more urgent turn is waiting, and resumes
later from exactly where it stopped (assistant prefill of its own text).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from daemon.config import LlmConfig
from daemon.engines.thread import EngineThread
from daemon.llm.admission import SlotGate
from daemon.llm.base import (
    ChatMessage,
    OpenerSource,
    PromptTooLong,
    ReplyDelta,
    ReplyEvent,
    ReplyStarted,
    ReplyStats,
)
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.priorities import AMBIENT, NORMAL

_LOGGER = logging.getLogger(__name__)


class _Slot:
    def __init__(self, context: LlamaContext, thread: EngineThread) -> None:
        self.context = context
        self.thread = thread


class LlmPool:
    """Loaded llama.cpp contexts plus the turns waiting for one (a `TierEngine`).

    Build with `await LlmPool.load(...)`; call `close()` at shutdown.
    """

    def __init__(self, slots: list[_Slot], states: KvStateStore, max_reply_tokens: int) -> None:
        self._states = states
        self._free: list[_Slot] = list(slots)
        self._slots = list(slots)
        self._gate = SlotGate(len(slots), reserve=0)
        self._max_reply_tokens = max_reply_tokens

    @classmethod
    async def load(cls, model_path: Path, config: LlmConfig, name: str = "llm") -> LlmPool:
        """Load `config.instances` contexts of `model_path`, each on its own thread.

        Args:
          model_path: GGUF file.
          config: Context and sampling settings.
          name: Prefix of the engine threads' names ("llm" -> "llm-0", "llm-1"...).

        Raises:
          ValueError: llama.cpp could not load the model.
        """
        states = KvStateStore(config.state_cache_bytes)
        slots: list[_Slot] = []
        threads: list[EngineThread] = []
        try:
            for index in range(config.instances):
                thread: EngineThread = EngineThread(f"{name}-{index}")
                threads.append(thread)
                context = await thread.call(LlamaContext, model_path, config, states, thread.name)
                slots.append(_Slot(context, thread))
        except BaseException:
            for thread in threads:  # no engine thread outlives a failed load
                thread.shutdown()
            raise
        return cls(slots, states, config.max_reply_tokens)

    @property
    def waiting_priority(self) -> int | None:
        """Priority of the most urgent turn waiting for a context, or None."""
        return self._gate.top_waiting

    async def prefill(self, personas: dict[str, list[ChatMessage]]) -> None:
        """Evaluate each NPC's persona once (warm-up) and keep its KV state.

        Raises:
          PromptTooLong: a persona leaves no room for a line and a reply (named
            `npcs.<id>.persona`): every turn of that NPC would fail.
        """
        slot = self._slots[0]
        for key, messages in personas.items():
            started = time.perf_counter()
            try:
                await slot.thread.call(slot.context.prefill, key, messages)
            except PromptTooLong as error:
                raise error.about(f"npcs.{key}.persona") from None
            _LOGGER.info(
                "prefilled persona of %s in %.0f ms", key, (time.perf_counter() - started) * 1000
            )

    async def prefill_one(self, key: str, messages: list[ChatMessage]) -> None:
        """Evaluate `messages` on a free context and keep the KV state under `key`.

        Used after a conversation's history was shortened, so that the next turn
        finds its new prefix already evaluated. It yields to any waiting turn:
        housekeeping must never make a player wait.
        """
        async with self._acquire(key, AMBIENT) as slot:
            await slot.thread.call(slot.context.prefill, key, messages,
                                   lambda: self._gate.top_waiting is not None)

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None = None) -> None:
        """Evaluate conversation `key`'s prompt up to the line being typed (last message).

        At `AMBIENT` priority, yielding to any waiting turn (see `prefill_one`); starts
        from the persona's state when the conversation has none yet.
        """
        async with self._acquire(key, AMBIENT) as slot:
            await slot.thread.call(slot.context.prefill, key, messages,
                                   lambda: self._gate.top_waiting is not None, 64, True,
                                   persona_key)

    @asynccontextmanager
    async def _acquire(self, key: str, priority: int) -> AsyncIterator[_Slot]:
        await self._gate.acquire(priority)
        slot = next((s for s in self._free if s.context.holding == key), self._free[0])
        self._free.remove(slot)
        try:
            yield slot
        finally:
            self._free.append(slot)
            self._gate.release()

    async def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        stop: threading.Event,
        persona_key: str | None = None,
        max_tokens: int | None = None,
        opener: OpenerSource | None = None,
        priority: int = NORMAL,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the reply for conversation `key` (see `TierEngine.reply`).

        Yields one `ReplyStarted` (a context took the request), `ReplyDelta`s, then one
        `ReplyStats`.

        `persona_key` names the prefilled persona state to start from when the
        conversation has no KV state yet. `max_tokens` caps the reply (None = the
        config's `max_reply_tokens`). With `opener` the reply continues an opener
        written by another model (see `LlamaContext.reply`). Waits for a free context
        first, most urgent first; a reply of lower priority than a waiting turn yields
        between two tokens and resumes afterwards (not while continuing an `opener`).
        Stops without another token once `stop` is set or the consumer closes it.

        Raises:
          ValueError: the prompt does not fit the context.
        """
        budget = max_tokens or self._max_reply_tokens
        said = ""
        totals = [0, 0, 0]  # prompt, prefill, reply tokens over every resumption
        started = False
        gate = self._gate

        def should_yield() -> bool:  # engine thread: reads one attribute
            waiting = gate.top_waiting
            return waiting is not None and waiting > priority

        while True:
            async with self._acquire(key, priority) as slot:
                resume = said
                source = opener if not resume else (lambda _stop, text=resume: text)

                def produce(emit, stop_event: threading.Event, source=source) -> None:
                    slot.context.reply(key, messages, emit, stop_event,
                                       max_tokens=budget - totals[2], fallback_key=persona_key,
                                       opener=source,
                                       should_yield=should_yield if opener is None else None)

                finish = "cancelled"
                prompt = ""
                stream = slot.thread.stream(produce, stop)
                try:
                    async for item in stream:
                        if isinstance(item, ReplyStarted):
                            if not started:
                                started = True
                                yield item
                        elif isinstance(item, ReplyStats):
                            totals[0] += item.prompt_tokens
                            totals[1] += item.prefill_tokens
                            totals[2] += item.reply_tokens
                            finish, prompt = item.finish_reason, item.prompt
                        else:
                            if isinstance(item, ReplyDelta):
                                said += item.text
                            yield item
                finally:
                    await stream.aclose()
            if finish != "yielded" or stop.is_set() or totals[2] >= budget:
                yield ReplyStats(totals[0], totals[1], totals[2],
                                 "length" if finish == "yielded" else finish, prompt)
                return
            _LOGGER.info("%s: reply yielded its context to a more urgent turn after %d "
                         "tokens; it resumes when a context is free", key, totals[2])

    def forget(self, keys: list[str]) -> None:
        """Drop the saved KV states of conversations that ended (their client left)."""
        for key in keys:
            self._states.discard(key)

    def close(self) -> None:
        """Stop the engine threads (after their current job)."""
        for slot in self._slots:
            slot.thread.shutdown()
