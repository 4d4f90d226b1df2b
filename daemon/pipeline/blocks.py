"""Cutting a turn's audio into the PCM blocks the client plays.

Blocks are what the client plays: `block_ms` of s16le mono each (the last block of a
chunk may be shorter, so that audio is never held back waiting for the next chunk).
"""

from __future__ import annotations

import numpy as np


def samples_per_block(sample_rate_hz: int, block_ms: int) -> int:
    """Samples in one `block_ms` block at `sample_rate_hz` (at least 1)."""
    return max(1, sample_rate_hz * block_ms // 1000)


class BlockCutter:
    """Cuts a stream of int16 audio into fixed-size blocks.

    Args:
      block_samples: Samples per full block.
    """

    def __init__(self, block_samples: int) -> None:
        self._block_samples = block_samples
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        """Add 1-D int16 audio; return the full blocks now available (maybe none)."""
        pending = np.concatenate((self._pending, audio)) if self._pending.size else audio
        full = pending.size // self._block_samples * self._block_samples
        blocks = [
            pending[start : start + self._block_samples]
            for start in range(0, full, self._block_samples)
        ]
        self._pending = pending[full:]
        return blocks

    def flush(self) -> np.ndarray | None:
        """Return the leftover partial block (or None) and start empty."""
        pending, self._pending = self._pending, np.zeros(0, dtype=np.int16)
        return pending if pending.size else None
