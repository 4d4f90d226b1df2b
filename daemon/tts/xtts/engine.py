"""XTTS-v2 voices in the daemon: the worker process, its voices, and falling back.

The model runs in `daemon.tts.xtts.worker` (why: daemon.tts.xtts.wire). This side
starts it, loads and warms the model, prepares every cloned voice's conditioning
latents, and streams text chunks through it from one engine thread, like Piper.

When XTTS cannot run (no CUDA device, the model does not fit, the `xtts` extra or
the model files are missing, a voice's clips are unusable) each XTTS voice is
replaced by its configured Piper `fallback` at start-up, with one warning. If the
worker dies later, the voice switches to its fallback for the rest of the session;
the text chunk being spoken at that moment fails (its turn ends with an error event).
"""

from __future__ import annotations

import itertools
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

import msgspec
import numpy as np

from daemon.config import Config, VoiceConfig, XttsConfig
from daemon.engines.thread import EngineThread
from daemon.languages import xtts_code
from daemon.models import ModelNotFoundError, resolve_xtts_model, user_cache_dir
from daemon.priorities import NORMAL
from daemon.tts.base import ChunkResampler, Int16Emit, Voice
from daemon.tts.xtts import wire

_LOGGER = logging.getLogger(__name__)

_POLL_S = 0.02
"""How often a waiting synthesis checks its stop event (bounds cancel latency here)."""


