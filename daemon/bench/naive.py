"""The naive sequential pipeline, in-process, for `npc-voice bench --modes naive`.

What the original system started from: wait for the whole LLM reply, chunk it, then
synthesise the first chunk whole and send it; later chunks follow one after the other.
It runs on the daemon's own engine code (`LlamaContext`, `PiperEngine`,
`PhraseChunker`) with the same model, chat template, personas, sampling, history and
per-NPC KV cache as the daemon, so a comparison with the streaming daemon measures
the pipeline's shape, not different engines. TTFA is utterance -> the first chunk's
audio ready to send (no IPC).

`InProcessModels` is shared with the RealtimeTTS mode (daemon/bench/peer_libraries.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from bridge_protocol.client import TurnResult
from bridge_protocol.messages import TurnTimings
from daemon.config import Config, VoiceConfig
from daemon.llm.base import ReplyDelta, ReplyEvent, ReplyStarted, ReplyStats
from daemon.llm.conversation import Conversation, persona_messages
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.models import resolve_piper_voice
from daemon.pipeline.blocks import samples_per_block
from daemon.pipeline.chunker import PhraseChunker
from daemon.pipeline.text import speakable
from daemon.profiles import Profile
from daemon.tts.base import TtsEngine
from daemon.tts.hibari import HibariEngine
from daemon.tts.piper import PiperEngine

_LOGGER = logging.getLogger(__name__)


class InProcessModels:
    """The daemon's LLM and Piper voices loaded in this process, warmed and prefilled.

    The llama.cpp context lives on one owner thread (it is not thread-safe); Piper
    engines are used from the caller's thread only.

    Args:
      config: The daemon configuration (model, threads, sampling, voices, NPCs).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._llm_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-llm")
        states = KvStateStore(config.llm.state_cache_bytes)
        self._llm: LlamaContext = self._llm_thread.submit(
            LlamaContext, llm_gguf(config.llm.model), config.llm, states, "bench-llm"
        ).result()
        self._engines: dict[str, TtsEngine] = {}  # by model file, or "hibari"
        for npc in config.npcs.values():
            key = self._engine_key(npc.voice)
            if key not in self._engines:
                self._engines[key] = self._load_engine(npc.voice)
        for npc_id, npc in config.npcs.items():
            self._llm_thread.submit(self._llm.prefill, npc_id,
                                    persona_messages(npc.persona)).result()

    def _engine_key(self, voice_name: str) -> str:
        voice = self.config.voices[voice_name]
        if voice.engine == "hibari":
            return "hibari"
        return str(resolve_piper_voice(voice.model)[0])

    def _load_engine(self, voice_name: str) -> TtsEngine:
        """The engine of a configured voice: Piper, or hibari (XTTS is not benchmarked here).

        Raises:
          ValueError: an XTTS voice (it runs in its own worker process).
        """
        voice = self.config.voices[voice_name]
        if voice.engine == "hibari":
            hibari = HibariEngine(self.config.tts.onnx_threads)
            hibari.warm_up()
            return hibari
        if voice.engine != "piper":
            raise ValueError(f"voice {voice_name!r}: the naive mode runs Piper and hibari "
                             f"voices only, not {voice.engine}")
        piper = PiperEngine(*resolve_piper_voice(voice.model), self.config.tts.onnx_threads)
        piper.warm_up()
        return piper

    def voice_of(self, npc_id: str) -> tuple[TtsEngine, VoiceConfig]:
        """The loaded engine and the voice settings of an NPC."""
        voice_name = self.config.npcs[npc_id].voice
        return self._engines[self._engine_key(voice_name)], self.config.voices[voice_name]

    def profile_of(self, npc_id: str) -> Profile:
        """The speech profile of an NPC."""
        return self.config.profile(self.config.npcs[npc_id].profile)

    def start_reply(self, key: str, npc_id: str, messages: list[dict[str, str]],
                    emit: Callable[[ReplyEvent], None]) -> Future[None]:
        """Generate a reply on the LLM thread, streaming it through `emit` (from that thread).

        Args:
          key: The conversation's KV-state key.
          npc_id: NPC whose prefilled persona state a new conversation starts from.
          messages: The chat messages (persona, history, the new line).
          emit: Receives `ReplyStarted`, `ReplyDelta`s, then `ReplyStats`.
        """
        return self._llm_thread.submit(self._llm.reply, key, messages, emit,
                                       threading.Event(), fallback_key=npc_id)

    def reprefill_in_background(self, key: str, messages: list[dict[str, str]]) -> None:
        """Queue the evaluation of a shortened history prefix on the LLM thread.

        As the daemon does after a turn that trimmed its history: the next reply waits
        for it only if it comes while the prefill still runs (back to back, here).
        """
        self._llm_thread.submit(self._llm.prefill, key, messages)

    def close(self) -> None:
        """Stop the LLM thread."""
        self._llm_thread.shutdown(wait=True)


