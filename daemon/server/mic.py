"""Microphone input: streams -> endpointing -> ASR -> turns, with speculative turns.

One `MicSession` per client microphone. VAD runs on the event loop (Silero VAD v6 through
ONNX Runtime, one model shared by every stream, ~0.15 ms per 32 ms frame, measured here);
Whisper runs on its own engine thread.

Speculative start: on a short pause (`pause_ms`) the utterance so far is transcribed
and a *speculative turn* is started: the LLM and TTS work, but nothing reaches the
client. If the player speaks again, the speculative turn is dropped without a sound; if
the pause becomes the endpoint, it is released with everything it has already produced,
so the reply is under way before the endpoint is even certain.

End of turn: at the same pause the end-of-turn model (Smart Turn, `daemon.asr.smart_turn`)
judges whether the player has finished. If so, the utterance ends there; if not, it
ends after `unfinished_silence_ms` of silence, so a player thinking mid-sentence is not
cut off. Without the model, the utterance ends after `end_silence_ms` of silence.
Partial transcripts: while the player speaks, every `partial_transcript_ms` of speech the
utterance so far is transcribed and its finished words prefill the NPC's prompt, as a
line being typed does (`daemon.server.typing`), so the turn started at the pause
evaluates only the last words. One partial transcription at a time per microphone; one
is started only while speech goes on, so it is done before the pause's own
transcription needs the ASR thread (a pause is declared `pause_ms` plus the VAD's lag
after the speech, a partial takes ~200 ms with the 10 s encoder window).
TTFA of a voice turn counts from the end of speech (when the daemon received the last
voiced audio), so the endpoint's silence wait is inside it.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bridge_protocol.framing import DecodedMic
from bridge_protocol.messages import (
    ErrorCode,
    ListenStart,
    Say,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from daemon.asr.endpointing import FRAME_MS, EndpointEvent, EndpointSettings
from daemon.asr.engines import AsrEngines
from daemon.asr.mic_stream import MicEvent, MicStream, frame_to_ms
from daemon.asr.transcriber import WHISPER_WINDOW_S, DecodeOptions, Transcriber
from daemon.asr.vad import SpeechProbability
from daemon.config import AsrConfig
from daemon.pipeline.timings import ms_since
from daemon.server.clients import Client
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turn_handle import TurnHandle
from daemon.server.turns import TurnManager

_LOGGER = logging.getLogger(__name__)


@dataclass(eq=False)
class _Speculation:
    """A transcription (and maybe a speculative turn) started on a pause."""

    event: EndpointEvent
    task: asyncio.Task[None] | None = None
    dropped: bool = False
    text: str | None = None
    asr_ms: float | None = None
    handle: TurnHandle | None = None


_MAX_PENDING_S = 10.0
"""Microphone audio waiting for VAD, per stream, in seconds of input: beyond it blocks
are dropped (`mic_audio_too_fast`), so a client sending far faster than real time
costs bounded memory and shares the event loop instead of stalling it."""

_LISTEN_STOP = object()
"""Queued after the audio when `listen_stop` arrives: the utterance ends after it."""


@dataclass(frozen=True, slots=True)
class _TurnJudged:
    """The end-of-turn model's judgement of a pause.

    Queued in order with the audio, so speech that arrived meanwhile resumes the
    utterance before the judgement is looked at.
    """

    speech_end_frame: int
    probability: float
    complete: bool


@dataclass(eq=False)
class MicSession:
    """One client's open microphone.

    Blocks are queued on arrival (with their arrival time) and run through the VAD by
    one task per session that yields to the event loop after each block.
    """

    request: ListenStart
    stream: MicStream
    opened_at: float
    next_seq: int = 0
    arrivals: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=4096))
    speculation: _Speculation | None = None
    pending: deque[tuple[bytes, float] | object] = field(default_factory=deque)
    pending_samples: int = 0
    worker: asyncio.Task[None] | None = None
    overflowing: bool = False
    judged: _TurnJudged | None = None
    """The end-of-turn model's judgement of the latest pause."""
    transcriber: Transcriber | None = None
    """The Whisper model that hears the addressed NPC (None: the English one)."""
    decode: DecodeOptions | None = None
    """Decoding settings, with the addressed NPC's language (None: the defaults)."""
    partial_at_ms: float = 0.0
    """Speech (ms since the utterance's start) the last partial transcript covered."""
    partial_running: bool = False

    def wall_time_of(self, frame: int) -> float:
        """perf_counter() at which input frame `frame` had been received."""
        ends = [end for end, _ in self.arrivals]
        index = bisect.bisect_left(ends, frame)
        if index >= len(self.arrivals):
            return time.perf_counter()
        return self.arrivals[index][1]


