"""Word, viseme and mouth timing on the wire: from engine timing to `timing` messages.

Offsets on the wire count samples of the turn's audio at the blocks' rate. An engine
reports native-rate samples from the start of a chunk; the turn knows how many native
samples came before the chunk, and resamples each chunk to exactly
floor((S + N) * out / native) - floor(S * out / native) samples
(`daemon.tts.base.ChunkResampler`), so a native turn offset m is wire offset
floor(m * out / native) with no rounding drift over the turn.

Voices without an alignment (XTTS) drive the mouth from the audio instead: one value
per block, from its RMS level in dBFS mapped linearly onto 0..1 between
`MOUTH_CLOSED_DBFS` and `MOUTH_OPEN_DBFS` (a common energy-envelope lip flap; the
range spans quiet consonants to loud vowels of normalised speech).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bridge_protocol.messages import MouthTiming, Timing, VisemeTiming, WordTiming
from daemon.tts.base import SpeechTiming

MOUTH_CLOSED_DBFS = -50.0
"""Block RMS level (dB of full scale) at and below which the mouth is closed (0)."""
MOUTH_OPEN_DBFS = -10.0
"""Block RMS level at and above which the mouth is fully open (1)."""


def scaled_offset(native_offset: int, native_hz: int, out_hz: int) -> int:
    """A turn's native sample offset at the blocks' rate: floor(m * out / native)."""
    return native_offset * out_hz // native_hz


def visemes_message(turn_id: int, chunk_index: int, timing: SpeechTiming,
                    chunk_native_start: int, native_hz: int, out_hz: int) -> Timing:
    """The `timing` message of an engine's `SpeechTiming`.

    Args:
      turn_id: The turn.
      chunk_index: The chunk the timing belongs to.
      timing: Offsets in native samples from the chunk's start.
      chunk_native_start: Native samples of the turn before the chunk.
      native_hz: The voice's rate.
      out_hz: The blocks' rate.
    """

    def at(offset: int) -> int:
        return scaled_offset(chunk_native_start + offset, native_hz, out_hz)

    return Timing(
        turn_id=turn_id, chunk_index=chunk_index, sample_rate_hz=out_hz,
        start_sample=at(timing.start_sample), end_sample=at(timing.end_sample),
        source="visemes",
        words=[WordTiming(text=w.text, start_sample=at(w.start_sample),
                          end_sample=at(w.end_sample)) for w in timing.words],
        visemes=[VisemeTiming(viseme=v.viseme, start_sample=at(v.start_sample),
                              weight=round(v.weight, 3)) for v in timing.visemes])


def mouth_open(block: np.ndarray) -> float:
    """How open the mouth is for one block of int16 audio, 0..1 (see the module docstring)."""
    if block.size == 0:
        return 0.0
    rms = math.sqrt(float(np.mean(np.square(block.astype(np.float64)))))
    if rms <= 0.0:
        return 0.0
    level_dbfs = 20.0 * math.log10(rms / 32768.0)
    value = (level_dbfs - MOUTH_CLOSED_DBFS) / (MOUTH_OPEN_DBFS - MOUTH_CLOSED_DBFS)
    return round(min(1.0, max(0.0, value)), 3)


def energy_message(turn_id: int, chunk_index: int, blocks: Sequence[np.ndarray],
                   first_sample: int, out_hz: int) -> Timing:
    """The `timing` message of consecutive blocks of a voice without alignment.

    Args:
      turn_id: The turn.
      chunk_index: The chunk the blocks belong to.
      blocks: int16 blocks, in the order they will be sent.
      first_sample: Turn offset of the first block's first sample.
      out_hz: The blocks' rate.
    """
    mouth = []
    position = first_sample
    for block in blocks:
        mouth.append(MouthTiming(start_sample=position, open=mouth_open(block)))
        position += int(block.size)
    return Timing(turn_id=turn_id, chunk_index=chunk_index, sample_rate_hz=out_hz,
                  start_sample=first_sample, end_sample=position, source="energy",
                  mouth=mouth)
