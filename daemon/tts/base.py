"""The interface every TTS engine implements, and the async voice wrapper over it.

An engine is blocking code owned by one thread (`EngineThread`); a `Voice` is what a
turn uses: an engine plus one voice's settings, streaming int16 PCM asynchronously.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import msgspec
import numpy as np
import soxr

from daemon.config import VoiceConfig
from daemon.engines.thread import EngineThread
from daemon.priorities import NORMAL
from daemon.profiles import Profile

Int16Emit = Callable[[np.ndarray], None]

LipSync = Literal["visemes", "energy"]
"""What drives a voice's mouth: "visemes" (word and viseme timing from the synthesis
itself, Piper) or "energy" (the audio's loudness per block, for engines without an
alignment: XTTS, hibari)."""


@dataclass(frozen=True, slots=True)
class WordSpan:
    """A word of a chunk and where it is spoken.

    Attributes:
      text: The word as written in the chunk (punctuation kept).
      start_sample: First sample, counted as the enclosing `SpeechTiming` says.
      end_sample: One past its last sample.
    """

    text: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True, slots=True)
class VisemeMark:
    """Where a viseme starts; it lasts until the next mark.

    Attributes:
      viseme: One of the 15 visemes (daemon.tts.visemes.VISEMES).
      start_sample: First sample, counted as the enclosing `SpeechTiming` says.
      weight: How far the mouth goes to the shape, 0..1.
    """

    viseme: str
    start_sample: int
    weight: float


@dataclass(frozen=True, slots=True)
class SpeechTiming:
    """Word and viseme timing of audio an engine is about to emit.

    Sample offsets count native-rate samples from the start of the chunk's audio.

    Attributes:
      start_sample: First sample this timing covers.
      end_sample: One past the last sample it covers.
      words: The words spoken there, in order.
      visemes: The viseme track there, in order.
    """

    start_sample: int
    end_sample: int
    words: tuple[WordSpan, ...]
    visemes: tuple[VisemeMark, ...]


TimingEmit = Callable[[SpeechTiming], None]


class TtsEngine(Protocol):
    """A loaded TTS model. All methods run on the engine's own thread.

    Attributes:
      name: For logs, e.g. "piper:en_US-joe-medium".
      sample_rate_hz: Native output rate of the model.
    """

    name: str
    sample_rate_hz: int

    def synthesize(
        self, text: str, voice: VoiceConfig, emit: Int16Emit, stop: threading.Event,
        turn_start: bool = False,
    ) -> None:
        """Speak `text`, calling `emit` with each piece of audio as soon as it exists.

        Args:
          text: One chunk of reply text.
          voice: Per-voice settings (speaker, speed, noise, volume).
          emit: Receives 1-D int16 numpy arrays, mono, at `sample_rate_hz`.
          stop: Checked between pieces; return promptly once set.
          turn_start: `text` is the first chunk of a turn (an engine may then trade
            efficiency for an earlier first piece).
        """
        ...


class TimedTtsEngine(TtsEngine, Protocol):
    """An engine that can say when each word and viseme is spoken (`gives_timing`).

    Attributes:
      gives_timing: The loaded model exposes its alignment.
    """

    gives_timing: bool

    def synthesize(
        self, text: str, voice: VoiceConfig, emit: Int16Emit, stop: threading.Event,
        turn_start: bool = False, on_timing: TimingEmit | None = None,
    ) -> None:
        """As `TtsEngine.synthesize`, reporting timing as it goes.

        `on_timing` receives the `SpeechTiming` of audio before `emit` receives that
        audio (offsets in native samples from the chunk's start).
        """
        ...


def float_to_int16(audio: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Convert float audio in [-1, 1] to int16 samples, applying a linear gain.

    Args:
      audio: 1-D float array; values outside [-1, 1] after the gain are clipped.
      gain: Linear gain (1.0 = unchanged).

    Returns:
      1-D int16 array of the same length (scale 32767, as most engines do).
    """
    scaled = np.clip(audio.astype(np.float32, copy=False) * gain, -1.0, 1.0) * 32767.0
    return scaled.astype(np.int16)


class Voice:
    """An engine plus one voice's settings, usable from the event loop.

    Args:
      engine: The loaded engine.
      thread: The engine's owner thread (shared by every Voice on that engine).
      settings: This voice's settings.
    """

    first_chunk_min_chars = 0
    """Shortest first text chunk this voice speaks well (XTTS babbles on very short text)."""

    def __init__(self, engine: TtsEngine, thread: EngineThread, settings: VoiceConfig) -> None:
        self.engine = engine
        self.thread = thread
        self.settings = settings

    @property
    def sample_rate_hz(self) -> int:
        """Native output rate of this voice, in Hz."""
        return self.engine.sample_rate_hz

    def stream(self, text: str, stop: threading.Event, turn_start: bool = False,
               priority: int = NORMAL) -> AsyncGenerator[np.ndarray, None]:
        """Synthesise `text`; yield 1-D int16 mono arrays at `sample_rate_hz`.

        `turn_start` marks a turn's first chunk (see `TtsEngine.synthesize`). Chunks
        waiting for the engine are taken by `priority` (daemon.priorities) and, within
        one priority, first chunks before later ones: a turn's first audio never waits
        for other turns' later chunks, only for the chunk being spoken. The caller must
        exhaust or `aclose()` the iterator (use contextlib.aclosing).
        """

        def produce(emit: Int16Emit, stop_event: threading.Event) -> None:
            self.engine.synthesize(text, self.settings, emit, stop_event, turn_start)

        return self.thread.stream(produce, stop, priority * 2 + int(turn_start))

    @property
    def lip_sync(self) -> LipSync:
        """"visemes" when the engine gives word and viseme timing, else "energy"."""
        return "visemes" if getattr(self.engine, "gives_timing", False) else "energy"

    def stream_timed(self, text: str, stop: threading.Event, turn_start: bool = False,
                     priority: int = NORMAL
                     ) -> AsyncGenerator[np.ndarray | SpeechTiming, None]:
        """As `stream`, with each `SpeechTiming` before the audio it covers.

        A voice whose `lip_sync` is "energy" yields audio only (its mouth follows the
        audio, daemon.pipeline.timing).
        """
        if self.lip_sync != "visemes":
            return self.stream(text, stop, turn_start, priority)
        engine = cast(TimedTtsEngine, self.engine)

        def produce(emit: Callable[[np.ndarray | SpeechTiming], None],
                    stop_event: threading.Event) -> None:
            engine.synthesize(text, self.settings, emit, stop_event, turn_start, on_timing=emit)

        return self.thread.stream(produce, stop, priority * 2 + int(turn_start))

    def shape_profile(self, profile: Profile) -> Profile:
        """`profile` with its first chunk at least `first_chunk_min_chars` long."""
        minimum = self.first_chunk_min_chars
        if profile.first_chunk_min_chars >= minimum:
            return profile
        return msgspec.structs.replace(
            profile, first_chunk_min_chars=minimum,
            first_chunk_max_chars=max(profile.first_chunk_max_chars, minimum))


def resample_int16(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample 1-D int16 audio with soxr (high quality); a no-op when the rates match.

    DESIGN.md: lowering the rate does not make the vocoders cheaper, so voices speak at
    their native rate and only what a client asked for is resampled.
    """
    if from_hz == to_hz or audio.size == 0:
        return audio
    return soxr.resample(audio, from_hz, to_hz, quality="HQ")


class ChunkResampler:
    """Resamples one chunk's audio piece by piece, without seams between pieces.

    Each piece is resampled with the state the previous one left (soxr's stream), so a
    chunk cut into decoder windows sounds as if resampled whole. The chunk comes out at
    exactly floor((S + N) * to / from) - floor(S * to / from) samples, S being the
    native samples of the turn before it and N its own: summed over a turn, a native
    offset n is output sample floor(n * to / from), the scaling word and viseme timing
    use (the last few samples are held back until `flush` to make that exact).

    Args:
      from_hz: Native rate of the voice.
      to_hz: Rate of the blocks.
      offset_samples: S, native samples of the turn before this chunk.
    """

    _RESERVE = 8  # samples held back so that `flush` can trim as well as pad

    def __init__(self, from_hz: int, to_hz: int, offset_samples: int = 0) -> None:
        self._from_hz, self._to_hz = from_hz, to_hz
        self._stream = (None if from_hz == to_hz else
                        soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16", quality="HQ"))
        self._offset = offset_samples
        self._native = 0
        self._emitted = 0
        self._held = np.zeros(0, dtype=np.int16)

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Resample the next 1-D int16 piece; returns the output ready so far."""
        self._native += audio.size
        if self._stream is None:
            return audio
        out = np.concatenate((self._held, self._stream.resample_chunk(audio)))
        ready = max(0, out.size - self._RESERVE)
        self._held = out[ready:]
        self._emitted += ready
        return out[:ready]

    def flush(self) -> np.ndarray:
        """The chunk's remaining output, trimmed or padded to its exact length."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out = np.concatenate((self._held, self._stream.resample_chunk(
            np.zeros(0, dtype=np.int16), last=True)))
        self._held = np.zeros(0, dtype=np.int16)
        total = ((self._offset + self._native) * self._to_hz // self._from_hz
                 - self._offset * self._to_hz // self._from_hz)
        wanted = max(0, total - self._emitted)
        if out.size < wanted:
            out = np.concatenate((out, np.zeros(wanted - out.size, dtype=np.int16)))
        self._emitted += wanted
        return out[:wanted]

