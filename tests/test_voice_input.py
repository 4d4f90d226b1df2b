"""Voice input end to end: Piper-spoken player lines fed as microphone blocks.

Real models throughout: Piper synthesises the player's lines, the daemon process runs
silero-vad and faster-whisper (tiny.en), then llama.cpp and Piper for the reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import jiwer
import numpy as np
import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Cancelled, Done, Error, SpeechEnded, SpeechStarted, Transcript
from daemon.bench.voice import speak_lines
from daemon.launcher import DaemonProcess
from tests.support.aio import run, wait_until
from tests.support.configs import write_config
from tests.support.spoken import PLAYER_LINES

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")

LINES = PLAYER_LINES
MIC_RATE_HZ = 16000
BLOCK_SAMPLES = 1600  # 100 ms blocks, as the Godot addon sends


@pytest.fixture(scope="module")
def spoken() -> dict[str, np.ndarray]:
    """Each line spoken by Piper (deterministic: no noise), int16 at 16 kHz."""
    return dict(zip(LINES, speak_lines(LINES), strict=True))


@pytest.fixture(scope="module")
def voice_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon whose endpoint waits 1 s of silence, so a 0.7 s pause is only a pause.

    Silence alone decides here (no end-of-turn model): tests/test_end_of_turn.py has it.
    """
    path = tmp_path_factory.mktemp("voice") / "voice.toml"
    write_config(path, asr={"end_silence_ms": 1000, "pause_ms": 200, "smart_turn": False})
    with DaemonProcess(path, log_path=path.with_suffix(".log")) as process:
        yield process


def silence(ms: int) -> np.ndarray:
    return np.zeros(MIC_RATE_HZ * ms // 1000, dtype=np.int16)


async def stream_audio(client: BridgeClient, audio: np.ndarray, realtime: bool) -> None:
    """Send `audio` in 100 ms blocks, at the pace of a microphone if `realtime`."""
    for start in range(0, audio.size, BLOCK_SAMPLES):
        await client.send_mic(audio[start : start + BLOCK_SAMPLES].astype("<i2").tobytes())
        await asyncio.sleep(BLOCK_SAMPLES / MIC_RATE_HZ if realtime else 0.002)


async def next_transcript(client: BridgeClient, timeout_s: float = 60) -> Transcript:
    while True:
        event = await asyncio.wait_for(client.speech_events.get(), timeout_s)
        if isinstance(event, Transcript):
            return event
        if isinstance(event, SpeechEnded) and event.turn_id is None:
            raise AssertionError("the utterance was not recognised")


def test_push_to_talk_transcripts_match_the_lines(voice_daemon: DaemonProcess,
                                                  spoken: dict[str, np.ndarray]) -> None:
    async def scenario() -> list[str]:
        heard = []
        async with BridgeClient(voice_daemon.address) as client:
            for audio in spoken.values():
                await client.listen_start("innkeeper", mode="push_to_talk")
                await stream_audio(client, np.concatenate((silence(200), audio, silence(200))),
                                   realtime=False)
                await client.listen_stop()
                transcript = await next_transcript(client)
                heard.append(transcript.text)
                await client.cancel(transcript.turn_id)  # only the transcript matters here
                result = await client.collect(transcript.turn_id, 0.0)
                assert isinstance(result.terminal, (Cancelled, Done))
        return heard

    heard = run(scenario(), timeout_s=300)
    normalize = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(),
                               jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                               jiwer.ReduceToListOfListOfWords()])
    error_rate = jiwer.wer(list(spoken), heard, reference_transform=normalize,
                           hypothesis_transform=normalize)
    assert len(heard) == len(LINES) >= 10
    assert error_rate < 0.15, f"WER {error_rate:.2%}: {list(zip(spoken, heard, strict=True))}"


def test_open_mic_turn_with_a_pause_inside_the_sentence(voice_daemon: DaemonProcess,
                                                        spoken: dict[str, np.ndarray]) -> None:
    first_half, second_half = speak_lines(["Can you repair my sword", "before nightfall?"])
    # A 700 ms pause: longer than pause_ms (a speculative turn starts), shorter than the
    # 1000 ms endpoint (so the turn must not end there).
    audio = np.concatenate((silence(300), first_half, silence(700), second_half,
                            silence(1300)))

    async def scenario() -> tuple[list[object], TurnResult, list[object]]:
        async with BridgeClient(voice_daemon.address) as client:
            await client.listen_start("blacksmith", mode="open_mic")
            await stream_audio(client, audio, realtime=True)
            transcript = await next_transcript(client)
            result = await client.collect(transcript.turn_id, 0.0)
            await client.listen_stop()
            await asyncio.sleep(0.5)
            events = []
            while not client.speech_events.empty():
                events.append(client.speech_events.get_nowait())
            stray = []
            while not client._control.empty():
                stray.append(client._control.get_nowait())
            return events, result, stray

    events, result, stray = run(scenario(), timeout_s=120)
    assert result.transcript is not None
    words = jiwer.RemovePunctuation()(result.transcript.lower())
    assert "sword" in words and "nightfall" in words, result.transcript
    done = result.terminal
    assert isinstance(done, Done) and result.pcm and done.block_count == len(result.seqs)
    assert done.timings.endpoint_ms is not None and done.timings.asr_ms is not None
    # Nothing else spoke: the speculative turn started in the pause left no trace.
    assert not [m for m in stray if isinstance(m, (DecodedAudio, Transcript))], stray
    assert not [e for e in events if isinstance(e, Transcript)], events
    # The pause did start speculative work (how far it got depends on the machine's speed).
    assert "speculative start dropped" in voice_daemon.log_text()


