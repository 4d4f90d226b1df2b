"""The interface every TTS engine implements, and the async voice wrapper over it.

An engine is blocking code owned by one thread (`EngineThread`); a `Voice` is what a
turn uses: an engine plus one voice's settings, streaming int16 PCM asynchronously.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

import msgspec
import numpy as np
import soxr

from daemon.config import VoiceConfig
from daemon.engines.thread import EngineThread
from daemon.priorities import NORMAL
from daemon.profiles import Profile

Int16Emit = Callable[[np.ndarray], None]


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
