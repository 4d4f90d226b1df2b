"""Endpointing: turning per-frame speech probabilities into utterance events.

Pure logic on the input timeline (frame counts, not wall time), so it behaves the same
whether audio arrives in real time or faster, and is testable without a model.

Events, in order for one utterance: `start`, then any number of silences, each ended
by `resume` when the player speaks again, then `end` once the silence lasts
`end_silence_ms`. A silence brings `speculate` after `speculate_ms` (the moment to start
ASR and the LLM speculatively) and `pause` after `pause_ms` (the moment to judge whether
the player has finished; also the speculative start when `speculate_ms` is not shorter).
Hysteresis as in silero-vad's `VADIterator`: speech when p >= threshold, silence when
p < threshold - 0.15.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FRAME_SAMPLES = 512
"""silero-vad's frame at 16 kHz (32 ms); other sizes raise in the model."""
SAMPLE_RATE_HZ = 16000
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE_HZ

EventKind = Literal["start", "speculate", "pause", "resume", "end"]
EndCause = Literal["silence", "smart_turn", "listen_stop", "max_length"]
"""What ended an utterance: the full silence wait, the end-of-turn model after a pause,
push-to-talk released, or the longest utterance reached."""


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """How speech and its end are decided.

    Attributes:
      threshold: Speech probability at or above which a frame is speech (silero: 0.5).
      min_speech_ms: Speech shorter than this (a click, a cough) does not start an utterance.
      pause_ms: Silence after which the end of turn is judged (and a speculative start
        begins, unless `speculate_ms` came first); 0 = no pause event.
      speculate_ms: Silence after which a speculative start begins, when shorter than
        `pause_ms`; 0 = at the pause.
      end_silence_ms: Silence that ends the utterance (the endpoint). Measured on
        silero-vad: its end event fires ~110-120 ms after the last audible sample
        plus this silence (notes/engines.md, silero-vad timing).
      preroll_ms: Audio kept before the detected start (soft onsets are missed by VAD).
    """

    threshold: float = 0.5
    min_speech_ms: float = 96.0
    pause_ms: float = 200.0
    speculate_ms: float = 0.0
    end_silence_ms: float = 450.0
    preroll_ms: float = 200.0


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """Something happened at `frame` (index of the 512-sample frame, 0-based).

    Attributes:
      kind: "start", "speculate", "pause", "resume" or "end".
      frame: Frame at which it was decided.
      speech_start_frame: First speech frame of the utterance.
      speech_end_frame: One past the last speech frame so far (end of speech).
      cause: For "end": what ended the utterance; None for the other kinds.
    """

    kind: EventKind
    frame: int
    speech_start_frame: int
    speech_end_frame: int
    cause: EndCause | None = None


class Endpointer:
    """State machine over speech probabilities, one per microphone stream."""

    def __init__(self, settings: EndpointSettings) -> None:
        self._settings = settings
        self._frame = 0
        self._in_utterance = False
        self._paused = False
        self._speculating = False
        self._speech_run = 0
        self._silence_run = 0
        self._start_frame = 0
        self._end_frame = 0

    @property
    def in_utterance(self) -> bool:
        """True between `start` and `end`."""
        return self._in_utterance

    @property
    def speech_start_frame(self) -> int:
        """First speech frame of the current (or last) utterance."""
        return self._start_frame

    @property
    def in_silence(self) -> bool:
        """True in an utterance's silence, once it brought `speculate` or `pause`."""
        return self._in_utterance and (self._paused or self._speculating)

    @property
    def paused_at(self) -> int | None:
        """`speech_end_frame` of the pause the utterance is in, or None (speaking, idle)."""
        return self._end_frame if self._in_utterance and self._paused else None

    def push(self, probability: float) -> EndpointEvent | None:
        """Consume one frame's speech probability; return the event it causes, if any."""
        s = self._settings
        frame = self._frame
        self._frame += 1
        is_speech = probability >= s.threshold
        is_silence = probability < s.threshold - 0.15
        if not self._in_utterance:
            self._speech_run = self._speech_run + 1 if is_speech else 0
            if self._speech_run * FRAME_MS >= s.min_speech_ms:
                self._in_utterance = True
                self._paused = self._speculating = False
                self._silence_run = 0
                self._start_frame = frame - self._speech_run + 1
                self._end_frame = frame + 1
                return self._event("start", frame)
            return None
        if is_speech:
            self._end_frame = frame + 1
            self._silence_run = 0
            if self._paused or self._speculating:
                self._paused = self._speculating = False
                return self._event("resume", frame)
            return None
        if not is_silence:
            return None  # between the thresholds: neither extends speech nor silence
        self._silence_run += 1
        silence_ms = self._silence_run * FRAME_MS
        if silence_ms >= s.end_silence_ms:
            self._in_utterance = False
            self._paused = self._speculating = False
            self._speech_run = 0
            return self._event("end", frame, "silence")
        if s.pause_ms and not self._paused and silence_ms >= s.pause_ms:
            self._paused = True
            return self._event("pause", frame)
        if (0 < s.speculate_ms < s.pause_ms and not self._speculating
                and silence_ms >= s.speculate_ms):
            self._speculating = True
            return self._event("speculate", frame)
        return None

    def force_end(self, cause: EndCause) -> EndpointEvent | None:
        """End the utterance now (`cause`: why); None if none is open."""
        if not self._in_utterance:
            return None
        self._in_utterance = False
        self._paused = self._speculating = False
        self._speech_run = 0
        return self._event("end", self._frame, cause)

    def _event(self, kind: EventKind, frame: int, cause: EndCause | None = None
               ) -> EndpointEvent:
        return EndpointEvent(kind, frame, self._start_frame, self._end_frame, cause)