class MicInput:
    """Microphone streams of every client, turned into (speculative) turns.

    Args:
      turns: Starts, releases and drops the turns.
      sender: Sends speech events and errors.
      tasks: Runs transcriptions and VAD off the reader's path.
      engines: Loaded ASR and VAD.
      config: The `[asr]` section.
      max_text_chars: Longest utterance text passed to a turn.
      prefill: Prefills an NPC's prompt with a line so far: (client, npc_id, text), e.g.
        `TypingPrefill.prefill_words`; None = no partial transcripts.
    """

    def __init__(self, turns: TurnManager, sender: Sender, tasks: BackgroundTasks,
                 engines: AsrEngines, config: AsrConfig, max_text_chars: int,
                 prefill: Callable[[Client, str, str], None] | None = None) -> None:
        self._turns = turns
        self._prefill = prefill
        self._sender = sender
        self._tasks = tasks
        self._max_text_chars = max_text_chars
        self._engines = engines
        self._config = config
        profile = config.resolved_profile()
        # With the end-of-turn model, silence alone ends only what it judged unfinished.
        end_silence_ms = (profile.unfinished_silence_ms if engines.smart_turn is not None
                          else profile.end_silence_ms)
        self._settings = EndpointSettings(
            threshold=config.vad_threshold, pause_ms=profile.pause_ms,
            speculate_ms=profile.speculate_ms, end_silence_ms=end_silence_ms,
            preroll_ms=config.preroll_ms)
        self._decode = DecodeOptions(beam_size=profile.beam_size, best_of=profile.best_of)
        self._sessions: dict[bytes, MicSession] = {}

    # ------------------------------------------------------------ client messages

    def listen_start(self, client: Client, request: ListenStart) -> None:
        """Open (or reopen) `client`'s microphone stream."""
        problem = self._turns.npc_problem(request.npc_id, request.profile)
        if problem is not None:
            self._sender.reject(client, *problem)
            return
        heard_by = self._engines.for_npc(request.npc_id)
        if heard_by is None:
            self._sender.reject(client, ErrorCode.VOICE_INPUT_UNAVAILABLE,
                                f"no multilingual Whisper model is loaded for "
                                f"{request.npc_id!r}'s language (see the daemon's log)")
            return
        self.client_gone(client)
        stream = MicStream(SpeechProbability(self._engines.vad), self._settings,
                           request.sample_rate_hz,
                           self._config.max_utterance_s)
        transcriber, route = heard_by
        self._sessions[client.identity] = MicSession(
            request, stream, time.perf_counter(), transcriber=transcriber,
            decode=dataclasses.replace(
                self._decode, language=route.language,
                beam_size=route.beam_size or self._decode.beam_size,
                # Measured on tiny.en only: the multilingual model keeps Whisper's window.
                encoder_window_s=(WHISPER_WINDOW_S if route.multilingual
                                  else self._config.encoder_window_s)))
        _LOGGER.info("client %s opened the microphone (%s, %d Hz) for %s", client.label,
                     request.mode, request.sample_rate_hz, request.npc_id)

    def mic_audio(self, client: Client, mic: DecodedMic) -> None:
        """Feed a block of microphone audio; act on the endpoint events it causes."""
        session = self._sessions.get(client.identity)
        if session is None:
            self._sender.reject(client, ErrorCode.NOT_LISTENING,
                                "mic_audio before listen_start (or after listen_stop)")
            return
        if mic.header.seq != session.next_seq:
            _LOGGER.warning("client %s: mic block %d after %d: %d block(s) lost", client.label,
                            mic.header.seq, session.next_seq - 1,
                            mic.header.seq - session.next_seq)
        session.next_seq = mic.header.seq + 1
        samples = mic.header.sample_count
        if session.pending_samples + samples > _MAX_PENDING_S * session.request.sample_rate_hz:
            if not session.overflowing:  # one error per overflow, not one per block
                session.overflowing = True
                self._sender.reject(client, ErrorCode.MIC_AUDIO_TOO_FAST,
                                    f"more than {_MAX_PENDING_S:.0f} s of microphone audio is "
                                    "waiting to be processed; blocks are being dropped (send "
                                    "audio at most a little faster than real time)")
            return
        session.overflowing = False
        session.pending.append((mic.pcm, time.perf_counter()))
        session.pending_samples += samples
        self._run_session(client, session)

    def listen_stop(self, client: Client) -> None:
        """Close the microphone; in push-to-talk mode the utterance ends here."""
        session = self._sessions.get(client.identity)
        if session is None:
            self._sender.reject(client, ErrorCode.NOT_LISTENING, "listen_stop without listen_start")
            return
        del self._sessions[client.identity]
        session.pending.append(_LISTEN_STOP)  # after the audio still waiting
        self._run_session(client, session)

    def _run_session(self, client: Client, session: MicSession) -> None:
        if session.worker is None or session.worker.done():
            session.worker = self._tasks.start(
                self._process(client, session), name=f"mic-{client.identity.hex()}")

    async def _process(self, client: Client, session: MicSession) -> None:
        """Run the queued blocks through the VAD and act on the events, in order."""
        while session.pending:
            item = session.pending.popleft()
            if item is _LISTEN_STOP:
                mic_event = session.stream.force_end()
                if mic_event is not None:
                    self._on_event(client, session, mic_event)
                return
            if isinstance(item, _TurnJudged):
                session.judged = item
                if item.complete:
                    mic_event = session.stream.end_if_paused(item.speech_end_frame,
                                                             "smart_turn")
                    if mic_event is not None:
                        self._on_event(client, session, mic_event)
                continue
            assert isinstance(item, tuple)
            pcm, arrived_at = item
            session.pending_samples -= len(pcm) // 2
            events = session.stream.push(pcm)
            session.arrivals.append((session.stream.frames_seen, arrived_at))
            for mic_event in events:
                self._on_event(client, session, mic_event)
            self._maybe_transcribe_partial(client, session)
            await asyncio.sleep(0)  # one block at a time: other clients go on meanwhile

    def client_gone(self, client: Client) -> None:
        """Forget `client`'s microphone (disconnect, or a new listen_start)."""
        session = self._sessions.pop(client.identity, None)
        if session is not None:
            session.pending.clear()
            if session.worker is not None:
                session.worker.cancel()
            self._drop_speculation(client, session)

    # ------------------------------------------------------------ endpoint events

    def _on_event(self, client: Client, session: MicSession, mic_event: MicEvent) -> None:
        event, audio = mic_event.event, mic_event.audio
        npc_id = session.request.npc_id
        if event.kind == "start":
            session.partial_at_ms = 0.0
            self._sender.send(client, SpeechStarted(npc_id=npc_id,
                                                  at_ms=frame_to_ms(event.speech_start_frame)))
            if self._config.barge_in:
                self._turns.barge_in(client, npc_id)
        elif event.kind in ("speculate", "pause") and audio is not None:
            held = session.speculation
            if self._config.speculative and (
                    held is None or held.event.speech_end_frame != event.speech_end_frame):
                self._drop_speculation(client, session)
                started = _Speculation(event)
                started.task = self._tasks.start(
                    self._speculate(client, session, started, audio), name="voice-speculation")
                session.speculation = started
            if event.kind == "pause" and self._engines.smart_turn is not None:
                heard = audio if mic_event.silence is None else np.concatenate(
                    (audio, mic_event.silence))
                self._tasks.start(self._judge_turn(client, session, event, heard),
                                  name="end-of-turn")
        elif event.kind == "resume":
            self._drop_speculation(client, session)
        elif event.kind == "end" and audio is not None:
            speculation, session.speculation = session.speculation, None
            if speculation is not None and (
                    speculation.event.speech_end_frame != event.speech_end_frame):
                self._drop(client, speculation)  # more speech after the pause
                speculation = None
            self._tasks.start(
                self._finish_utterance(client, session, event, audio, speculation),
                name="voice-endpoint")

    async def _judge_turn(self, client: Client, session: MicSession, event: EndpointEvent,
                          audio: np.ndarray) -> None:
        """Ask the end-of-turn model about the pause; queue its judgement with the audio.

        `audio` is the utterance with the pause's silence after it, as the model was
        trained (pipecat's analyzer is given the audio up to the VAD's stop).
        """
        smart_turn, thread = self._engines.smart_turn, self._engines.smart_turn_thread
        assert smart_turn is not None and thread is not None
        probability = await thread.call(smart_turn.probability_complete, audio)
        complete = probability >= self._config.smart_turn_threshold
        _LOGGER.debug("client %s: end of turn %s (p=%.2f)", client.label,
                      "complete" if complete else "unfinished", probability)
        if self._sessions.get(client.identity) is not session:
            return  # the microphone was closed or reopened meanwhile
        session.pending.append(_TurnJudged(event.speech_end_frame, probability, complete))
        self._run_session(client, session)

    async def _transcribe(self, session: MicSession, audio: np.ndarray) -> tuple[str, float]:
        started = time.perf_counter()
        transcriber = session.transcriber or self._engines.transcriber
        text = await self._engines.thread.call(transcriber.transcribe, audio,
                                               session.decode or self._decode)
        return text, round(ms_since(started), 1)

    def _maybe_transcribe_partial(self, client: Client, session: MicSession) -> None:
        """Start a partial transcription if `partial_transcript_ms` more speech came."""
        interval_ms = self._config.partial_transcript_ms
        if self._prefill is None or not interval_ms or session.partial_running:
            return
        # Called for every block: the utterance's audio is copied only when it is due.
        speech_frames = session.stream.speaking_frames
        if speech_frames is None or speech_frames * FRAME_MS < session.partial_at_ms + interval_ms:
            return
        so_far = session.stream.speech_so_far()
        assert so_far is not None  # speaking, as just checked
        speech_frames, audio = so_far
        speech_ms = speech_frames * FRAME_MS
        session.partial_at_ms, session.partial_running = speech_ms, True
        self._tasks.start(self._transcribe_partial(client, session, audio, speech_ms),
                          name="voice-partial")

    async def _transcribe_partial(self, client: Client, session: MicSession,
                                  audio: np.ndarray, speech_ms: float) -> None:
        try:
            text, asr_ms = await self._transcribe(session, audio)
        finally:
            session.partial_running = False
        _LOGGER.info("client %s: the first %.0f ms of speech transcribed in %.0f ms "
                     "(%d characters)", client.label, speech_ms, asr_ms, len(text))
        # Also in a silence the player may speak through (a speculative start may be
        # transcribing it): the prefill yields to any turn that starts, and one that has
        # started already keeps it from running (`TypingPrefill`).
        in_utterance = (self._sessions.get(client.identity) is session
                        and session.stream.in_utterance)
        if text and in_utterance and self._prefill is not None:
            # Whisper writes a line cut off mid-speech in lower case ("the dragon sleeps
            # on") and the finished line in sentence case; the prefilled prompt is reused
            # only up to the first differing token, so the partial gets the capital too.
            sentence_case = text[0].upper() + text[1:]
            self._prefill(client, session.request.npc_id, sentence_case[: self._max_text_chars])

    async def _speculate(self, client: Client, session: MicSession, speculation: _Speculation,
                         audio: np.ndarray) -> None:
        speculation.text, speculation.asr_ms = await self._transcribe(session, audio)
        if speculation.dropped or not speculation.text:
            return  # the player went on speaking meanwhile, or nothing was said
        speculation.handle = self._start(client, session, speculation.event, speculation.text)

    async def _finish_utterance(self, client: Client, session: MicSession, event: EndpointEvent,
                                audio: np.ndarray, speculation: _Speculation | None) -> None:
        npc_id = session.request.npc_id
        end_ms = frame_to_ms(event.speech_end_frame)
        endpoint_wall = time.perf_counter()
        speculative = False
        if speculation is not None and speculation.task is not None:
            await asyncio.shield(speculation.task)
            text, asr_ms = speculation.text or "", speculation.asr_ms
            speculative = speculation.handle is not None and not speculation.handle.finished
        else:
            text, asr_ms = await self._transcribe(session, audio)
        if not text:
            self._sender.send(client, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        if speculative and speculation is not None:
            handle = speculation.handle
        else:
            handle = self._start(client, session, event, text)
        if handle is None:
            self._sender.send(client, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        if handle.finished:  # e.g. cancelled by a new say to the NPC meanwhile
            self._sender.send(client, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        judged = session.judged
        handle.turn.note_voice_input(
            asr_ms, speculative, (endpoint_wall - handle.turn.spec.received_at) * 1000.0,
            endpoint_by=event.cause,
            turn_complete=judged.probability
            if judged is not None and judged.speech_end_frame == event.speech_end_frame
            else None)
        turn_id = self._turns.release(client, handle)
        self._sender.send(client, SpeechEnded(npc_id=npc_id, at_ms=end_ms, turn_id=turn_id))
        if turn_id is None:
            return
        self._sender.send(client, Transcript(turn_id=turn_id, npc_id=npc_id, text=text,
                                             speech_end_ms=end_ms))
        self._turns.go_live(client, handle)

    def _start(self, client: Client, session: MicSession, event: EndpointEvent, text: str
               ) -> TurnHandle | None:
        """Start a speculative turn for a recognised utterance; None if it cannot start."""
        if client.gone:
            return None
        request = session.request
        text = text[: self._max_text_chars]
        problem = self._turns.limit_problem(client, request.npc_id)
        if problem is not None:
            self._sender.reject(client, *problem)
            return None
        turn_id = client.speculative_turn_id()  # the real one comes at release
        # End of speech: when the daemon had received the last voiced frame.
        received_at = session.wall_time_of(event.speech_end_frame)
        say = Say(turn_id=turn_id, npc_id=request.npc_id, text=text, profile=request.profile,
                  priority=request.priority)
        return self._turns.start(client, say, received_at, speculative=True)

    def _drop_speculation(self, client: Client, session: MicSession) -> None:
        speculation, session.speculation = session.speculation, None
        if speculation is not None:
            self._drop(client, speculation)

    def _drop(self, client: Client, speculation: _Speculation) -> None:
        speculation.dropped = True
        stage = "speculative turn" if speculation.handle is not None else "transcription"
        _LOGGER.info("client %s spoke on after a pause: speculative start dropped (%s)",
                     client.label, stage)
        if speculation.handle is not None:
            self._turns.drop(client, speculation.handle)
        if speculation.task is not None:
            # A queued ASR job is dropped; one already running finishes, result ignored.
            speculation.task.cancel()
