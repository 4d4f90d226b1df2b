"""One llama.cpp context (llama-cpp-python `Llama`), driven from its owner thread.

A `Llama` is not thread-safe (abetlen/llama-cpp-python#471), so every method here
runs on one `EngineThread`. Per-NPC KV states live in a shared `KvStateStore`: when a
context switches to another NPC it restores that NPC's saved state, so the persona
prefix (and the conversation so far) is not prefilled again; llama.cpp's own prefix
matching then evaluates only the new tokens of the prompt.

Prompts are formatted here with the model's own chat template (the GGUF's
`tokenizer.chat_template`, rendered as llama-cpp-python's chat handler renders it) and
generated with `create_completion` on the tokens. Owning the prompt text is what lets
the narrative tier of a two-tier reply continue an opener: its prompt ends with the
assistant turn already holding the opener, without an end-of-turn token
(assistant prefill), so the model goes on from exactly that text.

A reply's prompt and first tokens may run with more threads than configured while a
core is free (`[llm] burst_threads`, `daemon.llm.threads`): llama.cpp's thread counts
are set before each step with `llama_set_n_threads`.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from llama_cpp import (
    GGML_TYPE_F16,
    GGML_TYPE_Q8_0,
    Llama,
    LlamaState,
    llama_print_system_info,
    llama_set_n_threads,
    llama_state_get_data,
    llama_state_get_size,
    llama_supports_gpu_offload,
)
from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

from daemon.config import LlmConfig
from daemon.llm.base import (
    ChatMessage,
    OpenerSource,
    PromptTooLong,
    ReplyDelta,
    ReplyStarted,
    ReplyStats,
)
from daemon.llm.kv_shift import apply_cut, can_shift, find_cut, shared_prefix_length
from daemon.llm.threads import ThreadBurst, Threads

_LOGGER = logging.getLogger(__name__)

KV_CACHE_TYPES = {"f16": GGML_TYPE_F16, "q8_0": GGML_TYPE_Q8_0}
"""`llm.cache_type_k` -> ggml's type constant."""


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

    def discard(self, key: str) -> None:
        """Forget the state saved for `key` (its conversation ended)."""
        with self._lock:
            self._states.pop(key, None)

    def size_bytes(self) -> int:
        """Bytes held by the saved states (KV cells plus logits)."""
        return sum(s.llama_state_size + s.scores.nbytes for s in self._states.values())


