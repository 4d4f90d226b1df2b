"""A pool of llama.cpp contexts shared by every turn, with NPC affinity.

`llm.instances` contexts can generate at the same time (each on its own thread).
A turn waits FIFO for a free context and prefers one that already holds its NPC's KV
state, which saves a state restore.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from daemon.config import LlmConfig
from daemon.engines.thread import EngineThread
from daemon.llm.base import ChatMessage, OpenerSource, ReplyEvent
from daemon.llm.llama import KvStateStore, LlamaContext

_LOGGER = logging.getLogger(__name__)


class _Slot:
    def __init__(self, context: LlamaContext, thread: EngineThread) -> None:
        self.context = context
        self.thread = thread


class LlmPool:
    """Loaded llama.cpp contexts plus the FIFO queue of turns waiting for one.

    Build with `await LlmPool.load(...)`; call `close()` at shutdown.
    """

    def __init__(self, slots: list[_Slot], states: KvStateStore) -> None:
        self._states = states
        self._free: list[_Slot] = list(slots)
        self._slots = list(slots)
        self._waiters: deque[tuple[str, asyncio.Future[_Slot]]] = deque()

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
        return cls(slots, states)

    async def prefill(self, personas: dict[str, list[ChatMessage]]) -> None:
        """Evaluate each NPC's persona once (warm-up) and keep its KV state."""
        slot = self._slots[0]
        for key, messages in personas.items():
            started = time.perf_counter()
            await slot.thread.call(slot.context.prefill, key, messages)
            _LOGGER.info(
                "prefilled persona of %s in %.0f ms", key, (time.perf_counter() - started) * 1000
            )

    async def prefill_one(self, key: str, messages: list[ChatMessage]) -> None:
        """Evaluate `messages` on a free context and keep the KV state under `key`.

        Used after a conversation's history was shortened, so that the next turn
        finds its new prefix already evaluated.
        """
        async with self._acquire(key) as slot:
            # Yield to turns: housekeeping must never make a player wait.
            await slot.thread.call(slot.context.prefill, key, messages,
                                   lambda: bool(self._waiters))

    @asynccontextmanager
    async def _acquire(self, key: str) -> AsyncIterator[_Slot]:
        slot = self._take_free(key)
        if slot is None:
            waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
            self._waiters.append((key, waiter))
            try:
                slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())  # granted just as we were cancelled
                else:
                    self._waiters.remove((key, waiter))
                raise
        try:
            yield slot
        finally:
            self._release(slot)

    def _take_free(self, key: str) -> _Slot | None:
        if not self._free:
            return None
        for slot in self._free:
            if slot.context.holding == key:
                self._free.remove(slot)
                return slot
        return self._free.pop(0)

    def _release(self, slot: _Slot) -> None:
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)

    async def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        stop: threading.Event,
        persona_key: str | None = None,
        max_tokens: int | None = None,
        opener: OpenerSource | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the reply for conversation `key`.

        Yields one `ReplyStarted` (a context took the request), `ReplyDelta`s, then one
        `ReplyStats`.

        `persona_key` names the prefilled persona state to start from when the
        conversation has no KV state yet. `max_tokens` caps the reply (None = the
        config's `max_reply_tokens`). With `opener` the reply continues an opener
        written by another model (see `LlamaContext.reply`).

        Waits for a free context first. Stops without another token once `stop` is
        set or the consumer closes the iterator.

        Raises:
          ValueError: the prompt does not fit the context.
        """
        async with self._acquire(key) as slot:

            def produce(emit, stop_event: threading.Event) -> None:
                slot.context.reply(key, messages, emit, stop_event, max_tokens=max_tokens,
                                   fallback_key=persona_key, opener=opener)

            stream = slot.thread.stream(produce, stop)
            try:
                async for item in stream:
                    yield item
            finally:
                await stream.aclose()

    def forget(self, keys: list[str]) -> None:
        """Drop the saved KV states of conversations that ended (their client left)."""
        for key in keys:
            self._states.discard(key)

    def close(self) -> None:
        """Stop the engine threads (after their current job)."""
        for slot in self._slots:
            slot.thread.shutdown()
