"""Voice input of the real addon in a real headless Godot 4, against a real daemon.

The player's line is spoken by the daemon's own Piper voice (written to a WAV here) and
played in Godot into the addon's microphone bus by an AudioStreamPlayer, where the addon's
AudioEffectCapture takes it exactly as it takes a microphone: the real capture, resampling,
`mic_audio` blocks, the daemon's VAD and Whisper, then the reply played to the end. Refused
streams (unknown NPC; a daemon without voice input) must stop the microphone with one error.
Scenarios: godot_addon/test/e2e/voice_*.gd; helpers: tests/support/godot.py.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.launcher import DaemonProcess
from tests.support.godot import (  # noqa: F401 (fixtures)
    GodotResult,
    godot,
    godot_daemon,
    godot_daemon_config_text,
    run_scenario,
)

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")

LINE = "Can you repair my sword before nightfall?"


@pytest.fixture(scope="module")
def spoken_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LINE spoken by Piper "joe" (the daemon's voice), 16-bit mono WAV with 300 ms margins."""
    from daemon.config import VoiceConfig
    from daemon.models import resolve_piper_voice
    from daemon.tts.piper import PiperEngine

    engine = PiperEngine(*resolve_piper_voice("joe"))
    pieces: list[np.ndarray] = []
    voice = VoiceConfig(noise_scale=0.0, noise_w_scale=0.0)  # deterministic
    engine.synthesize(LINE, voice, pieces.append, threading.Event())
    margin = np.zeros(engine.sample_rate_hz * 300 // 1000, np.int16)
    samples = np.concatenate((margin, *[p.astype(np.int16) for p in pieces], margin))
    path = tmp_path_factory.mktemp("voice") / "line.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(engine.sample_rate_hz)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def voice_run(godot: str, godot_daemon: DaemonProcess,  # noqa: F811
              spoken_line: Path) -> GodotResult:
    return run_scenario(godot, "voice_turn", godot_daemon.port, wav=spoken_line)


def test_a_spoken_line_becomes_a_voice_turn_whose_reply_plays(voice_run: GodotResult) -> None:
    voice_run.assert_clean()
    transcript = voice_run.one("transcript_received")
    assert transcript["npc_id"] == "blacksmith"
    assert "sword" in transcript["text"].lower(), transcript
    started = voice_run.one("player_speech_started")
    ended = voice_run.one("player_speech_ended")
    assert ended["turn_id"] == transcript["turn_id"]
    assert voice_run.index(started) < voice_run.index(ended) < voice_run.index(transcript)
    finished = voice_run.one("speech_finished", turn_id=transcript["turn_id"])
    assert finished["outcome"] == "done" and finished["underruns"] == 0, finished
    timings = finished["timings"]
    assert timings["client_played_ms"] == pytest.approx(timings["audio_ms"], abs=0.1), timings
    assert timings["client_ttfa_ms"] > 0 and timings["asr_ms"] > 0, timings
    assert voice_run.of("error_received") == []


def test_speaking_over_a_talking_npc_stops_it(voice_run: GodotResult) -> None:
    voice_run.assert_clean()
    talking = voice_run.one("case", name="talking")["turn_id"]
    finished = voice_run.one("speech_finished", turn_id=talking)
    assert finished["outcome"] == "cancelled", finished
    started = voice_run.one("player_speech_started")
    transcript = voice_run.one("transcript_received")
    # The addon silences the NPC as it reports the player's speech (same frame, just before).
    assert started["frame"] <= finished["frame"] and voice_run.index(finished) < voice_run.index(
        transcript)


def test_push_to_talk_keeps_the_microphone_open_between_presses(voice_run: GodotResult) -> None:
    voice_run.assert_clean()
    assert voice_run.one("released")["microphone_open"] is True
    second = voice_run.one("second_press")
    assert second["same_input"] is True and second["open"] is True, second
    assert voice_run.one("closed")["microphone_open"] is False


def assert_refused_once(run: GodotResult, code: str) -> None:
    run.assert_clean()
    refused = run.one("refused")
    assert refused["code"] == code, refused
    assert not refused["listening"] and not refused["microphone_open"], refused
    errors = run.of("error_received")
    assert [e["code"] for e in errors] == [code], errors  # the blocks' refusals are dropped
    assert run.one("after")["listening"] is False


def test_an_unknown_npc_stops_the_microphone_with_one_error(
        godot: str, godot_daemon: DaemonProcess) -> None:  # noqa: F811
    assert_refused_once(run_scenario(godot, "voice_refused", godot_daemon.port, npc="ghost"),
                        "unknown_npc")


@pytest.fixture
def deaf_daemon(godot: str, tmp_path: Path  # noqa: F811
                ) -> Iterator[DaemonProcess]:
    """A daemon with voice input off."""
    config = tmp_path / "deaf.toml"
    config.write_text(godot_daemon_config_text(asr={"enabled": False}))
    with DaemonProcess(config, log_path=tmp_path / "deaf.log") as process:
        yield process


def test_a_daemon_without_voice_input_stops_the_microphone_with_one_error(
        godot: str, deaf_daemon: DaemonProcess) -> None:  # noqa: F811
    assert_refused_once(run_scenario(godot, "voice_refused", deaf_daemon.port, npc="blacksmith"),
                        "voice_input_unavailable")
