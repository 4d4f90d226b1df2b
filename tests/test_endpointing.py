"""The endpointer: speech probabilities per 32 ms frame in, utterance events out."""

from __future__ import annotations

import numpy as np

from daemon.asr.endpointing import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    Endpointer,
    EndpointEvent,
    EndpointSettings,
)
from daemon.asr.mic_stream import MicStream

SETTINGS = EndpointSettings(threshold=0.5, min_speech_ms=96, pause_ms=200,
                            end_silence_ms=450, preroll_ms=200)


def frames(ms: float) -> int:
    return round(ms / FRAME_MS)


def feed(endpointer: Endpointer, probabilities: list[float]) -> list[EndpointEvent]:
    return [event for p in probabilities if (event := endpointer.push(p)) is not None]


def test_an_utterance_starts_after_min_speech_and_ends_after_the_end_silence() -> None:
    endpointer = Endpointer(SETTINGS)
    events = feed(endpointer, [0.0] * 5 + [0.9] * frames(1000) + [0.0] * frames(600))
    assert [e.kind for e in events] == ["start", "pause", "end"]
    start, pause, end = events
    assert start.speech_start_frame == 5
    assert end.speech_end_frame == 5 + frames(1000)
    assert (pause.frame - end.speech_end_frame + 1) * FRAME_MS >= SETTINGS.pause_ms
    assert (end.frame - end.speech_end_frame + 1) * FRAME_MS >= SETTINGS.end_silence_ms
    assert not endpointer.in_utterance


def test_a_click_shorter_than_min_speech_starts_nothing() -> None:
    assert feed(Endpointer(SETTINGS), [0.9, 0.9, 0.0, 0.0] * 10) == []


def test_speech_after_a_pause_resumes_the_same_utterance() -> None:
    endpointer = Endpointer(SETTINGS)
    events = feed(endpointer, [0.9] * 10 + [0.0] * frames(300) + [0.9] * 10
                  + [0.0] * frames(500))
    assert [e.kind for e in events] == ["start", "pause", "resume", "pause", "end"]
    assert events[-1].speech_start_frame == events[0].speech_start_frame


def test_a_shorter_speculate_silence_comes_before_the_pause_and_speech_resumes_after_it(
        ) -> None:
    settings = EndpointSettings(threshold=0.5, min_speech_ms=96, pause_ms=200,
                                speculate_ms=96, end_silence_ms=450, preroll_ms=200)
    endpointer = Endpointer(settings)
    events = feed(endpointer, [0.9] * 10 + [0.0] * frames(128) + [0.9] * 10
                  + [0.0] * frames(600))
    assert [e.kind for e in events] == ["start", "speculate", "resume", "speculate",
                                        "pause", "end"]
    first, _, resume, speculate, pause, end = events
    # Both silences count from the same end of speech, the speculate first.
    assert speculate.speech_end_frame == pause.speech_end_frame == end.speech_end_frame
    assert (speculate.frame - speculate.speech_end_frame + 1) * FRAME_MS >= 96
    assert speculate.frame < pause.frame
    assert resume.speech_start_frame == first.speech_start_frame
    # Not shorter than the pause: no speculate event, the pause serves both.
    for speculate_ms in (0.0, 200.0, 300.0):
        same = EndpointSettings(threshold=0.5, min_speech_ms=96, pause_ms=200,
                                speculate_ms=speculate_ms, end_silence_ms=450)
        kinds = [e.kind for e in feed(Endpointer(same), [0.9] * 10 + [0.0] * frames(600))]
        assert kinds == ["start", "pause", "end"], speculate_ms


def test_probabilities_between_the_thresholds_neither_extend_speech_nor_count_as_silence(
        ) -> None:
    endpointer = Endpointer(SETTINGS)
    events = feed(endpointer, [0.9] * 10 + [0.4] * frames(2000))  # hysteresis band
    assert [e.kind for e in events] == ["start"]
    assert endpointer.in_utterance


def test_push_to_talk_release_ends_the_open_utterance_at_once() -> None:
    endpointer = Endpointer(SETTINGS)
    feed(endpointer, [0.9] * 10)
    event = endpointer.force_end("listen_stop")
    assert event is not None and event.kind == "end" and event.speech_end_frame == 10
    assert endpointer.force_end("listen_stop") is None


def test_speech_so_far_is_the_audio_while_the_player_speaks_and_none_otherwise() -> None:
    script = iter([0.0] * 10 + [0.9] * 20 + [0.0] * frames(250) + [0.9] * 5 + [0.0] * 20)
    stream = MicStream(lambda _frame: next(script), SETTINGS, in_rate_hz=SAMPLE_RATE_HZ)
    rng = np.random.default_rng(0)
    seen, events = [], []
    for _ in range(10 + 20 + frames(250) + 5 + 20):
        frame = rng.integers(-3000, 3000, FRAME_SAMPLES).astype("<i2")
        events += stream.push(frame.tobytes())
        seen.append(stream.speech_so_far())
    assert [e.event.kind for e in events] == ["start", "pause", "resume", "pause", "end"]
    assert all(entry is None for entry in seen[:12])  # idle, then under min_speech_ms
    last_spoken = seen[29]  # the first run's last speech frame
    assert last_spoken is not None and last_spoken[0] == 20
    # The same audio, pre-roll included, that the pause then transcribes.
    pause_audio = events[1].audio
    assert pause_audio is not None and np.array_equal(last_spoken[1], pause_audio)
    pause_from = 30 + round(SETTINGS.pause_ms / FRAME_MS)
    assert all(entry is None for entry in seen[pause_from:30 + frames(250)])  # in the pause
    resumed = seen[30 + frames(250)]  # speech again: the same utterance goes on
    assert resumed is not None and resumed[0] == 20 + frames(250) + 1
    assert resumed[1].size == pause_audio.size + (frames(250) + 1) * FRAME_SAMPLES
    assert seen[-1] is None  # ended
