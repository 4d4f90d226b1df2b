"""The client playback model the scenes schedule with (pure arithmetic, no engines)."""

from __future__ import annotations

import pytest

from daemon.pipeline.playback import PlaybackClock

RATE_HZ = 1000  # one sample per millisecond keeps the arithmetic readable


def test_nothing_is_played_before_the_first_block() -> None:
    clock = PlaybackClock(0.24)
    assert clock.start_s is None and clock.end_s is None and clock.latest_end_s is None


def test_a_streamed_line_starts_once_the_prebuffer_is_queued() -> None:
    clock = PlaybackClock(0.24)
    for index in range(10):  # 50 ms blocks, one every 10 ms: faster than real time
        clock.block(1.0 + index * 0.01, 50, RATE_HZ)
    # 240 ms of audio is queued with the fifth block, at 1.04 s; it then plays 500 ms.
    assert clock.start_s == pytest.approx(1.04)
    assert clock.end_s == pytest.approx(1.54)
    # The DESIGN rule starts at the first block plus 240 ms: it ends later.
    assert clock.latest_end_s == pytest.approx(1.74)


def test_a_late_block_stalls_playback() -> None:
    clock = PlaybackClock(0.1)
    clock.block(0.0, 100, RATE_HZ)  # starts at once, plays until 0.1 s
    clock.block(0.5, 100, RATE_HZ)  # arrives 0.4 s after its play time
    assert clock.end_s == pytest.approx(0.6)


def test_a_line_shorter_than_the_prebuffer_plays_from_its_last_block() -> None:
    clock = PlaybackClock(0.24)
    clock.block(2.0, 50, RATE_HZ)
    clock.block(2.1, 50, RATE_HZ)
    assert clock.start_s == pytest.approx(2.1)
    assert clock.end_s == pytest.approx(2.2)
    assert clock.latest_end_s == pytest.approx(2.34)  # 2.0 + 0.24 + 0.1


def test_a_released_line_arriving_all_at_once_starts_at_once_for_the_addon() -> None:
    clock = PlaybackClock(0.24)
    for _ in range(40):  # 2 s of audio in the same instant
        clock.block(5.0, 50, RATE_HZ)
    assert clock.start_s == pytest.approx(5.0)
    assert clock.end_s == pytest.approx(7.0)
    assert clock.latest_end_s == pytest.approx(7.24)
