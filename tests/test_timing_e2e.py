"""Word and viseme timing through the real daemon (real llama.cpp, real Piper).

The NPC speaks with a deterministic Piper voice (no noise), so the timing the daemon
sends can be checked against Piper run here on the same chunk text: the viseme track
against espeak's phonemes, the word offsets against the chunk's samples, and, at
48 kHz, every offset against the exact scaling of the native-rate one.
"""

from __future__ import annotations

import json
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bridge_protocol.client import BridgeClient, TurnEvent
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Done, Subtitle, Timing
from daemon.cli.say import SayOptions, say
from daemon.config import VoiceConfig
from daemon.launcher import DaemonProcess
from daemon.models import bundled_piper_voice
from daemon.tts.base import SpeechTiming
from daemon.tts.piper import PiperEngine
from daemon.tts.visemes import VISEMES, viseme_sequence, word_tokens
from tests.support.aio import run
from tests.support.configs import write_config

FLAT = {"engine": "piper", "model": "joe", "noise_scale": 0.0, "noise_w_scale": 0.0}
LINE = "What do you sell, and how much is a good sword?"


@pytest.fixture(scope="module")
def timing_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("timing")
    config = write_config(folder / "timing.toml", voices={"joe_flat": FLAT},
                          npcs={"blacksmith": {"voice": "joe_flat"}})
    process = DaemonProcess(config, log_path=folder / "daemon.log").start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    """The daemon's voice, run here to check what the daemon sent."""
    model, config = bundled_piper_voice()
    return PiperEngine(model, config, onnx_threads=1, streaming=True)


def turn_events(address: str, npc_id: str, text: str, timing: bool = True,
                sample_rate_hz: int | None = None) -> tuple[list[TurnEvent], str]:
    """Every event of one turn in arrival order, and the NPC's `lip_sync`."""

    async def scenario() -> tuple[list[TurnEvent], str]:
        async with BridgeClient(address, timing=timing, sample_rate_hz=sample_rate_hz) as client:
            assert client.welcome is not None
            lip_sync = next(n.lip_sync for n in client.welcome.npcs if n.npc_id == npc_id)
            turn_id = await client.say(npc_id, text)
            return [event async for event in client.events(turn_id)], lip_sync

    return run(scenario())


def chunk_bounds(events: list[TurnEvent]) -> dict[int, tuple[int, int]]:
    """Per chunk index, [first, end) of its samples in the turn's audio."""
    bounds: dict[int, tuple[int, int]] = {}
    position = 0
    for event in events:
        if isinstance(event, DecodedAudio) and event.header.sample_count:
            index = event.header.chunk_index
            start = bounds.get(index, (position, position))[0]
            position += event.header.sample_count
            bounds[index] = (start, position)
    return bounds


def turn_audio(events: list[TurnEvent]) -> np.ndarray:
    """The turn's samples, int16."""
    return np.frombuffer(b"".join(e.pcm for e in events if isinstance(e, DecodedAudio)),
                         dtype="<i2")


