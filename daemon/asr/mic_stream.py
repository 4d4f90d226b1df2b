"""One client's microphone stream: resampling, VAD frames and the utterance's audio.

Audio is kept only from the current utterance's start (minus the pre-roll), so an
open microphone left on for an hour holds a second of audio, not an hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr

from daemon.asr.endpointing import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    EndCause,
    Endpointer,
    EndpointEvent,
    EndpointSettings,
)


@dataclass(frozen=True, slots=True)
class MicEvent:
    """An endpoint event, with the utterance's audio at that moment for pause and end.

    Attributes:
      event: What happened.
      audio: float32 16 kHz audio from the pre-roll before the speech start to the end
        of speech (trailing silence excluded); None for start and resume.
      silence: For a pause: the float32 16 kHz audio after the end of speech up to the
        pause (the end-of-turn model was trained with it); None otherwise.
    """

    event: EndpointEvent
    audio: np.ndarray | None
    silence: np.ndarray | None = None


class MicStream:
    """Turns s16le PCM at any rate into endpoint events and utterance audio.

    Args:
      vad: Speech probability per frame (a `daemon.asr.vad.SpeechProbability`, or any
        callable: tests use scripted ones).
      settings: Endpointing thresholds.
      in_rate_hz: Rate of the incoming PCM.
      max_utterance_s: An utterance longer than this is ended by force.
    """

    def __init__(self, vad: Callable[[np.ndarray], float], settings: EndpointSettings,
                 in_rate_hz: int,
                 max_utterance_s: float = 30.0) -> None:
        self._vad = vad
        self._settings = settings
        self._endpointer = Endpointer(settings)
        self._resampler = (
            soxr.ResampleStream(in_rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ")
            if in_rate_hz != SAMPLE_RATE_HZ else None
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames: list[np.ndarray] = []
        self._first_frame = 0  # frame index of self._frames[0]
        self._next_frame = 0
        self._preroll_frames = int(settings.preroll_ms / FRAME_MS)
        self._max_frames = int(max_utterance_s * 1000 / FRAME_MS)

    @property
    def frames_seen(self) -> int:
        """512-sample frames processed since the stream opened."""
        return self._next_frame

    def push(self, pcm: bytes) -> list[MicEvent]:
        """Add s16le mono PCM; return the endpoint events it caused, in order."""
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        pending = np.concatenate((self._pending, audio)) if self._pending.size else audio
        events = []
        usable = pending.size // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, usable, FRAME_SAMPLES):
            frame = np.ascontiguousarray(pending[start : start + FRAME_SAMPLES])
            event = self._push_frame(frame)
            if event is not None:
                events.append(self._with_audio(event))
        self._pending = pending[usable:]
        return events

    def _push_frame(self, frame: np.ndarray) -> EndpointEvent | None:
        self._frames.append(frame)
        self._next_frame += 1
        event = self._endpointer.push(self._vad(frame))
        if not self._endpointer.in_utterance and event is None:
            excess = len(self._frames) - self._preroll_frames
            if excess > 0:  # idle: keep only the pre-roll
                del self._frames[:excess]
                self._first_frame += excess
        elif self._endpointer.in_utterance and len(self._frames) > self._max_frames:
            event = self._endpointer.force_end("max_length")
        return event

    @property
    def in_utterance(self) -> bool:
        """True between an utterance's start and its end (speaking or in a silence)."""
        return self._endpointer.in_utterance

    @property
    def speaking_frames(self) -> int | None:
        """Speech frames of the utterance so far while the player speaks, else None.

        None when idle or in a silence (from its `speculate` or `pause` on). Cheap (no
        audio copied): for per-block checks.
        """
        endpointer = self._endpointer
        if not endpointer.in_utterance or endpointer.in_silence:
            return None
        return self._next_frame - endpointer.speech_start_frame

    def speech_so_far(self) -> tuple[int, np.ndarray] | None:
        """While the player is speaking: (speech frames so far, float32 16 kHz audio).

        The audio runs from the pre-roll before the speech start to the last frame seen.
        None when idle or in a pause (the pause's own event carries the audio then).
        """
        speech_frames = self.speaking_frames
        if speech_frames is None:
            return None
        start = self._next_frame - speech_frames
        first = max(self._first_frame, start - self._preroll_frames)
        return speech_frames, self._concatenated(first, self._next_frame)

    def force_end(self, cause: EndCause = "listen_stop") -> MicEvent | None:
        """End the open utterance now (push-to-talk released, by default)."""
        event = self._endpointer.force_end(cause)
        return self._with_audio(event) if event is not None else None

    def end_if_paused(self, speech_end_frame: int, cause: EndCause) -> MicEvent | None:
        """End the utterance now if it is still in the pause after `speech_end_frame`.

        Returns None, changing nothing, if the player spoke again since.
        """
        if self._endpointer.paused_at != speech_end_frame:
            return None
        return self.force_end(cause)

    def _with_audio(self, event: EndpointEvent) -> MicEvent:
        # Snapshot now: frames after an `end` are trimmed while the stream is idle.
        if event.kind not in ("speculate", "pause", "end"):
            return MicEvent(event, None)
        first = max(self._first_frame, event.speech_start_frame - self._preroll_frames)
        last = max(first, event.speech_end_frame)
        audio = self._concatenated(first, last)
        if event.kind == "pause":
            return MicEvent(event, audio, self._concatenated(last, event.frame + 1))
        return MicEvent(event, audio)

    def _concatenated(self, first: int, last: int) -> np.ndarray:
        """Frames [first, last) (input frame indices) as one float32 array."""
        frames = self._frames[first - self._first_frame : last - self._first_frame]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)


def frame_to_ms(frame: int) -> float:
    """Input-timeline position of a frame index, in ms."""
    return round(frame * FRAME_MS, 1)
