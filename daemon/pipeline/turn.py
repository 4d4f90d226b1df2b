"""One turn: utterance -> LLM tokens -> phrase chunks -> TTS audio -> PCM blocks.

Two stages run at once so that nothing waits for a whole reply: a writer task feeds
LLM text to the chunker and puts chunks on a bounded queue; the turn's own coroutine
takes chunks off it, synthesises them and sends blocks as soon as they exist. The
LLM therefore keeps generating while the TTS speaks the first phrase.

In a two-tier turn the LLM stream holds a hand-off marker between the fast tier's
opener and the narrative tier's continuation: the opener's chunker is flushed there
(its chunks keep the fast profile) and a new chunker with the continuation's profile
takes over; chunk indices go on counting, so the wire looks like any other turn.

Cancellation (barge-in) is owned by the server: it sends `cancelled`, drops the
turn's queued blocks, sets `stop` and cancels the task; the sink then refuses
anything the turn still produces. Every stage closes its engine stream in `finally`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import numpy as np

from bridge_protocol.messages import AudioBlock, Subtitle, Timing, TurnTimings
from daemon.config import Tiers
from daemon.llm.base import (
    LlmStage,
    PromptTooLong,
    ReplyDelta,
    ReplyItem,
    ReplyStarted,
    ReplyStats,
    TierHandoff,
)
from daemon.llm.conversation import Dialogue, make_room
from daemon.pipeline.blocks import BlockCutter, samples_per_block
from daemon.pipeline.chunker import Chunk, PhraseChunker
from daemon.pipeline.text import speakable
from daemon.pipeline.timing_wire import energy_message, visemes_message
from daemon.pipeline.timings import MILESTONES
from daemon.priorities import NORMAL
from daemon.profiles import Profile
from daemon.tts.base import ChunkResampler, SpeechTiming, Voice

_LOGGER = logging.getLogger(__name__)

SendFn = Callable[[AudioBlock | Subtitle | Timing, bytes | None], None]
"""Queues a message (and its PCM) for the client; raises `ClientTooSlow` when full."""

_CHUNK_QUEUE_SIZE = 32
_MILESTONE_FIELDS = (*MILESTONES, "llm_done_ms", "last_block_ms", "narrative_first_token_ms")
"""The `TurnTimings` fields that are times since the utterance (`Turn.rebase`)."""
_END = object()


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


@dataclass(frozen=True, slots=True)
class _Queued:
    """A chunk on its way to TTS, with the profile of the tier that wrote it."""

    chunk: Chunk
    profile: Profile
    continuation: bool  # written by the narrative tier after a hand-off


@dataclass(kw_only=True)
class TurnSpec:
    """Everything a turn needs, resolved by the server from a `say`.

    Attributes:
      turn_id: The id the turn starts under: the client's, or a negative one for a
        speculative turn until it is released (see `Turn.turn_id`).
      npc_id: The NPC speaking.
      utterance: The player's line.
      profile_name: Name of the speech profile used (of the opener, in a two-tier turn).
      profile: Its settings.
      voice: The NPC's voice.
      conversation: The NPC's conversation with this client (recorded when done).
      conversation_key: KV-state key of that conversation.
      out_rate_hz: Sample rate of the blocks sent.
      received_at: `time.perf_counter()` when the utterance was complete (TTFA zero).
      tiers: LLM tiers writing the reply ("fast", "narrative" or "both").
      continuation_profile: Speech profile of the narrative tier's continuation in a
        two-tier turn; None = `profile`.
      priority: `AMBIENT`, `NORMAL` or `HIGH` (daemon.llm.base): orders turns competing
        for the LLM and the voices.
      language: BCP 47 tag of the reply (the NPC's language): the chunker's rules.
      timing: Send `timing` messages (word and viseme timing, or mouth values) ahead of
        the blocks they describe (the client asked for them in `hello`).
    """

    turn_id: int
    npc_id: str
    utterance: str
    profile_name: str
    profile: Profile
    voice: Voice
    conversation: Dialogue
    conversation_key: str
    out_rate_hz: int
    received_at: float
    tiers: Tiers = "fast"
    continuation_profile: Profile | None = None
    priority: int = NORMAL
    language: str = "en"
    timing: bool = False


@dataclass
class TurnProgress:
    """What a turn has done so far; read by the server for its terminal event."""

    timings: TurnTimings = field(default_factory=TurnTimings)
    block_count: int = 0
    sample_count: int = 0
    spoken_chunks: list[str] = field(default_factory=list)

    @property
    def spoken_text(self) -> str:
        """The chunks whose audio started, joined: what the player heard (or began to)."""
        return " ".join(self.spoken_chunks)


class Turn:
    """Runs one turn. Create, then `await run()` inside a task the server owns.

    Args:
      spec: The resolved request.
      llm: The LLM stage (one or two tiers).
      send: Queues messages for the client (see `SendFn`).
    """

    def __init__(self, spec: TurnSpec, llm: LlmStage, send: SendFn) -> None:
        self.spec = spec
        self.turn_id = spec.turn_id
        """The id on the messages it sends; a speculative turn gets its client-visible id
        when it is released (`daemon.server.turn_handle.TurnHandle.assign_id`)."""
        self.progress = TurnProgress()
        self.stop = threading.Event()
        self.reply_text = ""
        """The reply as the LLM wrote it so far (speakable characters only)."""
        self.llm_done = asyncio.Event()
        """Set once the LLM stage is over (the whole reply is in `reply_text`)."""
        self._winding_down = False
        self._chunks: asyncio.Queue[object] | None = None
        self._llm = llm
        self._send = send
        self._native_samples = 0  # voice-rate samples synthesised so far (timing offsets)
        self._cut_samples = 0  # block-rate samples cut into blocks so far

    def wind_down(self) -> None:
        """End the turn after the chunk being spoken.

        No later chunk is spoken; the turn then ends normally (`done`), its last block
        marked `final`. A scene uses it when the player speaks up: the NPC stops at a
        clause boundary, not mid-word.
        """
        self._winding_down = True
        if self._chunks is not None and not self._chunks.full():
            self._chunks.put_nowait(_END)  # wakes the speaking stage if it waits for text

    def released(self) -> None:
        """Note that a speculative turn's held-back messages are being sent now.

        Its first block leaves now, not when it was made, so the daemon-side TTFA counts
        to now.
        """
        if self.progress.block_count:
            timings = self.progress.timings
            timings.first_block_ms = max(timings.first_block_ms or 0.0, self._ms())

    def rebase(self, received_at: float) -> None:
        """Count the turn's times from `received_at`, later than its start.

        For a reply started on a typed line before its `say` (a speculative turn, see
        `daemon.server.typing`): its TTFA counts from the `say`, so every milestone
        moves back by the lead, and one reached before the `say` becomes 0 ms.
        `speculative` is set and `speculative_lead_ms` records the lead.

        Args:
          received_at: `time.perf_counter()` of the `say`; not before the turn's own
            `received_at`.
        """
        lead_ms = max((received_at - self.spec.received_at) * 1000.0, 0.0)
        self.spec.received_at = received_at
        timings = self.progress.timings
        for name in _MILESTONE_FIELDS:
            at = getattr(timings, name)
            if at is not None:
                setattr(timings, name, round(max(at - lead_ms, 0.0), 2))
        timings.speculative = True
        timings.speculative_lead_ms = round(lead_ms, 1)

    def note_voice_input(self, asr_ms: float | None, speculative: bool,
                         endpoint_ms: float, endpoint_by: str | None = None,
                         turn_complete: float | None = None) -> None:
        """Record how a voice turn's utterance was recognised (see `TurnTimings`)."""
        timings = self.progress.timings
        timings.asr_ms = asr_ms
        timings.speculative = speculative
        timings.endpoint_ms = round(endpoint_ms, 1)
        timings.endpoint_by = endpoint_by
        timings.turn_complete = None if turn_complete is None else round(turn_complete, 3)

    def _ms(self) -> float:
        return round((time.perf_counter() - self.spec.received_at) * 1000.0, 2)

    async def run(self) -> None:
        """Speak the reply; returns when every block is queued for the client.

        Raises:
          ClientTooSlow: the client's send queue overflowed.
          Exception: an engine failed (the server turns it into an `error` event).
        """
        chunks: asyncio.Queue[object] = asyncio.Queue(maxsize=_CHUNK_QUEUE_SIZE)
        self._chunks = chunks
        writer = asyncio.create_task(
            self._write_chunks(chunks), name=f"turn-{self.turn_id}-llm"
        )
        try:
            await self._speak_chunks(chunks)
        finally:
            self.stop.set()
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        timings = self.progress.timings
        audio_ms = timings.audio_ms
        timings.rtf = round(timings.tts_busy_ms / audio_ms, 4) if audio_ms else None

    async def _write_chunks(self, chunks: asyncio.Queue[object]) -> None:
        """LLM stage: reply text -> chunker -> chunk queue; always ends with _END."""
        spec, timings = self.spec, self.progress.timings
        profile = spec.profile
        chunker = PhraseChunker(profile, spec.language)
        first_index = 0  # chunk index of the current chunker's first chunk
        continuation = False
        outcome: object = _END
        try:
            async with aclosing(self._reply()) as stream:
                async for item in stream:
                    if isinstance(item, ReplyDelta):
                        if timings.llm_first_token_ms is None:
                            timings.llm_first_token_ms = self._ms()
                        if continuation and timings.narrative_first_token_ms is None:
                            timings.narrative_first_token_ms = self._ms()
                        text = speakable(item.text)
                        self.reply_text += text
                        for chunk in chunker.feed(text):
                            await chunks.put(_Queued(_renumbered(chunk, first_index),
                                                     profile, continuation))
                    elif isinstance(item, TierHandoff):
                        # The opener is complete: its last chunk goes out now, not
                        # merged with the continuation's first words.
                        for chunk in chunker.flush():
                            await chunks.put(_Queued(
                                _renumbered(chunk, first_index, is_last=False), profile, False))
                        first_index += chunker.chunk_count
                        profile = spec.continuation_profile or spec.profile
                        chunker = PhraseChunker(profile, spec.language)
                        continuation = True
                    elif isinstance(item, ReplyStarted):
                        if timings.queued_ms is None:
                            timings.queued_ms = self._ms()
                    elif isinstance(item, ReplyStats):  # one per tier: summed
                        timings.prompt_tokens += item.prompt_tokens
                        timings.prefill_tokens += item.prefill_tokens
                        timings.reply_tokens += item.reply_tokens
            timings.llm_done_ms = self._ms()
            for chunk in chunker.flush():
                await chunks.put(_Queued(_renumbered(chunk, first_index), profile, continuation))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the speaking stage, which raises it
            outcome = _Failure(exc)
        finally:
            self.llm_done.set()
        await chunks.put(outcome)

    async def _reply(self) -> AsyncGenerator[ReplyItem, None]:
        """The LLM's reply to the utterance, with the history its prompt has room for.

        A prompt that outgrew the model's context before `history_turns` turns (long
        lines, long replies, a long persona) drops the oldest half of the history, and
        the LLM is asked again. The prefix then changed, so this turn evaluates the
        whole shortened prompt; a `typing` prefill or the prefill after the turn before
        shortens it in the background where they meet it first.

        Raises:
          PromptTooLong: the persona and the utterance alone do not fit.
        """
        spec = self.spec
        while True:
            replied = False
            messages = spec.conversation.messages_for(spec.utterance)
            reply = self._llm.reply(spec.conversation_key, messages, self.stop,
                                    persona_key=spec.npc_id, tiers=spec.tiers,
                                    priority=spec.priority, language=spec.language)
            try:
                async with aclosing(reply) as stream:
                    async for item in stream:
                        replied = replied or isinstance(item, ReplyDelta)
                        yield item
                return
            except PromptTooLong as error:
                if replied or not make_room(spec.conversation, spec.utterance, messages):
                    raise
                _LOGGER.info("turn %s: %s; %s's history shortened to %d turns",
                             self.turn_id, error, spec.conversation_key,
                             len(spec.conversation))

    async def _speak_chunks(self, chunks: asyncio.Queue[object]) -> None:
        """TTS stage: chunk queue -> voice -> subtitles and blocks."""
        final_block_sent = False
        while not self._winding_down:
            item = await chunks.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            assert isinstance(item, _Queued)
            timings = self.progress.timings
            if timings.first_chunk_ms is None:
                timings.first_chunk_ms = self._ms()
            if item.continuation and timings.handoff_chunk_index is None:
                timings.handoff_chunk_index = item.chunk.index
            final_block_sent = await self._speak(item.chunk, item.profile)
        if not final_block_sent:
            # No audio in the last chunk (or no chunk at all): an empty final block
            # still tells the client that the turn's audio is complete.
            self._send_block(np.zeros(0, dtype=np.int16), chunk_index=0, final=True)

    async def _speak(self, chunk: Chunk, profile: Profile) -> bool:
        """Synthesise one chunk and send its blocks; returns True if a final block went out.

        Blocks of a chunk go out as soon as they are full (`profile.block_ms` each); the
        chunk's short tail goes out at its end. In the last chunk one block is held
        back so that the turn's last block can carry `final=True`. With `spec.timing`,
        the chunk's `timing` messages go out after its subtitle and before the blocks
        they describe.
        """
        spec, timings = self.spec, self.progress.timings
        voice = spec.voice
        cutter = BlockCutter(samples_per_block(spec.out_rate_hz, profile.block_ms))
        # One resampler per chunk: pieces (decoder windows) join without filter seams.
        resampler = ChunkResampler(voice.sample_rate_hz, spec.out_rate_hz, self._native_samples)
        chunk_native_start = self._native_samples
        energy = spec.timing and voice.lip_sync == "energy"
        pending: list[Timing] = []  # timing that arrived before the chunk's subtitle
        held: np.ndarray | None = None
        subtitled = False

        def send_blocks(blocks: list[np.ndarray]) -> None:
            nonlocal held
            if energy and blocks:
                self._send(energy_message(self.turn_id, chunk.index, blocks,
                                          self._cut_samples, spec.out_rate_hz), None)
            for block in blocks:
                self._cut_samples += int(block.size)
                if chunk.is_last:
                    if held is not None:
                        self._send_block(held, chunk.index, final=False)
                    held = block
                else:
                    self._send_block(block, chunk.index, final=False)

        started = time.perf_counter()
        stream = (voice.stream_timed if spec.timing else voice.stream)(
            chunk.text, self.stop, turn_start=chunk.index == 0, priority=spec.priority)
        async with aclosing(stream) as audio_stream:
            async for item in audio_stream:
                if isinstance(item, SpeechTiming):
                    message = visemes_message(self.turn_id, chunk.index, item,
                                              chunk_native_start, voice.sample_rate_hz,
                                              spec.out_rate_hz)
                    if subtitled:
                        self._send(message, None)
                    else:
                        pending.append(message)
                    continue
                if timings.tts_first_audio_ms is None:
                    timings.tts_first_audio_ms = self._ms()
                timings.tts_busy_ms = round(
                    timings.tts_busy_ms + (time.perf_counter() - started) * 1000.0, 2
                )
                self._native_samples += int(item.size)
                audio = resampler.push(item)
                if not subtitled:
                    self._send(Subtitle(turn_id=self.turn_id, chunk_index=chunk.index,
                                        text=chunk.text), None)
                    self.progress.spoken_chunks.append(chunk.text)
                    subtitled = True
                    for message in pending:
                        self._send(message, None)
                send_blocks(cutter.push(audio))
                started = time.perf_counter()
        send_blocks(cutter.push(resampler.flush()))
        tail = cutter.flush()
        if tail is not None:
            if energy:
                self._send(energy_message(self.turn_id, chunk.index, [tail],
                                          self._cut_samples, spec.out_rate_hz), None)
            self._cut_samples += int(tail.size)
        if not chunk.is_last:
            if tail is not None:
                self._send_block(tail, chunk.index, final=False)
            return False
        if held is not None and tail is not None:
            self._send_block(held, chunk.index, final=False)
            held = tail
        elif tail is not None:
            held = tail
        if held is None:
            return False
        self._send_block(held, chunk.index, final=True)
        return True

    def _send_block(self, samples: np.ndarray, chunk_index: int, final: bool) -> None:
        progress, spec = self.progress, self.spec
        header = AudioBlock(
            turn_id=self.turn_id,
            seq=progress.block_count,
            sample_rate_hz=spec.out_rate_hz,
            sample_count=int(samples.size),
            chunk_index=chunk_index,
            final=final,
        )
        self._send(header, samples.astype("<i2", copy=False).tobytes())
        now_ms = self._ms()
        timings = progress.timings
        if progress.block_count == 0:
            timings.first_block_ms = now_ms
        elif chunk_index == timings.handoff_chunk_index and timings.handoff_gap_ms is None:
            # A client that started playing at the first block plus the opener's
            # pre-buffer runs out of opener audio here; later than that is silence.
            opener_end_ms = (timings.first_block_ms or 0.0) + spec.profile.prebuffer_ms \
                + timings.audio_ms
            timings.handoff_gap_ms = round(max(0.0, now_ms - opener_end_ms), 2)
        timings.last_block_ms = now_ms
        progress.block_count += 1
        progress.sample_count += int(samples.size)
        progress.timings.audio_ms = round(progress.sample_count * 1000.0 / spec.out_rate_hz, 2)


def _renumbered(chunk: Chunk, first_index: int, is_last: bool | None = None) -> Chunk:
    """`chunk` with its index counted from the turn's start (chunkers count from 0)."""
    return Chunk(chunk.text, chunk.index + first_index,
                 chunk.is_last if is_last is None else is_last)