class Conversations:
    """One client's conversations with every NPC, as the daemon keeps them per connection.

    Args:
      models: The loaded models.
      client: Prefix of the KV-state keys (one per mode, so modes never share history).
    """

    def __init__(self, models: InProcessModels, client: str) -> None:
        self._models = models
        self._client = client
        self._by_npc: dict[str, Conversation] = {}

    def key(self, npc_id: str) -> str:
        """KV-state key of the conversation with `npc_id`."""
        return f"{npc_id}/{self._client}"

    def messages_for(self, npc_id: str, line: str) -> list[dict[str, str]]:
        """Chat messages for a new player line to `npc_id`."""
        conversation = self._by_npc.get(npc_id)
        if conversation is None:
            config = self._models.config
            conversation = Conversation(config.npcs[npc_id].persona, config.llm.history_turns)
            self._by_npc[npc_id] = conversation
        return conversation.messages_for(line)

    def record(self, npc_id: str, line: str, reply: str) -> None:
        """Remember a finished turn; re-prefill a shortened history in the background."""
        conversation = self._by_npc[npc_id]
        if conversation.record(line, reply):
            self._models.reprefill_in_background(self.key(npc_id),
                                                 conversation.messages_for(""))


class TurnClock:
    """Milestones of one in-process turn, in ms since the utterance (`started`)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings = TurnTimings()
        self.reply_parts: list[str] = []

    def ms(self, at: float | None = None) -> float:
        """Milliseconds from the utterance to `at` (default: now)."""
        return round(((at if at is not None else time.perf_counter()) - self.started) * 1000, 2)

    def on_reply(self, item: ReplyEvent) -> None:
        """`emit` for `InProcessModels.start_reply`: records LLM milestones and text."""
        timings = self.timings
        if isinstance(item, ReplyDelta):
            if timings.llm_first_token_ms is None:
                timings.llm_first_token_ms = self.ms()
            self.reply_parts.append(item.text)
        elif isinstance(item, ReplyStarted):
            timings.queued_ms = self.ms()
        elif isinstance(item, ReplyStats):
            timings.llm_done_ms = self.ms()
            timings.prompt_tokens = item.prompt_tokens
            timings.prefill_tokens = item.prefill_tokens
            timings.reply_tokens = item.reply_tokens

    def audio_ready(self, result: TurnResult, audio: np.ndarray, block_samples: int,
                    at: float) -> None:
        """int16 `audio` became ready to send at `at`: record it as blocks arriving then."""
        if not audio.size:
            return
        if not result.block_arrivals:
            self.timings.tts_first_audio_ms = self.timings.first_block_ms = self.ms(at)
        for start in range(0, audio.size, block_samples):
            result.block_arrivals.append((at, min(block_samples, audio.size - start)))
        result.pcm.extend(audio.astype("<i2", copy=False).tobytes())
        self.timings.last_block_ms = self.ms(at)

    def finish(self, result: TurnResult) -> None:
        """Fill the audio duration and RTF once every block is ready."""
        timings = self.timings
        rate = result.sample_rate_hz
        total = sum(n for _, n in result.block_arrivals)
        timings.audio_ms = round(total * 1000.0 / rate, 2) if rate else 0.0
        timings.rtf = round(timings.tts_busy_ms / timings.audio_ms, 4) if timings.audio_ms else None


def naive_turn(models: InProcessModels, conversations: Conversations, npc_id: str,
               line: str) -> tuple[TurnResult, TurnTimings, str]:
    """One turn of the naive pipeline: whole reply, then TTS chunk by chunk.

    Returns:
      (blocks as a client would get them, milestones, spoken reply text).
    """
    engine, voice = models.voice_of(npc_id)
    profile = models.profile_of(npc_id)
    block_samples = samples_per_block(engine.sample_rate_hz, profile.block_ms)
    messages = conversations.messages_for(npc_id, line)
    clock = TurnClock()
    result = TurnResult(turn_id=0, sent_at=clock.started, sample_rate_hz=engine.sample_rate_hz)
    models.start_reply(conversations.key(npc_id), npc_id, messages, clock.on_reply).result()
    reply = speakable("".join(clock.reply_parts))
    chunker = PhraseChunker(profile)
    chunks = chunker.feed(reply) + chunker.flush()
    if chunks:
        clock.timings.first_chunk_ms = clock.ms()
    stop = threading.Event()
    for chunk in chunks:
        pieces: list[np.ndarray] = []
        started = time.perf_counter()
        engine.synthesize(chunk.text, voice, pieces.append, stop)  # the whole chunk
        done = time.perf_counter()
        clock.timings.tts_busy_ms = round(clock.timings.tts_busy_ms + (done - started) * 1000, 2)
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        clock.audio_ready(result, audio, block_samples, done)
    clock.finish(result)
    spoken = " ".join(chunk.text for chunk in chunks)
    conversations.record(npc_id, line, spoken)
    return result, clock.timings, spoken