class XttsUnavailable(RuntimeError):
    """XTTS cannot run; `reason` is one of `wire.LoadFailure`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class XttsWorkerDied(RuntimeError):
    """The worker process exited while the daemon was using it."""


class XttsWorker:
    """The worker process and its pipes. Use from one thread (the engine thread).

    Replies are read by a background thread into a queue, so a synthesis can wait
    for audio and watch its stop event at the same time.
    """

    def __init__(self, python: str) -> None:
        command = [python or sys.executable, "-m", "daemon.tts.xtts.worker"]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE)
        except OSError as exc:
            raise XttsUnavailable("not_installed", f"cannot start {command[0]}: {exc}") from None
        self.python = command[0]
        self._replies: queue.Queue[wire.FromWorker | None] = queue.Queue()
        self._ids = itertools.count(1)
        self.alive = True
        self.sample_rate_hz = 24000
        threading.Thread(target=self._read_replies, name="xtts-replies", daemon=True).start()

    def _read_replies(self) -> None:
        assert self._process.stdout is not None
        while True:
            try:
                self._replies.put(wire.read_from_worker(self._process.stdout))
            except (wire.WorkerGone, ValueError, OSError):
                self.alive = False  # voices switch to their fallback from the next chunk
                self._replies.put(None)  # end of replies: the worker has exited
                return

    def _send(self, message: wire.ToWorker) -> None:
        assert self._process.stdin is not None
        try:
            wire.write_frame(self._process.stdin, message)
        except (BrokenPipeError, ValueError, OSError):
            self.alive = False
            raise XttsWorkerDied(f"the XTTS worker exited (status {self._process.poll()})") \
                from None

    def _next_reply(self, timeout_s: float, waiting_for: str) -> wire.FromWorker:
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no answer from the XTTS worker after {timeout_s:.0f} s "
                               f"({waiting_for})") from None
        if reply is None:
            self.alive = False
            self._replies.put(None)  # every later reader sees the end too
            raise XttsWorkerDied(f"the XTTS worker exited (status {self._process.wait()}) "
                                 f"while {waiting_for}; its log is above")
        return reply

    def load(self, request: wire.Load, timeout_s: float) -> wire.Ready:
        """Load the model in the worker.

        Raises:
          XttsUnavailable: the worker could not load it (reason and message from it),
            could not import this package, or took longer than `timeout_s`.
        """
        try:
            self._send(request)
            reply = self._next_reply(timeout_s, "loading the model")
        except (XttsWorkerDied, TimeoutError) as exc:
            self.close()
            raise XttsUnavailable(
                "load_failed", f"{exc} (interpreter {self.python}: it needs this project "
                "and its `xtts` extra installed)") from None
        if isinstance(reply, wire.LoadFailed):
            self.close()
            raise XttsUnavailable(reply.reason, reply.message)
        assert isinstance(reply, wire.Ready)
        self.sample_rate_hz = reply.sample_rate_hz
        return reply

    def prepare_voice(self, voice: str, clips: list[str],
                      timeout_s: float = 600.0) -> wire.VoiceReady | wire.VoiceFailed:
        """Compute or load one voice's conditioning latents in the worker."""
        self._send(wire.PrepareVoice(voice=voice, clips=clips))
        reply = self._next_reply(timeout_s, f"preparing voice {voice!r}")
        assert isinstance(reply, wire.VoiceReady | wire.VoiceFailed)
        return reply

    def synthesize(self, request: wire.Synthesize, emit: Int16Emit,
                   stop: threading.Event) -> wire.End:
        """Stream one text chunk, calling `emit` with each int16 piece.

        `request.request_id` is replaced by the next id of this worker.

        Once `stop` is set a `Cancel` goes to the worker, later audio is dropped and
        the call returns at the worker's `End` (after at most one streamed piece).

        Raises:
          XttsWorkerDied: the worker exited (this voice then falls back).
          RuntimeError: the worker reported a failed synthesis.
        """
        request = msgspec.structs.replace(request, request_id=next(self._ids))
        self._send(request)
        cancel_sent = False
        while True:
            if stop.is_set() and not cancel_sent:
                self._send(wire.Cancel(request_id=request.request_id))
                cancel_sent = True
            try:
                reply = self._next_reply(_POLL_S, "synthesising")
            except TimeoutError:
                continue
            if getattr(reply, "request_id", None) != request.request_id:
                continue  # a late reply to an earlier, abandoned request
            if isinstance(reply, wire.Audio):
                if not cancel_sent:
                    emit(np.frombuffer(reply.pcm, dtype="<i2").astype(np.int16))
            elif isinstance(reply, wire.End):
                if reply.error:
                    raise RuntimeError(f"XTTS failed on {request.text!r}: {reply.error}")
                return reply

    def close(self) -> None:
        """Ask the worker to exit; kill it if it has not within 5 s."""
        if self._process.poll() is None:
            try:
                self._send(wire.Shutdown())
                self._process.wait(timeout=5)
            except (XttsWorkerDied, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self.alive = False


class XttsEngine:
    """`TtsEngine` for one cloned voice on the shared worker (engine-thread only).

    Args:
      worker: The loaded worker.
      voice_name: The config's voice name (prepared in the worker).
      settings: The `[xtts]` section.
    """

    def __init__(self, worker: XttsWorker, voice_name: str, settings: XttsConfig) -> None:
        self.worker = worker
        self.voice_name = voice_name
        self.settings = settings
        self.name = f"xtts:{voice_name}"
        self.sample_rate_hz = worker.sample_rate_hz
        self.last_end: wire.End | None = None

    def synthesize(self, text: str, voice: VoiceConfig, emit: Int16Emit,
                   stop: threading.Event, turn_start: bool = False) -> None:
        """Speak `text` (see `TtsEngine.synthesize`).

        A turn's first chunk streams in `first_stream_chunk_size` pieces, later ones in
        `stream_chunk_size` pieces. The voice's BCP 47 language (resolved at loading from
        its NPCs) goes to XTTS as XTTS's own code: "pt-BR" -> "pt", "zh-CN" -> "zh-cn".
        """
        xtts = self.settings
        gain = voice.volume

        def emit_with_gain(samples: np.ndarray) -> None:
            if gain != 1.0:
                samples = np.clip(samples * gain, -32768, 32767).astype(np.int16)
            emit(samples)

        self.last_end = self.worker.synthesize(wire.Synthesize(
            request_id=0, voice=self.voice_name, text=text,
            language=xtts_code(voice.language or "en") or "en",
            stream_chunk_size=xtts.first_stream_chunk_size if turn_start
            else xtts.stream_chunk_size,
            overlap_samples=xtts.overlap_samples, temperature=xtts.temperature,
            top_k=xtts.top_k, top_p=xtts.top_p, repetition_penalty=xtts.repetition_penalty,
            speed=1.0 / (voice.length_scale or 1.0), seed=xtts.seed), emit_with_gain, stop)


class XttsVoice(Voice):
    """A cloned voice that switches to its Piper fallback if the worker dies.

    It keeps XTTS's 24 kHz rate after a switch (the fallback's audio is resampled), so
    a client told 24 kHz at `hello` never sees the rate change.

    Args:
      engine: This voice's engine on the worker.
      thread: The worker's owner thread.
      settings: The voice's settings.
      fallback: The Piper voice named by `settings.fallback`.
    """

    def __init__(self, engine: XttsEngine, thread: EngineThread, settings: VoiceConfig,
                 fallback: Voice) -> None:
        super().__init__(engine, thread, settings)
        self.xtts = engine
        self.fallback = fallback
        self.first_chunk_min_chars = engine.settings.min_first_chunk_chars
        self._warned = False

    def _serving(self) -> Voice | None:
        """None while XTTS serves; the fallback once the worker is gone."""
        if self.xtts.worker.alive:
            return None
        if not self._warned:
            _LOGGER.warning("XTTS worker is gone: voice %r speaks with its fallback %r from "
                            "now on", self.xtts.voice_name, self.settings.fallback)
            self._warned = True
        return self.fallback

    def stream(self, text: str, stop: threading.Event, turn_start: bool = False,
               priority: int = NORMAL) -> AsyncGenerator[np.ndarray, None]:
        """As `Voice.stream`, through the fallback once the worker has died."""
        serving = self._serving()
        if serving is None:
            return super().stream(text, stop, turn_start, priority)
        return self._resampled(serving.stream(text, stop, turn_start, priority),
                               serving.sample_rate_hz)

    async def _resampled(self, pieces: AsyncGenerator[np.ndarray, None],
                         from_hz: int) -> AsyncGenerator[np.ndarray, None]:
        # One resampler per chunk: the fallback's pieces (Piper decoder windows) join
        # without filter seams.
        resampler = ChunkResampler(from_hz, self.sample_rate_hz)
        async with aclosing(pieces) as stream:
            async for piece in stream:
                yield resampler.push(piece)
        tail = resampler.flush()
        if tail.size:
            yield tail


@dataclass
class XttsStartup:
    """What starting XTTS gave.

    Attributes:
      worker: The running worker; None when XTTS cannot run.
      ready: The worker's load report.
      voices: Per prepared voice, its cache report.
      failed: Per voice that must fall back, why.
    """

    worker: XttsWorker | None = None
    ready: wire.Ready | None = None
    voices: dict[str, wire.VoiceReady] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def start_xtts(config: Config, voice_names: list[str], warm_up: bool = True) -> XttsStartup:
    """Start the worker, load the model and prepare `voice_names` (blocking).

    Never raises for XTTS being unusable: every voice it cannot serve is listed in
    `failed` with the reason, for the caller's one warning.
    """
    settings = config.xtts
    startup = XttsStartup()
    try:
        model_dir = resolve_xtts_model(settings.model)
        worker = XttsWorker(settings.python)
        started = time.perf_counter()
        startup.ready = worker.load(wire.Load(
            model_dir=str(model_dir), device=settings.device, dtype=settings.dtype,
            torch_threads=settings.torch_threads, warm_up=warm_up,
            # "" = the default folder, ~/.cache/npc-voice/xtts-latents
            latents_cache_dir=settings.latents_cache_dir
            or str(user_cache_dir() / "xtts-latents")),
            settings.load_timeout_s)
    except (ModelNotFoundError, XttsUnavailable) as exc:
        reason = getattr(exc, "reason", "model_not_found")
        startup.failed = {name: f"{reason}: {exc}" for name in voice_names}
        return startup
    ready = startup.ready
    _LOGGER.info("XTTS loaded from %s on %s (%s) in %.0f ms, warm-up %.0f ms, total %.1f s; %s",
                 model_dir, ready.device, ready.dtype, ready.load_ms, ready.warm_up_ms,
                 time.perf_counter() - started, ready.versions)
    startup.worker = worker
    for name in voice_names:
        try:
            result = worker.prepare_voice(name, config.voices[name].reference_clips)
        except (XttsWorkerDied, TimeoutError) as exc:
            startup.failed[name] = str(exc)
            continue
        if isinstance(result, wire.VoiceFailed):
            startup.failed[name] = result.message
        else:
            startup.voices[name] = result
            _LOGGER.info("XTTS voice %r: latents cache %s (%s) in %.0f ms", name,
                         result.cache, result.cache_path, result.ms)
    return startup
