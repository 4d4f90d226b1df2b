"""Whisper's short encoder window (`asr.encoder_window_s`), in process on tiny.en.

Real models: Piper speaks the player's lines (no noise: deterministic), the bundled
Whisper tiny.en hears them through the real `Transcriber`. Which path decoded a line is
observed by counting calls of faster-whisper's own `transcribe` (the 30 s path).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from daemon.asr.transcriber import (
    SAMPLE_RATE_HZ,
    WHISPER_WINDOW_S,
    DecodeOptions,
    Transcriber,
    resolve_whisper,
)
from daemon.bench.stats import word_error_rate
from daemon.bench.voice import speak_lines
from tests.support.spoken import PLAYER_LINES

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")

LOOPING_LINE = "Can you repair my sword before nightfall?"
"""tiny.en misses its end-of-text token on this line in a 6 s window and repeats it."""


@pytest.fixture(scope="module")
def spoken() -> dict[str, np.ndarray]:
    """Each player line spoken by Piper, float32 at 16 kHz."""
    return {line: samples.astype(np.float32) / 32768.0
            for line, samples in zip(PLAYER_LINES, speak_lines(PLAYER_LINES), strict=True)}


class CountedTranscriber:
    """tiny.en with a count of the lines faster-whisper decoded in its 30 s window."""

    def __init__(self) -> None:
        self.transcriber = Transcriber(resolve_whisper("tiny.en"), cpu_threads=2)
        self.full_window_calls = 0
        model = self.transcriber._model  # the spy wraps faster-whisper's own entry point
        original = model.transcribe

        def counted(*args: object, **kwargs: object) -> object:
            self.full_window_calls += 1
            return original(*args, **kwargs)

        model.transcribe = counted

    def hear(self, audio: np.ndarray, window_s: float) -> str:
        return self.transcriber.transcribe(audio, DecodeOptions(encoder_window_s=window_s))


@pytest.fixture(scope="module")
def whisper() -> CountedTranscriber:
    return CountedTranscriber()


def word_errors(references: list[str], hypotheses: list[str]) -> int:
    """Substitutions + deletions + insertions over the set (the benchmarks' WER, as a count)."""
    rate = word_error_rate(references, hypotheses)
    assert rate is not None, "jiwer is installed with the daemon lock"
    return round(rate * sum(len(reference.split()) for reference in references))


def test_short_window_hears_the_lines_as_well_as_whisper_window(
        whisper: CountedTranscriber, spoken: dict[str, np.ndarray]) -> None:
    before = whisper.full_window_calls
    in_window = [whisper.hear(audio, 10.0) for audio in spoken.values()]
    assert whisper.full_window_calls == before, "a short line left the 10 s window"
    in_full = [whisper.hear(audio, WHISPER_WINDOW_S) for audio in spoken.values()]
    assert whisper.full_window_calls == before + len(PLAYER_LINES)
    errors = word_errors(PLAYER_LINES, in_window)
    assert errors <= word_errors(PLAYER_LINES, in_full), list(zip(PLAYER_LINES, in_window,
                                                                    strict=True))


def test_a_decode_that_repeats_itself_is_done_again_in_whisper_window(
        whisper: CountedTranscriber, spoken: dict[str, np.ndarray],
        caplog: pytest.LogCaptureFixture) -> None:
    before = whisper.full_window_calls
    with caplog.at_level(logging.INFO, logger="daemon.asr.transcriber"):
        text = whisper.hear(spoken[LOOPING_LINE], 6.0)  # below the config's 10 s minimum
    assert "decoding again in its 30 s window" in caplog.text
    assert whisper.full_window_calls == before + 1
    assert word_errors([LOOPING_LINE], [text]) == 0, text


def test_a_line_longer_than_the_window_uses_whisper_window(
        whisper: CountedTranscriber, spoken: dict[str, np.ndarray]) -> None:
    # 9.0+ s of speech: more than a 10 s window minus its 1 s margin.
    lines = PLAYER_LINES[:4]
    long_audio = np.concatenate([spoken[line] for line in lines])
    assert long_audio.size > 9 * SAMPLE_RATE_HZ
    before = whisper.full_window_calls
    text = whisper.hear(long_audio, 10.0)
    assert whisper.full_window_calls == before + 1
    assert word_errors([" ".join(lines)], [text]) <= 2, text


def test_detected_language_uses_whisper_window(whisper: CountedTranscriber,
                                               spoken: dict[str, np.ndarray]) -> None:
    before = whisper.full_window_calls
    whisper.transcriber.transcribe(spoken[PLAYER_LINES[2]],
                                   DecodeOptions(language=None, encoder_window_s=10.0))
    assert whisper.full_window_calls == before + 1
