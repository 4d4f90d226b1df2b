"""Voice input through the raw-socket twin of the Godot addon (tests/raw_zmtp_client.py).

The twin's microphone path is the addon's: stereo float frames at a 48 kHz mix rate, as
Godot's AudioEffectCapture hands them over, pulled once per game frame, converted to 16 kHz
s16le by the twin of mic_resampler.gd and cut into 100 ms `mic_audio` blocks by the twins of
mic_capture.gd and voice_input.gd. A line spoken by Piper goes through it to a real daemon
(silero-vad, Whisper tiny.en, then the NPC's reply): the transcript must name the line's key
words and the voice turn must play like a typed one; speaking over a talking NPC must stop it
at once, locally and in the daemon.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import soxr

from bridge_protocol.framing import DecodedMic, client_message_from_frames
from bridge_protocol.messages import ListenStart, ListenStop
from daemon.config import VoiceConfig
from daemon.launcher import DaemonProcess
from daemon.models import resolve_piper_voice
from daemon.tts.piper import PiperEngine
from tests import raw_zmtp_client as raw
from tests.raw_zmtp_client import MicResampler, NpcVoiceClient, VoiceInput, frames_to_mic_pcm
from tests.support.configs import write_config

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")

MIX_RATE_HZ = 48000  # Godot's usual output mix rate: the rate AudioEffectCapture delivers
FRAMES_PER_PROCESS = 800  # what one _process() finds at 60 fps and 48 kHz
LINE = "Can you repair my sword before nightfall?"
INTERRUPTION = "Wait, stop, I need a room for the night."


def spoken_frames(text: str, lead_ms: int = 300, tail_ms: int = 300) -> list[list[float]]:
    """`text` spoken by Piper, as the stereo float32 frames a 48 kHz capture bus would hold."""
    engine = PiperEngine(*resolve_piper_voice("joe"))
    voice = VoiceConfig(noise_scale=0.0, noise_w_scale=0.0)  # deterministic
    pieces: list[np.ndarray] = []
    engine.synthesize(text, voice, pieces.append, threading.Event())
    speech = np.concatenate(pieces).astype(np.float32) / 32768.0
    mono = soxr.resample(speech, engine.sample_rate_hz, MIX_RATE_HZ).astype(np.float32)
    mono = np.concatenate((np.zeros(MIX_RATE_HZ * lead_ms // 1000, np.float32), mono,
                           np.zeros(MIX_RATE_HZ * tail_ms // 1000, np.float32)))
    return np.stack((mono, mono), axis=1).tolist()  # float32 values, like Vector2's


@pytest.fixture(scope="module")
def line_frames() -> list[list[float]]:
    return spoken_frames(LINE)


@pytest.fixture(scope="module")
def voice_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The packaged config (voice input on, barge-in on), seeded, 48-token replies."""
    path = tmp_path_factory.mktemp("raw-voice") / "voice.toml"
    write_config(path)
    with DaemonProcess(path, log_path=path.with_suffix(".log")) as process:
        yield process


def connected_client(daemon: DaemonProcess) -> NpcVoiceClient:
    client = NpcVoiceClient("127.0.0.1", daemon.port, mix_rate_hz=MIX_RATE_HZ)
    client.connect_to_daemon()
    assert client.run_until(client.is_connected_to_daemon, 15), client.events
    return client


def stream_frames(client: NpcVoiceClient, frames: list[list[float]]) -> None:
    """Hand `frames` to the capture effect a game frame's worth at a time, faster than real
    time (the daemon's VAD runs on the input timeline), running one frame after each."""
    for start in range(0, len(frames), FRAMES_PER_PROCESS):
        client.microphone.push(frames[start:start + FRAMES_PER_PROCESS])
        client.process()


def event_names(client: NpcVoiceClient) -> list[str]:
    return [event[0] for event in client.events]


def transcript_event(client: NpcVoiceClient) -> tuple | None:
    return next((e for e in client.events if e[0] == "transcript_received"), None)