class LlamaContext:
    """One loaded llama.cpp model + context. Use only from its owner thread.

    Args:
      model_path: GGUF file.
      config: Context size, threads, offload and sampling settings.
      states: Store of per-NPC KV states shared with sibling contexts.
      name: For logs ("llm-0").

    Raises:
      ValueError: llama.cpp could not load the model (missing, truncated or corrupt GGUF).
    """

    def __init__(self, model_path: Path, config: LlmConfig, states: KvStateStore, name: str):
        started = time.perf_counter()
        if config.n_gpu_layers and not llama_supports_gpu_offload():
            _LOGGER.warning("%s: n_gpu_layers = %d, but this llama-cpp-python build is "
                            "CPU-only: the model runs on the CPU (README: install it with "
                            "CMAKE_ARGS=\"-DGGML_CUDA=on\")", name, config.n_gpu_layers)
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
            type_k=KV_CACHE_TYPES[config.cache_type_k],
            seed=config.seed if config.seed >= 0 else 0xFFFFFFFF,
            verbose=False,
        )
        # llama-cpp-python keeps an n_batch x n_vocab float32 `scores` array (48 MiB for
        # SmolLM2's 49k vocabulary) that only logits_all fills; sampling reads llama.cpp's
        # own logits. `load_state` writes it row by row, so every page became resident
        # at the first NPC switch. One row keeps what its readers index (the last row).
        self._llama.scores = np.zeros((1, self._llama.n_vocab()), dtype=np.single)
        self._formatter = self._chat_formatter(model_path)
        self._burst = self._thread_burst(config)
        _LOGGER.info(
            "%s: loaded %s (n_ctx=%d, K cache %s, threads=%d/%d, gpu_layers=%d, flash_attn=%s) "
            "in %.0f ms",
            name,
            model_path.name,
            config.n_ctx,
            config.cache_type_k,
            config.n_threads,
            config.n_threads_batch,
            config.n_gpu_layers,
            config.flash_attn,
            (time.perf_counter() - started) * 1000,
        )

    def _thread_burst(self, config: LlmConfig) -> ThreadBurst | None:
        """The policy for `burst_threads`, or None when bursts are off or unsafe here."""
        floor = Threads(config.n_threads, config.n_threads_batch)
        if config.burst_threads <= max(floor.decode, floor.batch) or config.n_gpu_layers:
            return None
        if b"OPENMP = 1" in llama_print_system_info():
            _LOGGER.warning(
                "%s: burst_threads = %d is off: this llama-cpp-python build uses OpenMP, "
                "whose threads stall for seconds when another process takes a core "
                "(scripts/bootstrap.sh builds it with CMAKE_ARGS=-DGGML_OPENMP=OFF)",
                self.name, config.burst_threads)
            return None
        return ThreadBurst(floor, config.burst_threads, config.burst_tokens)

    def _use_threads(self, threads: Threads) -> None:
        llama_set_n_threads(self._llama.ctx, threads.decode, threads.batch)

    def _chat_formatter(self, model_path: Path) -> Jinja2ChatFormatter:
        llama = self._llama
        template = llama.metadata.get("tokenizer.chat_template")
        if template is None:
            _LOGGER.warning("%s has no chat template; using ChatML", model_path.name)
            template = CHATML_CHAT_TEMPLATE

        def token_text(token: int) -> str:
            if token < 0:
                return ""
            return llama.detokenize([token], special=True).decode("utf-8", "ignore")

        # The same renderer llama-cpp-python builds for the GGUF template, so prompts
        # are what `create_chat_completion` would send.
        return Jinja2ChatFormatter(
            template=template,
            eos_token=token_text(llama.token_eos()),
            bos_token=token_text(llama.token_bos()),
            add_generation_prompt=True,
        )

    @property
    def holding(self) -> str | None:
        """Key of the NPC whose KV state this context holds (read from any thread)."""
        return self._holding

    def format_prompt(self, messages: list[ChatMessage], opener: str = "") -> str:
        """The prompt text for `messages`, ending with an open assistant turn.

        Args:
          messages: Chat messages, system persona first, the player's line last.
          opener: Text the assistant turn already begins with (assistant prefill); the
            model continues it. "" = a fresh reply.
        """
        # ChatMessage dicts are what llama-cpp-python's typed message dicts are at run time.
        return self._formatter(messages=cast(Any, messages)).prompt + opener

    def format_prompt_prefix(self, messages: list[ChatMessage]) -> str:
        """The prompt text of `messages` cut right after the last message's content.

        The last message is a line still being typed: the final prompt will continue
        it (or differ from it only at its end), so this prefix is what can be evaluated
        ahead. Rendered through the chat template with a marker after the content,
        then cut at the marker (templates copy the content verbatim).
        """
        marker = "\x00npc-voice-cut\x00"
        last = messages[-1]
        marked: ChatMessage = {"role": last["role"], "content": last["content"] + marker}
        prompt = self.format_prompt([*messages[:-1], marked])
        return prompt[: prompt.index(marker)]

    def _tokens(self, prompt: str) -> list[int]:
        # As llama-cpp-python's chat handler: the template writes BOS itself, and the
        # chat markup (<|im_start|>...) must parse as special tokens.
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _fitting(self, tokens: list[int], reply_tokens: int) -> list[int]:
        """`tokens`, if they leave `reply_tokens` free in the context.

        llama-cpp-python would shorten the reply to the room left, down to nothing, or
        refuse the prompt with a bare ValueError once it fills the context.

        Raises:
          PromptTooLong: they do not.
        """
        if len(tokens) + reply_tokens > self._config.n_ctx:
            raise PromptTooLong(len(tokens), self._config.n_ctx, reply_tokens)
        return tokens

    def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        emit: Callable[[ReplyStarted | ReplyDelta | ReplyStats], None],
        stop: threading.Event,
        max_tokens: int | None = None,
        fallback_key: str | None = None,
        opener: OpenerSource | None = None,
        should_yield: Callable[[], bool] | None = None,
    ) -> None:
        """Generate the assistant reply to `messages`, streaming it through `emit`.

        Args:
          key: Identity of the KV state to use and save (one conversation).
          messages: Chat messages, system persona first.
          emit: Receives one `ReplyStarted`, `ReplyDelta`s, then one `ReplyStats`.
          stop: Checked between tokens; generation ends without another token once set.
          max_tokens: Reply cap; None = `llm.max_reply_tokens`.
          fallback_key: State to start from when `key` has none yet (the NPC's
            prefilled persona).
          opener: For the narrative tier of a two-tier reply: the prompt up to the open
            assistant turn is evaluated first (while the fast tier writes the opener),
            then this is called for the opener and the model continues it. The deltas
            are the continuation only.
          should_yield: Checked between tokens: when it turns true, generation stops
            with finish reason "yielded" (a more urgent turn wants this context; the
            caller resumes the reply later).

        Raises:
          PromptTooLong: the prompt, with `max_tokens` free for the reply, does not fit
            the context (`n_ctx`); nothing was evaluated.
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
        prompt = self.format_prompt(messages)
        tokens = self._fitting(self._tokens(prompt), max_tokens or self._config.max_reply_tokens)
        try:
            ids_before = self._keep_after_cut(tokens)
            if opener is not None:
                self._evaluate(tokens)
                opener_text = opener(stop)
                if opener_text is None:
                    emit(ReplyStats(0, 0, 0, "cancelled", prompt))
                    return
                prompt += opener_text
                tokens = self._tokens(prompt)
            prefill = len(tokens) - shared_prefix_length(ids_before, tokens)
            reply_tokens, finish_reason = self._generate(tokens, emit, stop, max_tokens,
                                                         should_yield)
        finally:
            self._states.put(key, self._snapshot())
        emit(ReplyStats(len(tokens), prefill, reply_tokens, finish_reason, prompt))

    def _keep_after_cut(self, tokens: list[int]) -> list[int]:
        """Move the cached turns after dropped history instead of evaluating them again.

        `tokens` is the prompt of a turn about to be answered; when it is the cached
        prompt with its oldest turns cut out (`Dialogue.shorten`), the cache is cut the
        same way (daemon.llm.kv_shift) and only what follows the kept turns is evaluated.
        A prefill evaluates the shortened prompt exactly instead, unless it must yield
        to a turn first (`prefill`).

        Returns:
          The token ids the cache holds now, in position order.
        """
        llama = self._llama
        cached = llama.input_ids[: llama.n_tokens].tolist()
        cut = find_cut(cached, tokens)
        if cut is None or not can_shift(llama):
            return cached
        apply_cut(llama, cut)
        _LOGGER.info("%s: %d cached tokens of dropped history removed, the %d after them "
                     "kept", self.name, cut.end - cut.start, cut.kept)
        return cached[:cut.start] + cached[cut.end:cut.end + cut.kept]

    def _snapshot(self) -> LlamaState:
        """What `Llama.save_state()` saves, with one row of logits, in a mapping of its own.

        `save_state()` copies the logits of every evaluated prompt token (SmolLM2's 49k
        vocabulary: ~36 MB for a 186-token prompt, ~50 MB at n_batch) and the state
        twice through malloc'd buffers. Nothing reads restored logits (every prompt has
        new tokens after the restored prefix, and evaluating them produces fresh ones),
        so one row is kept: a 256 MiB store then holds dozens of conversations instead
        of ~5 (BENCHMARKS.md).

        The state itself (KV cells: SmolLM2 ~23 KB per token, so 1-5 MB) is written
        straight into an anonymous mapping that is unmapped when the state is dropped.
        Kept in glibc's heap instead, states of vanished clients left holes among live
        allocations that `malloc_trim` could not return: the reliability suite's RSS
        growth is measured with and without this in BENCHMARKS.md ("Reliability").
        """
        llama = self._llama
        capacity = llama_state_get_size(llama.ctx)
        region = mmap.mmap(-1, capacity)
        view = (ctypes.c_uint8 * capacity).from_buffer(region)
        n_bytes = llama_state_get_data(llama.ctx, view, capacity)
        del view  # an exported buffer would keep the mapping from being closed
        n_tokens = llama.n_tokens
        return LlamaState(
            input_ids=llama.input_ids.copy(),  # whole (n_ctx,): load_state assigns it as is
            # `scores` is one row here (see __init__): load_state's `scores[:n_tokens] =
            # saved` writes that row (an empty array would fail to broadcast).
            scores=llama.scores.copy(),
            n_tokens=n_tokens,
            # Read by `load_state` through the buffer protocol only (from_buffer_copy).
            llama_state=cast(bytes, region),
            llama_state_size=n_bytes,
            seed=llama._seed,  # what save_state() records
        )

    def _evaluate(self, tokens: list[int]) -> None:
        """Bring `tokens` into the KV cache (prefix reuse included), generating nothing.

        One token is sampled but never evaluated, so the cache ends exactly at `tokens`
        and the following `create_completion` only evaluates what comes after them.
        """
        self._llama.create_completion(tokens, max_tokens=1, temperature=0.0)

    def _generate(
        self,
        tokens: list[int],
        emit: Callable[[ReplyDelta], None],
        stop: threading.Event,
        max_tokens: int | None,
        should_yield: Callable[[], bool] | None = None,
    ) -> tuple[int, str]:
        """Stream the completion of `tokens`; return (tokens generated, finish reason)."""
        llama, config = self._llama, self._config
        stream: Any = llama.create_completion(  # stream=True: an iterator of chunk dicts
            tokens,
            stream=True,
            max_tokens=max_tokens or config.max_reply_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repeat_penalty=config.repeat_penalty,
            seed=config.seed if config.seed >= 0 else None,
        )
        reply_tokens = 0
        finish_reason = "cancelled"
        burst = self._burst
        if burst is not None:
            self._use_threads(burst.start_reply())
        step_started = time.perf_counter()
        sampled = 0
        try:
            for chunk in stream:
                # A chunk = one more sampled token; the next step decodes it. The first
                # decoding step after the prompt is not comparable either: llama.cpp
                # plans its graph again for one token (up to 2.5x a later step, seen).
                if burst is not None and burst.bursting:
                    now = time.perf_counter()
                    sampled += 1
                    self._use_threads(burst.after_step(
                        sampled, now - step_started if sampled > 2 else None))
                    step_started = now
                if stop.is_set():
                    break
                if should_yield is not None and should_yield():
                    finish_reason = "yielded"
                    break
                choice = chunk["choices"][0]
                text = choice["text"]
                if text:
                    reply_tokens = llama.n_tokens - len(tokens) + 1
                    emit(ReplyDelta(text))
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            stream.close()  # no extra token after a stop (GeneratorExit inside llama.cpp)
            if burst is not None:
                if (floor := burst.end_reply()) is not None:
                    self._use_threads(floor)
                _LOGGER.debug("%s: %d of the reply's steps ran with %d threads (then: %s)",
                              self.name, burst.burst_steps, burst.threads.decode,
                              burst.reason)
        return reply_tokens, finish_reason

    def prefill(self, key: str, messages: list[ChatMessage],
                should_yield: Callable[[], bool] | None = None,
                step_tokens: int = 16, partial: bool = False,
                fallback_key: str | None = None) -> int:
        """Evaluate the prompt of `messages` and save the KV state under `key`.

        Used for each persona at start-up, in the background for a conversation whose
        history was shortened, and while the player types (`partial`). The prompt is
        evaluated `step_tokens` at a time; when `should_yield()` turns true (a turn is
        waiting for this context) it stops early and saves what it has: a partial
        prefix still shortens the next prefill, and a player never waits seconds
        behind housekeeping. A prefill of a prompt whose oldest history was dropped
        evaluates it exactly; if it must yield before the end of the turns kept, it
        saves the cache it started from with the dropped turns cut out instead
        (daemon.llm.kv_shift), so the waiting turn evaluates only its own line.

        Args:
          key: The conversation whose KV state is extended and saved.
          messages: Its chat messages, system persona first.
          should_yield: See above.
          step_tokens: Tokens evaluated between two `should_yield` checks: the longest
            a turn waits behind this prefill. 16 (~60-100 ms on one thread) rather than
            64: a turn after a history cut waited up to 490 ms (BENCHMARKS.md, "Queue").
          partial: The last message is a line being typed: evaluate only up to the
            end of its text (`format_prompt_prefix`).
          fallback_key: State to start from when `key` has none yet (the persona's).

        Returns:
          Prompt tokens now in the cache (all of them unless it yielded).

        Raises:
          PromptTooLong: the prompt leaves less than `max_reply_tokens` of the context
            free; nothing was evaluated or saved.
        """
        llama = self._llama
        if self._holding != key:
            state = self._states.get(key)
            if state is None and fallback_key is not None:
                state = self._states.get(fallback_key)
            if state is not None:
                llama.load_state(state)
            self._holding = key
        prompt = self.format_prompt_prefix(messages) if partial else self.format_prompt(messages)
        tokens = self._fitting(self._tokens(prompt), self._config.max_reply_tokens)
        cached = llama.input_ids[: llama.n_tokens].tolist()
        done = shared_prefix_length(cached, tokens)
        cut = find_cut(cached, tokens) if can_shift(llama) else None
        # What the cache holds now (its last save), to cut if a turn comes too soon.
        uncut = self._states.get(key) if cut is not None else None
        try:
            while done < len(tokens):
                if should_yield is not None and should_yield():
                    if cut is not None and uncut is not None and done < cut.tokens_after:
                        llama.load_state(uncut)
                        apply_cut(llama, cut)
                        done = cut.tokens_after
                        _LOGGER.info("%s: %s's dropped history cut out of the cache (%d "
                                     "tokens) for a waiting turn", self.name, key,
                                     cut.end - cut.start)
                    _LOGGER.info("%s: prefill of %s yielded to a waiting turn at %d/%d tokens",
                                 self.name, key, done, len(tokens))
                    break
                done = min(len(tokens), done + step_tokens)
                self._evaluate(tokens[:done])
        finally:
            self._states.put(key, self._snapshot())
        return done