def speech_end(audio: np.ndarray, frame: int = 110) -> int:
    """End of the last 5 ms frame (at 22.05 kHz) above -60 dBFS (Piper's silence is below)."""
    frames = audio[: audio.size // frame * frame].astype(np.float64).reshape(-1, frame)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 32768 * 10 ** (-60 / 20))
    return int(loud[-1] + 1) * frame if loud.size else 0


def check_order(events: list[TurnEvent]) -> None:
    """Each timing message comes after its chunk's subtitle and before any block it covers."""
    subtitled: set[int] = set()
    position = 0
    for event in events:
        if isinstance(event, Subtitle):
            subtitled.add(event.chunk_index)
        elif isinstance(event, Timing):
            assert event.chunk_index in subtitled
            assert event.start_sample >= position  # none of its samples was sent yet
        elif isinstance(event, DecodedAudio):
            position += event.header.sample_count


def test_words_and_visemes_follow_the_chunks_phonemes(timing_daemon: DaemonProcess,
                                                      piper: PiperEngine) -> None:
    events, lip_sync = turn_events(timing_daemon.address, "blacksmith", LINE)
    assert lip_sync == "visemes"
    assert isinstance(events[-1], Done)
    check_order(events)
    bounds = chunk_bounds(events)
    pcm = turn_audio(events)
    subtitles = {e.chunk_index: e.text for e in events if isinstance(e, Subtitle)}
    timings = [e for e in events if isinstance(e, Timing)]
    assert timings and all(t.source == "visemes" and t.sample_rate_hz == 22050 for t in timings)
    for index, text in subtitles.items():
        mine = [t for t in timings if t.chunk_index == index]
        start, end = bounds[index]
        # The viseme track is the chunk's espeak phonemes, sentence by sentence.
        expected = [v for sentence in piper.phonemize(text) for v in viseme_sequence(sentence)]
        assert [v.viseme for t in mine for v in t.visemes] == expected
        # The words are the chunk's words, in order, inside its samples.
        words = [w for t in mine for w in t.words]
        assert [w.text for w in words] == word_tokens(text)
        # A word may take no time at all: one said with its neighbour, or one whose
        # phonemes the voice gave no frames ("a" before "few" in one reply).
        assert all(start <= w.start_sample <= w.end_sample <= end for w in words)
        assert any(w.start_sample < w.end_sample for w in words)
        assert all(a.end_sample <= b.start_sample for a, b in zip(words, words[1:], strict=False))
        # The last word ends within 100 ms of the end of the chunk's speech; after it
        # comes only the final punctuation's pause, silent (70-160 ms in Piper), and a
        # word-final stop may be a silent closure (up to ~80 ms).
        assert abs(speech_end(pcm[start:end]) + start - words[-1].end_sample) <= 22050 // 10
        assert words[-1].end_sample <= mine[-1].visemes[-1].start_sample  # then "sil"
        assert mine[0].start_sample == start and mine[-1].end_sample == end
        visemes = [v.start_sample for t in mine for v in t.visemes]
        assert visemes == sorted(visemes) and start <= visemes[0] and visemes[-1] < end


def native_timing(piper: PiperEngine, text: str) -> tuple[list[SpeechTiming], int]:
    """What the daemon's voice reports for `text`, and the chunk's native samples."""
    timings: list[SpeechTiming] = []
    samples: list[int] = []
    voice = VoiceConfig(noise_scale=0.0, noise_w_scale=0.0)
    piper.synthesize(text, voice, lambda a: samples.append(int(a.size)), threading.Event(),
                     on_timing=timings.append)
    return timings, sum(samples)


def test_offsets_at_48_khz_are_the_exact_scaling_of_native_ones(
        timing_daemon: DaemonProcess, piper: PiperEngine) -> None:
    events, _ = turn_events(timing_daemon.address, "blacksmith", LINE, sample_rate_hz=48000)
    assert isinstance(events[-1], Done)
    check_order(events)
    bounds = chunk_bounds(events)
    timings = [e for e in events if isinstance(e, Timing)]
    assert all(t.sample_rate_hz == 48000 for t in timings)
    chunk_start = 0  # native samples of the turn before the chunk

    def at(native: int) -> int:
        return (chunk_start + native) * 48000 // 22050

    for subtitle in (e for e in events if isinstance(e, Subtitle)):
        expected, native_samples = native_timing(piper, subtitle.text)
        sent = [t for t in timings if t.chunk_index == subtitle.chunk_index]
        assert len(sent) == len(expected)
        for message, native in zip(sent, expected, strict=True):
            assert (message.start_sample, message.end_sample) == (
                at(native.start_sample), at(native.end_sample))
            assert [(w.text, w.start_sample, w.end_sample) for w in message.words] == [
                (w.text, at(w.start_sample), at(w.end_sample)) for w in native.words]
            assert [(v.viseme, v.start_sample) for v in message.visemes] == [
                (v.viseme, at(v.start_sample)) for v in native.visemes]
        # The blocks carry exactly the scaled number of samples.
        assert bounds[subtitle.chunk_index] == (at(0), at(native_samples))
        chunk_start += native_samples


def test_a_client_that_does_not_ask_gets_no_timing(timing_daemon: DaemonProcess) -> None:
    events, lip_sync = turn_events(timing_daemon.address, "blacksmith", "Good morning!",
                                   timing=False)
    assert lip_sync == "visemes"  # the capability is stated either way
    assert isinstance(events[-1], Done)
    assert not any(isinstance(e, Timing) for e in events)


def test_a_voice_without_alignment_sends_a_mouth_value_per_block(
        timing_daemon: DaemonProcess, tmp_path: Path) -> None:
    async def energy_npc() -> str | None:
        async with BridgeClient(timing_daemon.address) as client:
            assert client.welcome is not None
            return next((n.npc_id for n in client.welcome.npcs if n.lip_sync == "energy"), None)

    npc_id = run(energy_npc())
    if npc_id is None:
        pytest.skip("the test config has no voice without alignment")
    events, lip_sync = turn_events(timing_daemon.address, npc_id, "Do you have a room?")
    assert lip_sync == "energy" and isinstance(events[-1], Done)
    check_order(events)
    mouth = {m.start_sample: m.open for e in events if isinstance(e, Timing)
             for m in e.mouth}
    assert all(isinstance(e, Timing) and e.source == "energy" and not e.words
               for e in events if isinstance(e, Timing))
    position = 0
    for event in events:
        if isinstance(event, DecodedAudio) and event.header.sample_count:
            assert 0.0 <= mouth[position] <= 1.0  # one value for each block, at its start
            position += event.header.sample_count
    assert max(mouth.values()) > 0.3  # speech opens the mouth


def test_say_writes_the_timing_beside_the_wav(timing_daemon: DaemonProcess,
                                              tmp_path: Path) -> None:
    wav_path, json_path = tmp_path / "reply.wav", tmp_path / "reply.json"
    options = SayOptions(address=timing_daemon.address, npc_id="blacksmith", text=LINE,
                         out_path=wav_path, timing_path=json_path)
    assert run(say(options)) == 0
    report = json.loads(json_path.read_text())
    with wave.open(str(wav_path)) as wav:
        assert report["sample_count"] == wav.getnframes()
        assert report["sample_rate_hz"] == wav.getframerate() == 22050
    words = [w["text"] for w in report["words"]]
    assert words == [w for chunk in report["chunks"] for w in word_tokens(chunk["text"])]
    starts = [v["start_sample"] for v in report["visemes"]]
    assert starts == sorted(starts) and starts[-1] < report["sample_count"]
    assert {v["viseme"] for v in report["visemes"]} <= set(VISEMES)
