"""One llama.cpp context (llama-cpp-python `Llama`), driven from its owner thread.

A `Llama` is not thread-safe (abetlen/llama-cpp-python#471), so every method here
runs on one `EngineThread`. Per-NPC KV states live in a shared `KvStateStore`: when a
context switches to another NPC it restores that NPC's saved state, so the persona
prefix (and the conversation so far) is not prefilled again; llama.cpp's own prefix
matching then evaluates only the new tokens of the prompt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llama_cpp import Llama, LlamaState

from daemon.config import LlmConfig

_LOGGER = logging.getLogger(__name__)

ChatMessage = dict[str, str]
"""{"role": "system" | "user" | "assistant", "content": text}."""


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
      prompt_tokens: Tokens in the formatted prompt.
      prefill_tokens: Prompt tokens evaluated (the rest were reused from the KV cache).
      reply_tokens: Tokens generated.
      finish_reason: "stop" (end of turn token), "length" (cap) or "cancelled".
    """

    prompt_tokens: int
    prefill_tokens: int
    reply_tokens: int
    finish_reason: str


class KvStateStore:
    """Saved llama.cpp states per NPC, shared by the contexts of one model (LRU by bytes).

    Thread-safe: contexts save and restore from their own threads.

    Args:
      capacity_bytes: Total size of kept states; the least recently used go first.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self._capacity_bytes = capacity_bytes
        self._states: OrderedDict[str, LlamaState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> LlamaState | None:
        """The state saved for `key`, or None."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
            return state

    def put(self, key: str, state: LlamaState) -> None:
        """Save `state` under `key`, evicting old states beyond the capacity."""
        with self._lock:
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > 1 and self.size_bytes() > self._capacity_bytes:
                evicted, _ = self._states.popitem(last=False)
                _LOGGER.debug("evicted KV state of %s", evicted)

    def size_bytes(self) -> int:
        """Bytes held by the saved states (KV cells plus logits)."""
        return sum(s.llama_state_size + s.scores.nbytes for s in self._states.values())


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaContext:
    """One loaded llama.cpp model + context. Use only from its owner thread.

    Args:
      model_path: GGUF file.
      config: Context size, threads, offload and sampling settings.
      states: Store of per-NPC KV states shared with sibling contexts.
      name: For logs ("llm-0").

    Raises:
      ValueError: llama.cpp could not load the model.
    """

    def __init__(self, model_path: Path, config: LlmConfig, states: KvStateStore, name: str):
        started = time.perf_counter()
        self.name = name
        self._config = config
        self._states = states
        self._holding: str | None = None  # NPC whose tokens are in the KV cache now
        self._llama = Llama(
            model_path=str(model_path),
            n_ctx=config.n_ctx,
            n_batch=min(config.n_batch, config.n_ctx),
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads_batch,
            n_gpu_layers=config.n_gpu_layers,
            flash_attn=config.flash_attn,
            seed=config.seed if config.seed >= 0 else 0xFFFFFFFF,
            verbose=False,
        )
        _LOGGER.info(
            "%s: loaded %s (n_ctx=%d, threads=%d/%d, gpu_layers=%d) in %.0f ms",
            name,
            model_path.name,
            config.n_ctx,
            config.n_threads,
            config.n_threads_batch,
            config.n_gpu_layers,
            (time.perf_counter() - started) * 1000,
        )

    @property
    def holding(self) -> str | None:
        """Key of the NPC whose KV state this context holds (read from any thread)."""
        return self._holding

    def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        emit: Callable[[ReplyStarted | ReplyDelta | ReplyStats], None],
        stop: threading.Event,
        max_tokens: int | None = None,
        fallback_key: str | None = None,
    ) -> None:
        """Generate the assistant reply to `messages`, streaming it through `emit`.

        Args:
          key: Identity of the KV state to use and save (one conversation).
          fallback_key: State to start from when `key` has none yet (the NPC's
            prefilled persona).
          messages: Chat messages, system persona first.
          emit: Receives one `ReplyStarted`, `ReplyDelta`s, then one `ReplyStats`.
          stop: Checked between tokens; generation ends without another token once set.
          max_tokens: Reply cap; None = `llm.max_reply_tokens`.
        """
        emit(ReplyStarted())
        llama = self._llama
        if self._holding != key:
            state = self._states.get(key)
            if state is None and fallback_key is not None:
                state = self._states.get(fallback_key)
            if state is not None:
                llama.load_state(state)
            self._holding = key
        ids_before = llama.input_ids.tolist()
        config = self._config
        stream = llama.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=max_tokens or config.max_reply_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repeat_penalty=config.repeat_penalty,
            seed=config.seed if config.seed >= 0 else None,
        )
        prompt_tokens = prefill_tokens = reply_tokens = 0
        finish_reason = "cancelled"
        try:
            for chunk in stream:
                if stop.is_set():
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    if reply_tokens == 0:
                        prompt_tokens = llama.n_tokens
                        reused = _common_prefix_length(ids_before, llama.input_ids.tolist())
                        prefill_tokens = prompt_tokens - reused
                    reply_tokens = llama.n_tokens - prompt_tokens + 1
                    emit(ReplyDelta(text))
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            stream.close()  # no extra token after a stop (GeneratorExit inside llama.cpp)
            self._states.put(key, llama.save_state())
        emit(ReplyStats(prompt_tokens, prefill_tokens, reply_tokens, finish_reason))

    def prefill(self, key: str, messages: list[ChatMessage]) -> None:
        """Evaluate a persona prompt once and save its KV state under `key`."""
        self.reply(key, messages, lambda _: None, threading.Event(), max_tokens=1)