def reference_box_resample(frames: np.ndarray, input_rate: int, output_rate: int) -> np.ndarray:
    """Area-average resampling with numpy: output k = mean of the mono input over
    [k * step, (k + 1) * step) input frames, frames cut at the edges counting in part."""
    mono = (frames[:, 0].astype(np.float64) + frames[:, 1].astype(np.float64)) * 0.5
    step = input_rate / output_rate
    count = int(len(mono) / step)
    integral = np.concatenate(([0.0], np.cumsum(mono)))  # integral at whole frames
    edges = np.arange(count + 1) * step
    at_edges = np.interp(edges, np.arange(len(integral)), integral)  # linear inside a frame
    means = np.diff(at_edges) / step
    return np.clip(np.sign(means) * np.floor(np.abs(means) * 32767.0 + 0.5), -32768, 32767)


# ------------------------------------------------------------------ the converter (no daemon)


@pytest.mark.parametrize("input_rate", [48000, 44100])
def test_mic_resampler_is_a_box_filter_that_can_be_cut_anywhere(input_rate: int) -> None:
    rng = np.random.default_rng(7)
    frames = rng.uniform(-0.9, 0.9, size=(4801, 2)).astype(np.float32)
    pairs = frames.tolist()
    whole = np.frombuffer(frames_to_mic_pcm(pairs, input_rate), "<i2")
    reference = reference_box_resample(frames, input_rate, 16000)
    assert len(whole) == len(reference) == int(4801 * 16000 / input_rate)
    assert np.max(np.abs(whole - reference)) <= 1  # float summation order only
    if input_rate == 48000:  # exactly the mean of 3 frames
        means = ((frames[:4800, 0].astype(np.float64) + frames[:4800, 1]) * 0.5).reshape(-1, 3)
        assert np.max(np.abs(whole - np.round(means.mean(axis=1) * 32767))) <= 1
    resampler = MicResampler(input_rate, 16000)
    cut = b"".join(resampler.process(pairs[start:end]) for start, end in
                   zip([0, 1, 2, 700, 701, 2222, 4000], [1, 2, 700, 701, 2222, 4000, 4801],
                       strict=True))
    assert cut == whole.tobytes()


def test_mic_resampler_keeps_speech_band_tones_and_clips() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = np.frombuffer(frames_to_mic_pcm(np.stack((tone, tone), 1).tolist(), 48000),
                        "<i2") / 32767
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000 + 2 * np.pi / 48)
    gain = (1 + 2 * np.cos(2 * np.pi / 48)) / 3  # the 3-frame mean's response at 1 kHz
    assert np.max(np.abs(out - gain * expected)) < 2e-4
    assert frames_to_mic_pcm([[2.0, 2.0]] * 3, 48000) == (32767).to_bytes(2, "little")
    assert frames_to_mic_pcm([[-2.0, -2.0]] * 3, 48000) == (-32768).to_bytes(2, "little",
                                                                            signed=True)
    assert raw.roundi(2.5) == 3 and raw.roundi(-2.5) == -3 and raw.roundi(0.49) == 0


def test_voice_input_sends_listen_start_contiguous_blocks_and_listen_stop() -> None:
    sent: list[list[bytes]] = []
    voice = VoiceInput(lambda frames: sent.append(frames) or True, MIX_RATE_HZ)
    assert voice.start("blacksmith", "push_to_talk", {"profile": "fast"})
    frames = np.random.default_rng(1).uniform(-0.5, 0.5, (50400, 2)).astype(np.float32)
    pairs = frames.tolist()  # 1.05 s: ten 100 ms blocks and a 50 ms rest
    for start in range(0, len(pairs), FRAMES_PER_PROCESS):
        voice.mic.capture.push(pairs[start:start + FRAMES_PER_PROCESS])
        voice.mic.process()
    assert len(sent) == 1 + 10 and voice.is_listening()
    voice.stop()
    decoded = [client_message_from_frames(message) for message in sent]
    assert decoded[0] == ListenStart(npc_id="blacksmith", mode="push_to_talk",
                                     sample_rate_hz=16000, profile="fast")
    assert isinstance(decoded[-1], ListenStop) and not voice.is_listening()
    mics = decoded[1:-1]
    assert all(isinstance(m, DecodedMic) and len(sent[i + 1]) == 2 for i, m in enumerate(mics))
    assert [m.header.seq for m in mics] == list(range(11))
    assert [m.header.sample_count for m in mics] == [1600] * 10 + [800]
    assert b"".join(m.pcm for m in mics) == frames_to_mic_pcm(pairs, MIX_RATE_HZ)
    problems: list[tuple[str, str]] = []
    voice.failed.append(lambda code, message: problems.append((code, message)))
    assert not voice.start("blacksmith", "always_on", {})
    voice.mic.enable_input = False
    assert not voice.start("blacksmith", "open_mic", {})
    assert [code for code, _ in problems] == ["invalid_mode", "mic_unavailable"]
    assert "audio/driver/enable_input" in problems[1][1]