def test_speech_so_far_prefills_the_npc_prompt(voice_daemon: DaemonProcess,
                                              spoken: dict[str, np.ndarray]) -> None:
    line = LINES[0]  # the longest line, ~3.6 s: partial transcripts after 1 s and 2 s
    audio = spoken[line]
    cut = int(2.4 * MIC_RATE_HZ)  # mid-utterance, past the second partial transcript
    log_start = len(voice_daemon.log_text())

    def prefilled_after_two_seconds() -> bool:
        log = voice_daemon.log_text()[log_start:]
        heard = log.find("the first 20")  # the partial after 2 s of speech
        return heard >= 0 and "prefilled blacksmith's prompt" in log[heard:]

    async def scenario() -> TurnResult:
        async with BridgeClient(voice_daemon.address) as client:
            await client.listen_start("blacksmith", mode="open_mic")
            await stream_audio(client, np.concatenate((silence(300), audio[:cut])),
                               realtime=True)
            # The player holds the rest back until the partial's prefill is done, so the
            # test does not depend on how fast this machine runs it.
            await wait_until(prefilled_after_two_seconds, timeout_s=60)
            await stream_audio(client, np.concatenate((audio[cut:], silence(1300))),
                               realtime=True)
            transcript = await next_transcript(client)
            result = await client.collect(transcript.turn_id, 0.0)
            await client.listen_stop()
            return result

    result = run(scenario(), timeout_s=120)
    assert result.transcript is not None
    assert jiwer.wer(line.lower(), result.transcript.lower()) < 0.2, result.transcript
    done = result.terminal
    assert isinstance(done, Done)
    timings = done.timings
    assert timings.prompt_tokens is not None and timings.prefill_tokens is not None
    # Only the words after the partial transcript and the end-of-turn markup are new.
    assert timings.prefill_tokens <= 10, timings
    assert timings.prompt_tokens >= timings.prefill_tokens + 10, timings


def test_speculative_start_is_released_at_the_endpoint(voice_daemon: DaemonProcess,
                                                       spoken: dict[str, np.ndarray]) -> None:
    audio = np.concatenate((silence(300), spoken[LINES[2]], silence(1500)))

    async def scenario() -> TurnResult:
        async with BridgeClient(voice_daemon.address) as client:
            await client.listen_start("innkeeper", mode="open_mic")
            await stream_audio(client, audio, realtime=True)
            started = await asyncio.wait_for(client.speech_events.get(), 10)
            assert isinstance(started, SpeechStarted)
            transcript = await next_transcript(client)
            result = await client.collect(transcript.turn_id, 0.0)
            await client.listen_stop()
            return result

    result = run(scenario(), timeout_s=120)
    assert isinstance(result.terminal, Done)
    assert result.terminal.timings.speculative is True
    assert result.seqs == list(range(len(result.seqs)))


def test_speaking_over_a_talking_npc_barges_in(voice_daemon: DaemonProcess,
                                               spoken: dict[str, np.ndarray]) -> None:
    async def scenario() -> TurnResult:
        async with BridgeClient(voice_daemon.address) as client:
            await client.listen_start("oracle", mode="open_mic")
            speaking: asyncio.Task[None] | None = None

            def interrupt(event: object, _result: TurnResult) -> None:
                nonlocal speaking
                if isinstance(event, DecodedAudio) and speaking is None:
                    speaking = asyncio.ensure_future(stream_audio(
                        client, np.concatenate((spoken[LINES[4]], silence(300))),
                        realtime=True))

            result = await client.run_turn("oracle", "Tell me a long tale of the old gods.",
                                           on_event=interrupt)
            assert speaking is not None
            await speaking
            await client.listen_stop()
            return result

    result = run(scenario(), timeout_s=120)
    assert isinstance(result.terminal, Cancelled) and result.terminal.reason == "barge_in"


def test_microphone_misuse_gets_named_errors(voice_daemon: DaemonProcess) -> None:
    async def scenario() -> list[object]:
        async with BridgeClient(voice_daemon.address) as client:
            await client.send_mic(b"\x00\x00" * 160)
            first = await client.next_control()
            await client.listen_start("nobody")
            second = await client.next_control()
            await client.send_raw([b'{"type": "mic_audio", "seq": 0, "sample_count": 4}',
                                   b"\x00" * 3])
            third = await client.next_control()
            return [first, second, third]

    codes = [m.code for m in run(scenario()) if isinstance(m, Error)]
    assert codes == ["not_listening", "unknown_npc", "bad_frame"]


def test_voice_lines_fixture_is_not_silence(spoken: dict[str, np.ndarray]) -> None:
    for audio in spoken.values():
        assert np.abs(audio.astype(np.int32)).max() > 1000

