"""Cutting a turn's audio into fixed-size PCM blocks."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from daemon.pipeline.blocks import BlockCutter, samples_per_block


def test_block_sizes_follow_the_rate_and_block_ms() -> None:
    assert samples_per_block(22050, 50) == 1102
    assert samples_per_block(48000, 60) == 2880
    assert samples_per_block(8000, 0) == 1


@given(st.lists(st.integers(0, 3000), max_size=20), st.integers(1, 1500))
def test_blocks_are_full_until_the_flush_and_lose_no_sample(pieces: list[int],
                                                            size: int) -> None:
    audio = np.arange(sum(pieces), dtype=np.int64).astype(np.int16)
    cutter = BlockCutter(size)
    blocks: list[np.ndarray] = []
    offset = 0
    for count in pieces:
        blocks += cutter.push(audio[offset:offset + count])
        offset += count
    assert all(block.size == size for block in blocks)
    tail = cutter.flush()
    assert tail is None or 0 < tail.size < size
    out = blocks + ([tail] if tail is not None else [])
    joined = np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
    assert np.array_equal(joined, audio)
    assert cutter.flush() is None, "the flush empties the cutter"
