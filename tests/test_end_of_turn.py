"""End of turn from the words: the Smart Turn v3.2 model and the daemon's policy around it.

Real components: the model file from the pipecat-ai wheel on ONNX Runtime, player lines
spoken by Piper (deterministic: no noise), a real daemon process with silero-vad and
Whisper. Piper reads every line with a falling, finished-sounding intonation, so the
"unfinished" lines here are unfinished by their words ("... because", "..., um").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import soxr

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Done, SpeechEnded, Transcript
from daemon.asr.endpointing import EndpointSettings
from daemon.asr.mic_stream import MicStream
from daemon.config import VoiceConfig
from daemon.launcher import DaemonProcess
from daemon.models import resolve_piper_voice
from daemon.tts.piper import PiperEngine
from tests.support.aio import run
from tests.support.configs import write_config
from tests.support.spoken import PLAYER_LINES

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")
smart_turn_module = pytest.importorskip("daemon.asr.smart_turn")
if smart_turn_module.bundled_model_path() is None:
    pytest.skip("no Smart Turn model (pipecat-ai, installed by the bootstrap on Python 3.11+)",
                allow_module_level=True)

FINISHED = PLAYER_LINES
UNFINISHED = [
    "I need a room for",
    "Can you repair my sword and",
    "Well, I was thinking that maybe",
    "Where can I find the",
    "Tell me about the old temple because",
    "I would like to buy some, um",
    "My horse lost a shoe on the road, and then",
    "Have you seen a man in a",
    "What is the fastest way to",
    "Thank you for your help, but",
]
RATE_HZ = 16000
PAUSE_MS = 200


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE_HZ * ms // 1000, dtype=np.float32)


@pytest.fixture(scope="module")
def speak() -> Iterator[object]:
    """Speaks a line with Piper: float32 at 16 kHz, trailing silence trimmed."""
    engine = PiperEngine(*resolve_piper_voice("joe"))
    voice = VoiceConfig(noise_scale=0.0, noise_w_scale=0.0)

    def spoken(text: str) -> np.ndarray:
        pieces: list[np.ndarray] = []
        engine.synthesize(text, voice, pieces.append, threading.Event())
        audio = np.concatenate(pieces).astype(np.float32) / 32768.0
        audio = soxr.resample(audio, engine.sample_rate_hz, RATE_HZ).astype(np.float32)
        audible = np.flatnonzero(np.abs(audio) > 0.01)
        return audio[: audible[-1] + 1]

    yield spoken


@pytest.fixture(scope="module")
def model() -> object:
    return smart_turn_module.SmartTurn()


def test_features_are_those_of_the_last_eight_seconds(model, speak) -> None:
    line = speak(FINISHED[0])
    features = model.features(line)
    assert features.shape == (1, 80, 800) and features.dtype == np.float32
    long = np.concatenate((speak(FINISHED[1]), speak(FINISHED[2]), speak(FINISHED[3]),
                           speak(FINISHED[4]), line))
    assert long.size > 8 * RATE_HZ
    assert np.allclose(model.features(long), model.features(long[-8 * RATE_HZ:]))
    # Shorter audio is padded before it: the utterance's end stays at the window's end.
    assert not np.allclose(features[0, :, -100:], features[0, :, :100])


def test_finished_lines_are_judged_complete_and_unfinished_ones_mostly_not(model, speak):
    def judged(lines: list[str]) -> np.ndarray:
        return np.array([model.probability_complete(np.concatenate((speak(line),
                                                                    silence(PAUSE_MS))))
                         for line in lines])

    finished, unfinished = judged(FINISHED), judged(UNFINISHED)
    both = np.concatenate((finished, unfinished))
    assert ((both >= 0) & (both <= 1)).all()
    # Measured when this test was written: 9 of 11 finished lines >= 0.5, 5 of 10
    # unfinished ones < 0.5 (Piper's finished-sounding intonation fools the model on the
    # rest); the floors leave room for numeric noise, not for a broken model or input.
    assert (finished >= 0.5).sum() >= 8, finished
    assert (unfinished < 0.5).sum() >= 4, unfinished
    assert finished.mean() > unfinished.mean() + 0.2, (finished, unfinished)


def test_a_judgement_ends_only_the_pause_it_was_made_in() -> None:
    script = iter([0.9] * 10 + [0.0] * 8 + [0.9] * 5 + [0.0] * 8)
    stream = MicStream(lambda _frame: next(script), EndpointSettings(pause_ms=200,
                                                                    end_silence_ms=5000),
                       in_rate_hz=RATE_HZ)
    frame = np.zeros(512, dtype="<i2").tobytes()
    kinds = [e.event.kind for _ in range(18) for e in stream.push(frame)]
    assert kinds == ["start", "pause"]
    first_pause_end = 10
    assert stream.end_if_paused(first_pause_end + 1, "smart_turn") is None  # another pause
    for _ in range(13):  # the player speaks again, then pauses again
        stream.push(frame)
    assert stream.end_if_paused(first_pause_end, "smart_turn") is None  # judged too late
    ended = stream.end_if_paused(23, "smart_turn")
    assert ended is not None and ended.event.kind == "end" and ended.event.cause == "smart_turn"
    assert ended.audio is not None and ended.audio.size > 0
    assert stream.end_if_paused(23, "smart_turn") is None  # over: nothing to end


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """Smart Turn on; an unfinished line waits 3 s of silence (more than the tests send
    after a finished line, so only the model can end that one)."""
    path = tmp_path_factory.mktemp("end_of_turn") / "config.toml"
    write_config(path, asr={"pause_ms": PAUSE_MS, "unfinished_silence_ms": 3000,
                            "smart_turn": True})
    with DaemonProcess(path, log_path=path.with_suffix(".log")) as process:
        yield process


async def _speak_to(client: BridgeClient, audio: np.ndarray) -> TurnResult:
    pcm = np.concatenate((silence(300), audio)) * 32767.0
    blocks = pcm.astype("<i2")
    await client.listen_start("innkeeper", mode="open_mic")
    for start in range(0, blocks.size, 1600):  # 100 ms blocks at the pace of a microphone
        await client.send_mic(blocks[start : start + 1600].tobytes())
        await asyncio.sleep(0.1)
    while True:
        event = await asyncio.wait_for(client.speech_events.get(), 60)
        if isinstance(event, Transcript):
            result = await client.collect(event.turn_id, 0.0)
            await client.listen_stop()
            return result
        assert not (isinstance(event, SpeechEnded) and event.turn_id is None), "not recognised"


def test_a_finished_line_ends_at_the_pause(daemon: DaemonProcess, speak) -> None:
    line = "I would like to buy some arrows."

    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address) as client:
            return await _speak_to(client, np.concatenate((speak(line), silence(1500))))

    result = run(scenario(), timeout_s=120)
    done = result.terminal
    assert isinstance(done, Done), done
    assert done.timings.endpoint_by == "smart_turn", done.timings
    assert done.timings.turn_complete is not None and done.timings.turn_complete >= 0.5


def test_an_unfinished_line_waits_for_the_long_silence(daemon: DaemonProcess, speak) -> None:
    line = "Tell me about the old temple because"

    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address) as client:
            return await _speak_to(client, np.concatenate((speak(line), silence(3600))))

    result = run(scenario(), timeout_s=120)
    done = result.terminal
    assert isinstance(done, Done), done
    assert done.timings.endpoint_by == "silence", done.timings
    assert done.timings.turn_complete is not None and done.timings.turn_complete < 0.5