# ------------------------------------------------------------------ client logic, scripted


def scripted_client() -> NpcVoiceClient:
    """A client that believes it is connected; what it sends stays in its send buffer."""
    client = NpcVoiceClient("127.0.0.1", 9)
    client.connection.state = raw.State.OPEN  # no socket: _flush_tx keeps the bytes
    client._on_message_received([json.dumps({"type": "welcome", "npcs": []}).encode()])
    return client


def daemon_says(client: NpcVoiceClient, message: dict, pcm: bytes | None = None) -> None:
    frames = [json.dumps(message).encode()] + ([pcm] if pcm is not None else [])
    client._on_message_received(frames)


def sent_messages(client: NpcVoiceClient) -> list[dict]:
    data, pos, found = bytes(client.connection._tx), 0, []
    while (frame := raw.decode_frame(data, pos, 1 << 20)) is not None:
        if not frame.is_command() and frame.body[:1] == b"{":
            found.append(json.loads(frame.body))
        pos += frame.wire_size
    return found


def block(turn_id: int, seq: int) -> tuple[dict, bytes]:
    return ({"type": "audio_block", "turn_id": turn_id, "seq": seq, "sample_rate_hz": 22050,
             "sample_count": 4, "chunk_index": 0, "final": False}, bytes(8))


def test_voice_events_barge_in_and_voice_turns_in_the_client_logic() -> None:
    client = scripted_client()
    npc_turn = client.say("oracle", "Tell me a story.")
    daemon_says(client, *block(npc_turn, 0))
    assert client.start_listening("oracle", "open_mic")
    daemon_says(client, {"type": "speech_started", "npc_id": "oracle", "at_ms": 320.0})
    turn = client._turns.turn(npc_turn)
    assert turn is not None and turn.stopped and turn.terminal == ""  # silenced, not ended
    assert not [m for m in sent_messages(client) if m["type"] == "cancel"]  # the daemon does it
    daemon_says(client, *block(npc_turn, 1))
    assert turn.blocks_after_stop == 1 and len(turn.headers) == 1  # queued audio is dropped
    daemon_says(client, {"type": "cancelled", "turn_id": npc_turn, "reason": "barge_in"})
    assert client.finished[npc_turn].outcome() == "cancelled"
    daemon_says(client, {"type": "speech_ended", "npc_id": "oracle", "at_ms": 900.0,
                         "turn_id": 7})
    daemon_says(client, {"type": "transcript", "turn_id": 7, "npc_id": "oracle",
                         "text": "What is in the temple?", "speech_end_ms": 900.0})
    daemon_says(client, {"type": "subtitle", "turn_id": 7, "chunk_index": 0, "text": "Gold."})
    daemon_says(client, *block(7, 0))
    daemon_says(client, {"type": "done", "turn_id": 7, "block_count": 1, "sample_count": 4})
    assert client.finished[7].outcome() == "done" and client.finished[7].subtitles == ["Gold."]
    names = [e[0] for e in client.events if e[0] != "connected"]
    assert names == ["player_speech_started", "speech_finished", "player_speech_ended",
                     "transcript_received", "subtitle_received", "speech_finished"], names
    assert ("transcript_received", 7, "oracle", "What is in the temple?") in client.events
    assert client.say("oracle", "Really?") == 8 + raw.VOICE_TURN_ID_GAP
    daemon_says(client, {"type": "speech_started", "npc_id": "blacksmith", "at_ms": 5.0})
    assert not client._turns.turn(8 + raw.VOICE_TURN_ID_GAP).stopped  # another NPC talks on
    client.barge_in = False
    daemon_says(client, {"type": "speech_started", "npc_id": "oracle", "at_ms": 9.0})
    assert not client._turns.turn(8 + raw.VOICE_TURN_ID_GAP).stopped
    client.stop_listening()
    types = [m["type"] for m in sent_messages(client)]
    assert types == ["say", "listen_start", "say", "listen_stop"], types


