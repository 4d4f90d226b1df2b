"""The hibari "heart" voice: the real engine (hibari-tts's bundled ONNX) and through the daemon."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from daemon.config import VoiceConfig
from daemon.config_file import load_config
from daemon.launcher import DaemonProcess
from daemon.tts.hibari import HibariEngine
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn, check_cancel_after_first_block

THREE_SENTENCES = ("The road north is long. Wolves hunt there at night. "
                   "Take a torch and keep to the path.")


@pytest.fixture(scope="module")
def engine() -> HibariEngine:
    return HibariEngine(onnx_threads=1)


def heart() -> VoiceConfig:
    return VoiceConfig(engine="hibari", model="heart")


def test_heart_streams_one_audible_piece_per_sentence_at_24_khz(engine: HibariEngine) -> None:
    pieces: list[np.ndarray] = []
    engine.synthesize(THREE_SENTENCES, heart(), pieces.append, threading.Event())
    assert engine.sample_rate_hz == 24000
    assert len(pieces) == 3
    for piece in pieces:
        assert piece.dtype == np.int16 and piece.ndim == 1
        assert piece.size > 0.3 * 24000  # a sentence of speech, not a click
        assert np.sqrt(np.mean(piece.astype(np.float64) ** 2)) > 300.0


def test_stop_ends_a_synthesis_within_one_piece(engine: HibariEngine) -> None:
    stop = threading.Event()
    pieces: list[np.ndarray] = []

    def emit(piece: np.ndarray) -> None:
        pieces.append(piece)
        stop.set()  # as a cancel arriving while the first sentence is being sent

    engine.synthesize(THREE_SENTENCES, heart(), emit, stop)
    assert len(pieces) == 1
    again: list[np.ndarray] = []
    engine.synthesize("Still here.", heart(), again.append, threading.Event())
    assert again  # the engine is usable after a stop


def test_length_scale_and_volume_apply(engine: HibariEngine) -> None:
    def total(voice: VoiceConfig) -> tuple[int, float]:
        pieces: list[np.ndarray] = []
        engine.synthesize("Welcome to the Prancing Stag.", voice, pieces.append,
                          threading.Event())
        audio = np.concatenate(pieces).astype(np.float64)
        return audio.size, float(np.sqrt(np.mean(audio**2)))

    normal, slow, quiet = (total(heart()),
                           total(VoiceConfig(engine="hibari", model="heart", length_scale=1.5)),
                           total(VoiceConfig(engine="hibari", model="heart", volume=0.25)))
    assert slow[0] > normal[0] * 1.2
    assert quiet[1] < normal[1] * 0.5


def test_the_packaged_innkeeper_speaks_with_heart() -> None:
    config = load_config()
    assert config.voices[config.npcs["innkeeper"].voice].engine == "hibari"


def test_a_turn_with_the_hibari_voice_streams_audible_24_khz_blocks(
        daemon: DaemonProcess) -> None:
    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address) as client:
            innkeeper = next(n for n in client.welcome.npcs if n.npc_id == "innkeeper")
            assert innkeeper.sample_rate_hz == 24000 and innkeeper.language == "en"
            return await client.run_turn("innkeeper", "Do you have a room for tonight?")

    result = run(scenario())
    done = assert_complete_turn(result)
    assert result.sample_rate_hz == 24000
    assert done.timings.tts_first_audio_ms is not None and done.timings.rtf is not None
    # 50 ms blocks of the fast profile at 24 kHz; only the chunks' tails are shorter.
    assert max(samples for _, samples in result.block_arrivals) == 1200


def test_a_hibari_turn_cancels_and_the_next_turn_works(daemon: DaemonProcess) -> None:
    check_cancel_after_first_block(
        daemon.address, "innkeeper",
        "Tell me every rumour you have heard this week, one by one, in detail.",
        "Thank you.")
