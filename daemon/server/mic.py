"""Voice input: microphone streams -> endpointing -> ASR -> turns, with speculative starts.

One `VoiceSession` per client microphone. VAD runs on the event loop (Silero VAD v6 through
ONNX Runtime, one model shared by every stream, ~0.15 ms per 32 ms frame, measured here);
Whisper runs on its own engine thread.

Speculative start: on a short pause (`pause_ms`) the utterance so far is transcribed
and a turn is started *held*: the LLM and TTS work, but nothing reaches the client.
If the player speaks again, the held turn is abandoned without a sound; if the pause
becomes the endpoint (`end_silence_ms`), the held turn is released with everything it
has already produced, so the reply is under way before the endpoint is even certain.
TTFA of a voice turn counts from the end of speech (when the daemon received the last
voiced audio), so the endpoint's silence wait is inside it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
from daemon.asr.endpointing import EndpointEvent, EndpointSettings
from daemon.asr.mic_stream import (
    MicEvent,
    MicStream,
    SileroVad,
    SpeechProbability,
    frame_to_ms,
)
from daemon.asr.transcriber import DecodeOptions, Transcriber, resolve_whisper
from daemon.config import AsrConfig
from daemon.engines.thread import EngineThread
from daemon.server.clients import Peer, TurnHandle

if TYPE_CHECKING:
    from daemon.server import BridgeServer

_LOGGER = logging.getLogger(__name__)


@dataclass
class VoiceEngines:
    """The loaded ASR model and its owner thread, and the shared VAD model."""

    transcriber: Transcriber
    thread: EngineThread
    vad: SileroVad

    def close(self) -> None:
        """Stop the ASR thread."""
        self.thread.shutdown()


async def load_voice_engines(config: AsrConfig) -> VoiceEngines | None:
    """Load and warm Whisper and the VAD model; None (with one warning) if unavailable.

    A missing `voice` extra or model is not fatal: typed lines still work, and
    `listen_start` is answered with `voice_input_unavailable`.
    """
    if not config.enabled:
        return None
    try:
        model_path = resolve_whisper(config.model)
        vad = SileroVad()
    except (ImportError, FileNotFoundError) as exc:
        _LOGGER.warning("voice input disabled: %s (install it with pip install "
                        "'npc-voice-bridge[voice]', or set asr.enabled = false)", exc)
        return None
    thread: EngineThread = EngineThread("asr")
    transcriber = await thread.call(Transcriber, model_path, config.cpu_threads,
                                    config.compute_type, config.device)
    started = time.perf_counter()
    await thread.call(transcriber.warm_up)
    _LOGGER.info("warmed Whisper in %.0f ms", (time.perf_counter() - started) * 1000)
    return VoiceEngines(transcriber, thread, vad)


@dataclass(eq=False)
class _Speculation:
    """A transcription (and maybe a held turn) started on a pause."""

    event: EndpointEvent
    task: asyncio.Task[None] | None = None
    abandoned: bool = False
    text: str | None = None
    asr_ms: float | None = None
    handle: TurnHandle | None = None


_MAX_PENDING_S = 10.0
"""Microphone audio waiting for VAD, per stream, in seconds of input: beyond it blocks
are dropped (`mic_audio_too_fast`), so a client sending far faster than real time
costs bounded memory and shares the event loop instead of stalling it."""

_LISTEN_STOP = object()
"""Queued after the audio when `listen_stop` arrives: the utterance ends after it."""


@dataclass(eq=False)
class VoiceSession:
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

    def wall_time_of(self, frame: int) -> float:
        """perf_counter() at which input frame `frame` had been received."""
        ends = [end for end, _ in self.arrivals]
        index = bisect.bisect_left(ends, frame)
        if index >= len(self.arrivals):
            return time.perf_counter()
        return self.arrivals[index][1]


class VoiceInput:
    """Microphone streams of every client, turned into turns on `server`.

    Args:
      server: The bridge server (turn start/release/abandon, sending).
      engines: Loaded ASR.
      config: The `[asr]` section.
    """

    def __init__(self, server: BridgeServer, engines: VoiceEngines, config: AsrConfig) -> None:
        self._server = server
        self._engines = engines
        self._config = config
        profile = config.resolved_profile()
        self._settings = EndpointSettings(
            threshold=config.vad_threshold, pause_ms=profile.pause_ms,
            end_silence_ms=profile.end_silence_ms, preroll_ms=config.preroll_ms)
        self._decode = DecodeOptions(beam_size=profile.beam_size, best_of=profile.best_of,
                                     language=config.language)
        self._sessions: dict[bytes, VoiceSession] = {}

    # ------------------------------------------------------------ client messages

    def listen_start(self, peer: Peer, request: ListenStart) -> None:
        """Open (or reopen) `peer`'s microphone stream."""
        problem = self._server.npc_problem(request.npc_id, request.profile)
        if problem is not None:
            self._server.reject(peer, *problem)
            return
        self.peer_gone(peer)
        stream = MicStream(SpeechProbability(self._engines.vad), self._settings,
                           request.sample_rate_hz,
                           self._config.max_utterance_s)
        self._sessions[peer.identity] = VoiceSession(request, stream, time.perf_counter())
        _LOGGER.info("client %s opened the microphone (%s, %d Hz) for %s", peer.label,
                     request.mode, request.sample_rate_hz, request.npc_id)

    def mic_audio(self, peer: Peer, mic: DecodedMic) -> None:
        """Feed a block of microphone audio; act on the endpoint events it causes."""
        session = self._sessions.get(peer.identity)
        if session is None:
            self._server.reject(peer, ErrorCode.NOT_LISTENING,
                                "mic_audio before listen_start (or after listen_stop)")
            return
        if mic.header.seq != session.next_seq:
            _LOGGER.warning("client %s: mic block %d after %d: %d block(s) lost", peer.label,
                            mic.header.seq, session.next_seq - 1,
                            mic.header.seq - session.next_seq)
        session.next_seq = mic.header.seq + 1
        samples = mic.header.sample_count
        if session.pending_samples + samples > _MAX_PENDING_S * session.request.sample_rate_hz:
            if not session.overflowing:  # one error per overflow, not one per block
                session.overflowing = True
                self._server.reject(peer, ErrorCode.MIC_AUDIO_TOO_FAST,
                                    f"more than {_MAX_PENDING_S:.0f} s of microphone audio is "
                                    "waiting to be processed; blocks are being dropped (send "
                                    "audio at most a little faster than real time)")
            return
        session.overflowing = False
        session.pending.append((mic.pcm, time.perf_counter()))
        session.pending_samples += samples
        self._run_session(peer, session)

    def listen_stop(self, peer: Peer) -> None:
        """Close the microphone; in push-to-talk mode the utterance ends here."""
        session = self._sessions.get(peer.identity)
        if session is None:
            self._server.reject(peer, ErrorCode.NOT_LISTENING, "listen_stop without listen_start")
            return
        del self._sessions[peer.identity]
        session.pending.append(_LISTEN_STOP)  # after the audio still waiting
        self._run_session(peer, session)

    def _run_session(self, peer: Peer, session: VoiceSession) -> None:
        if session.worker is None or session.worker.done():
            session.worker = self._server.start_background(
                self._process(peer, session), name=f"mic-{peer.identity.hex()}")

    async def _process(self, peer: Peer, session: VoiceSession) -> None:
        """Run the queued blocks through the VAD and act on the events, in order."""
        while session.pending:
            item = session.pending.popleft()
            if item is _LISTEN_STOP:
                mic_event = session.stream.force_end()
                if mic_event is not None:
                    self._on_event(peer, session, mic_event)
                return
            pcm, arrived_at = item  # type: ignore[misc]
            session.pending_samples -= len(pcm) // 2
            events = session.stream.push(pcm)
            session.arrivals.append((session.stream.frames_seen, arrived_at))
            for mic_event in events:
                self._on_event(peer, session, mic_event)
            await asyncio.sleep(0)  # one block at a time: other clients go on meanwhile

    def peer_gone(self, peer: Peer) -> None:
        """Forget `peer`'s microphone (disconnect, or a new listen_start)."""
        session = self._sessions.pop(peer.identity, None)
        if session is not None:
            session.pending.clear()
            if session.worker is not None:
                session.worker.cancel()
            self._drop_speculation(peer, session)

    # ------------------------------------------------------------ endpoint events

    def _on_event(self, peer: Peer, session: VoiceSession, mic_event: MicEvent) -> None:
        event, audio = mic_event.event, mic_event.audio
        npc_id = session.request.npc_id
        if event.kind == "start":
            self._server.send(peer, SpeechStarted(npc_id=npc_id,
                                                  at_ms=frame_to_ms(event.speech_start_frame)))
            if self._config.barge_in:
                self._server.barge_in(peer, npc_id)
        elif event.kind == "pause":
            self._drop_speculation(peer, session)
            speculation = _Speculation(event)
            speculation.task = self._server.start_background(
                self._speculate(peer, session, speculation, audio), name="voice-speculation")
            session.speculation = speculation
        elif event.kind == "resume":
            self._drop_speculation(peer, session)
        else:  # end
            speculation, session.speculation = session.speculation, None
            if speculation is not None and (
                    speculation.event.speech_end_frame != event.speech_end_frame):
                self._abandon(peer, speculation)  # more speech after the pause
                speculation = None
            self._server.start_background(
                self._finish_utterance(peer, session, event, audio, speculation),
                name="voice-endpoint")

    async def _transcribe(self, audio: np.ndarray) -> tuple[str, float]:
        started = time.perf_counter()
        text = await self._engines.thread.call(self._engines.transcriber.transcribe, audio,
                                               self._decode)
        return text, round((time.perf_counter() - started) * 1000.0, 1)

    async def _speculate(self, peer: Peer, session: VoiceSession, speculation: _Speculation,
                         audio: np.ndarray) -> None:
        speculation.text, speculation.asr_ms = await self._transcribe(audio)
        if speculation.abandoned or not speculation.text:
            return  # the player went on speaking meanwhile, or nothing was said
        speculation.handle = self._start(peer, session, speculation.event, speculation.text,
                                         held=True)

    async def _finish_utterance(self, peer: Peer, session: VoiceSession, event: EndpointEvent,
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
            text, asr_ms = await self._transcribe(audio)
        if not text:
            self._server.send(peer, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        if speculative:
            handle = speculation.handle
        else:
            handle = self._start(peer, session, event, text, held=True)
        if handle is None:
            self._server.send(peer, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        if handle.finished:  # e.g. cancelled by a new say to the NPC meanwhile
            self._server.send(peer, SpeechEnded(npc_id=npc_id, at_ms=end_ms))
            return
        timings = handle.turn.progress.timings
        timings.asr_ms = asr_ms
        timings.speculative = speculative
        timings.endpoint_ms = round((endpoint_wall - handle.turn.spec.received_at) * 1000.0, 1)
        turn_id = self._server.assign_turn_id(peer, handle)
        self._server.send(peer, SpeechEnded(npc_id=npc_id, at_ms=end_ms, turn_id=turn_id))
        self._server.send(peer, Transcript(turn_id=turn_id, npc_id=npc_id, text=text,
                                           speech_end_ms=end_ms))
        self._server.release_turn(peer, handle)

    def _start(self, peer: Peer, session: VoiceSession, event: EndpointEvent, text: str,
               held: bool) -> TurnHandle | None:
        """Start a (held) turn for a recognised utterance; None if it cannot start."""
        if peer.gone:
            return None
        request = session.request
        text = text[: self._server.max_text_chars]
        problem = self._server.turn_limit_problem(peer, request.npc_id)
        if problem is not None:
            self._server.reject(peer, *problem)
            return None
        turn_id = peer.provisional_turn_id()  # the real one comes at release
        # End of speech: when the daemon had received the last voiced frame.
        received_at = session.wall_time_of(event.speech_end_frame)
        say = Say(turn_id=turn_id, npc_id=request.npc_id, text=text, profile=request.profile)
        return self._server.start_turn(peer, say, received_at, held=held)

    def _drop_speculation(self, peer: Peer, session: VoiceSession) -> None:
        speculation, session.speculation = session.speculation, None
        if speculation is not None:
            self._abandon(peer, speculation)

    def _abandon(self, peer: Peer, speculation: _Speculation) -> None:
        speculation.abandoned = True
        stage = "held turn" if speculation.handle is not None else "transcription"
        _LOGGER.info("client %s spoke on after a pause: speculative start dropped (%s)",
                     peer.label, stage)
        if speculation.handle is not None:
            self._server.abandon_turn(peer, speculation.handle)
        if speculation.task is not None:
            # A queued ASR job is dropped; one already running finishes, result ignored.
            speculation.task.cancel()