# ------------------------------------------------------------------ against the real daemon


def test_push_to_talk_line_becomes_a_voice_turn(voice_daemon: DaemonProcess,
                                                line_frames: list[list[float]]) -> None:
    client = connected_client(voice_daemon)
    assert client.start_listening("blacksmith", "push_to_talk")
    stream_frames(client, line_frames)
    client.stop_listening()  # the key is released: the utterance ends here
    assert not client.is_listening()
    assert client.run_until(lambda: transcript_event(client) is not None, 60), client.events
    _, turn_id, npc_id, text = transcript_event(client)
    words = text.lower()
    assert npc_id == "blacksmith" and "repair" in words and "sword" in words, text
    assert turn_id >= 0
    assert client.run_until(lambda: turn_id in client.finished, 90), client.events[-5:]
    turn = client.finished[turn_id]
    assert turn.outcome() == "done", turn.terminal_message
    done = turn.terminal_message
    assert [h["seq"] for h in turn.headers] == list(range(done["block_count"]))
    assert len(turn.pcm) == 2 * done["sample_count"] > 0 and turn.subtitles
    assert done["timings"]["asr_ms"] is not None and done["timings"]["first_block_ms"] > 0
    names = event_names(client)
    assert names.index("player_speech_started") < names.index("player_speech_ended") \
        < names.index("transcript_received") < names.index("subtitle_received") \
        < names.index("speech_finished")
    assert ("player_speech_ended", "blacksmith", turn_id) in client.events
    assert not [e for e in client.events if e[0] == "error_received"], client.events
    # The game's own next line uses a greater id (with the gap); the daemon accepts it.
    say_id = client.say("blacksmith", "And how much will it cost?")
    assert say_id > turn_id + raw.VOICE_TURN_ID_GAP - 1
    client.cancel(say_id)
    assert client.run_until(lambda: say_id in client.finished, 30), client.events[-5:]
    assert client.finished[say_id].outcome() == "cancelled"
    assert not [e for e in client.events if e[0] == "error_received"], client.events
    client.disconnect_from_daemon()


def test_speaking_over_a_talking_npc_stops_it_at_once(voice_daemon: DaemonProcess) -> None:
    interruption = spoken_frames(INTERRUPTION)
    client = connected_client(voice_daemon)
    npc_turn = client.say("oracle", "Tell me a long story about the old temple.")
    assert client.run_until(lambda: npc_turn in client.finished
                            or bool(client._turns.turn(npc_turn).headers), 90), client.events
    assert npc_turn not in client.finished, "the NPC finished before the player could speak"
    assert client.start_listening("oracle", "push_to_talk")
    stopped_at_speech_start: list[bool] = []

    def note_speech_start() -> bool:
        # Checked after every frame, so "stopped" is observed in the same frame as the event.
        if "player_speech_started" in event_names(client) and not stopped_at_speech_start:
            turn = client._turns.turn(npc_turn) or client.finished[npc_turn]
            stopped_at_speech_start.append(turn.stopped)
        return bool(stopped_at_speech_start)

    for start in range(0, len(interruption), FRAMES_PER_PROCESS):
        client.microphone.push(interruption[start:start + FRAMES_PER_PROCESS])
        client.process()
        note_speech_start()
    # The daemon's event may come after the last frame was pushed (a busy machine).
    assert client.run_until(note_speech_start, 30), client.events
    assert stopped_at_speech_start == [True], client.events
    client.stop_listening()
    assert client.run_until(lambda: npc_turn in client.finished, 30), client.events[-5:]
    npc = client.finished[npc_turn]
    assert npc.outcome() == "cancelled"
    assert npc.terminal_message.get("reason") == "barge_in", npc.terminal_message
    assert client.run_until(lambda: transcript_event(client) is not None, 60), client.events
    _, voice_turn, _, text = transcript_event(client)
    assert voice_turn > npc_turn and "room" in text.lower(), text
    client.cancel(voice_turn)  # the reply itself is covered by the push-to-talk test
    assert client.run_until(lambda: voice_turn in client.finished, 30), client.events[-5:]
    assert npc.blocks_after_terminal == 0
    assert not [e for e in client.events if e[0] == "error_received"], client.events
    client.disconnect_from_daemon()
