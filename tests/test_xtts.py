"""XTTS-v2 voices: a tiny random-weight model through the real worker, loader and daemon.

The real XTTS-v2 weights cannot be fetched here, so a session fixture writes a
random-weight checkpoint in the real layout (`daemon.testing.random_xtts`) and everything
else is real: the worker process in the XTTS environment (coqui-tts 0.28, torch and
torchaudio 2.8 from the `xtts` extra), `Xtts.load_checkpoint`, `inference_stream`,
the latents cache, the daemon and ZeroMQ. Reference clips are Piper-spoken speech.

The XTTS environment is `$NPC_VOICE_XTTS_PYTHON`, else `.venv-xtts/bin/python`
(`bash scripts/bootstrap.sh test` creates it); without either these tests skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile

from bridge_protocol.client import BridgeClient, TurnResult
from daemon.config_file import ConfigError, load_config, parse_config
from daemon.launcher import DaemonProcess
from daemon.models import resolve_piper_voice
from daemon.tts.piper import PiperEngine
from daemon.tts.xtts import wire
from daemon.tts.xtts.engine import XttsEngine, XttsWorker, start_xtts
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn, check_cancel_after_first_block
from tests.support.configs import config_for_tests, config_text

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RANDOM_MODEL_MIN_RMS = 20.0
"""Random weights speak noise of varying loudness (RMS 130 seen in one turn); silence is 0."""
CLIP_TEXT = ("The old bridge creaks in the wind, and the river below runs cold and fast "
             "under a grey sky.")


def xtts_python() -> str | None:
    configured = os.environ.get("NPC_VOICE_XTTS_PYTHON")
    if configured:
        return configured
    default = REPO / ".venv-xtts" / "bin" / "python"
    return str(default) if default.exists() else None


@pytest.fixture(scope="session")
def python_xtts() -> str:
    python = xtts_python()
    if python is None:
        pytest.skip("no XTTS environment (bash scripts/bootstrap.sh test creates .venv-xtts)")
    return python


@pytest.fixture(scope="session")
def tiny_model(python_xtts: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xtts") / "tiny"
    subprocess.run([python_xtts, "-m", "daemon.testing.random_xtts", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    return folder


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Piper-spoken reference clips at 22.05 kHz: a WAV, a FLAC and an OGG/Vorbis."""
    from daemon.config import VoiceConfig

    folder = tmp_path_factory.mktemp("clips")
    engine = PiperEngine(*resolve_piper_voice("joe"))
    out = {}
    for name, text, fmt in (("bard.wav", CLIP_TEXT, "WAV"),
                            ("bard_2.flac", "Gather round, friends, for a song.", "FLAC"),
                            ("bard_3.ogg", "Another round for the road!", "OGG")):
        pieces: list[np.ndarray] = []
        engine.synthesize(text, VoiceConfig(noise_scale=0.0, noise_w_scale=0.0),
                          pieces.append, threading.Event())
        soundfile.write(folder / name, np.concatenate(pieces), engine.sample_rate_hz,
                        format=fmt)
        out[name] = folder / name
    return out


def xtts_config_text(python: str, model: Path, clips: list[Path], cache: Path,
                     device: str = "cpu", dtype: str = "float32") -> str:
    """The test config with its [xtts] section set, an XTTS voice and the NPC "bard"."""
    return config_text(config_for_tests(
        llm={"max_reply_tokens": 24},
        xtts={"model": str(model), "python": python, "device": device, "dtype": dtype,
              "first_stream_chunk_size": 4, "stream_chunk_size": 8,
              "latents_cache_dir": str(cache), "seed": 7},
        voices={"bard_clone": {"engine": "xtts", "reference_clips": [str(c) for c in clips],
                               "fallback": "joe"}},
        npcs={"bard": {"display_name": "Bard", "voice": "bard_clone",
                       "persona": "You are a cheerful bard in a tavern. Answer in one or "
                                  "two short sentences."}}))


@pytest.fixture(scope="module")
def xtts_daemon(python_xtts: str, tiny_model: Path, clips: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("xtts_daemon")
    config = folder / "xtts.toml"
    config.write_text(xtts_config_text(python_xtts, tiny_model, [clips["bard.wav"]],
                                       folder / "latents"))
    process = DaemonProcess(config, log_path=folder / "daemon.log",
                            ready_timeout_s=240).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def start_worker(python: str, model: Path, cache: Path, dtype: str = "float32") -> XttsWorker:
    worker = XttsWorker(python)
    worker.load(wire.Load(model_dir=str(model), device="cpu", dtype=dtype, torch_threads=1,
                          latents_cache_dir=str(cache), warm_up=False), timeout_s=240)
    return worker


# ---- through the daemon -----------------------------------------------------------

def test_an_xtts_npc_streams_its_reply_through_the_daemon(xtts_daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(xtts_daemon.address) as client:
            bard = next(npc for npc in client.welcome.npcs if npc.npc_id == "bard")
            assert bard.sample_rate_hz == 24000
            native = await client.run_turn("bard", "Sing me something short!")
        async with BridgeClient(xtts_daemon.address, sample_rate_hz=48000) as client:
            resampled = await client.run_turn("bard", "Another one!")
        return native, resampled

    result, resampled = run(scenario(), timeout_s=180)
    done = assert_complete_turn(result, min_rms=RANDOM_MODEL_MIN_RMS)
    assert result.sample_rate_hz == 24000
    assert_complete_turn(resampled, min_rms=RANDOM_MODEL_MIN_RMS)
    assert resampled.sample_rate_hz == 48000  # soxr, as for Piper voices
    assert len(result.seqs) >= 2, "XTTS audio must arrive in several blocks"
    reply = done.reply_text
    # XTTS voices get a first chunk of at least [xtts] min_first_chunk_chars (16).
    assert len(result.subtitles[0]) >= min(16, len(reply)), result.subtitles
    log = xtts_daemon.log_text()
    assert "XTTS loaded" in log and "latents cache miss" in log
    assert "fallback" not in log


def test_cancelling_an_xtts_turn_stops_it_and_the_next_turn_works(
        xtts_daemon: DaemonProcess) -> None:
    check_cancel_after_first_block(xtts_daemon.address, "bard",
                                   "Tell me a long ballad about the sea.", "Thank you, bard.",
                                   timeout_s=180, min_rms=RANDOM_MODEL_MIN_RMS)


@pytest.fixture
def doomed_xtts_daemon(python_xtts: str, tiny_model: Path, clips: dict[str, Path],
                       tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon of its own: the test kills its worker (so no test depends on order)."""
    config = tmp_path / "xtts.toml"
    config.write_text(xtts_config_text(python_xtts, tiny_model, [clips["bard.wav"]],
                                       tmp_path / "latents"))
    process = DaemonProcess(config, log_path=tmp_path / "daemon.log",
                            ready_timeout_s=240).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def test_if_the_worker_dies_the_voice_goes_on_with_its_fallback(
        doomed_xtts_daemon: DaemonProcess) -> None:
    import psutil

    xtts_daemon = doomed_xtts_daemon
    assert xtts_daemon.process is not None
    workers = [child for child in psutil.Process(xtts_daemon.process.pid).children()
               if "daemon.tts.xtts.worker" in " ".join(child.cmdline())]
    assert len(workers) == 1
    workers[0].kill()
    # Not our child, so not ours to reap: wait until it is a zombie (or gone).
    deadline = time.monotonic() + 10
    while workers[0].is_running() and workers[0].status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.05)

    async def scenario() -> TurnResult:
        async with BridgeClient(xtts_daemon.address) as client:
            return await client.run_turn("bard", "Are you still there?")

    result = run(scenario(), timeout_s=120)
    assert_complete_turn(result)
    assert result.sample_rate_hz == 24000, "the rate announced at hello stays"
    assert xtts_daemon.log_text().count("XTTS worker is gone") == 1


def test_an_npc_falls_back_to_its_piper_voice_when_xtts_is_not_installed(
        tiny_model: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    # The test runner's own interpreter has no coqui-tts: the worker reports it.
    config = tmp_path / "fallback.toml"
    config.write_text(xtts_config_text(sys.executable, tiny_model, [clips["bard.wav"]],
                                       tmp_path / "latents"))
    with DaemonProcess(config, log_path=tmp_path / "daemon.log") as daemon:
        async def scenario() -> TurnResult:
            async with BridgeClient(daemon.address) as client:
                return await client.run_turn("bard", "Hello!")

        result = run(scenario())
        log = daemon.log_text()
    assert_complete_turn(result)
    assert result.sample_rate_hz == 22050  # Piper's joe
    assert log.count("XTTS cannot serve") == 1, log
    assert "not_installed" in log and "Piper fallback voice(s) joe" in log


def test_xtts_set_to_cuda_without_a_gpu_falls_back_with_the_reason(
        python_xtts: str, tiny_model: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    config = parse_config(xtts_config_text(python_xtts, tiny_model, [clips["bard.wav"]],
                                           tmp_path, device="cuda"))
    startup = start_xtts(config, ["bard_clone"], warm_up=False)
    assert startup.worker is None
    assert startup.failed["bard_clone"].startswith("no_cuda"), startup.failed


def test_missing_xtts_weights_fall_back_naming_the_fetch_command(
        python_xtts: str, clips: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(xtts_config_text(python_xtts, tmp_path / "nothing-here",
                                           [clips["bard.wav"]], tmp_path))
    startup = start_xtts(config, ["bard_clone"])
    assert startup.worker is None
    assert startup.failed["bard_clone"].startswith("model_not_found"), startup.failed
    fetched = msgspec.structs.replace(config, xtts=msgspec.structs.replace(
        config.xtts, model="xtts-v2"))
    monkeypatch.setenv("NPC_VOICE_MODELS", str(tmp_path / "models"))  # an empty cache
    why = start_xtts(fetched, ["bard_clone"]).failed["bard_clone"]
    assert "npc-voice models fetch xtts-v2" in why and "NON-COMMERCIAL" in why


# ---- the worker directly ----------------------------------------------------------

def synthesize(engine: XttsEngine, text: str, turn_start: bool,
               stop: threading.Event | None = None) -> list[np.ndarray]:
    pieces: list[np.ndarray] = []
    engine.synthesize(text, load_voice_settings(), pieces.append, stop or threading.Event(),
                      turn_start=turn_start)
    return pieces


def load_voice_settings():
    from daemon.config import VoiceConfig

    return VoiceConfig(engine="xtts", reference_clips=["unused"], fallback="joe")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_first_chunk_of_a_turn_streams_in_smaller_pieces_with_faded_edges(
        python_xtts: str, tiny_model: Path, clips: dict[str, Path], tmp_path: Path,
        dtype: str) -> None:
    # float16 on a CPU runs the same precision plumbing as on CUDA: half GPT,
    # float32 conditioning encoders and vocoder.
    config = parse_config(xtts_config_text(python_xtts, tiny_model, [clips["bard.wav"]],
                                           tmp_path))
    worker = start_worker(python_xtts, tiny_model, tmp_path, dtype)
    try:
        assert isinstance(worker.prepare_voice("bard_clone", [str(clips["bard.wav"])]),
                          wire.VoiceReady)
        engine = XttsEngine(worker, "bard_clone", config.xtts)
        first = synthesize(engine, "Well met, traveller of the road.", turn_start=True)
        later = synthesize(engine, "Well met, traveller of the road.", turn_start=False)
    finally:
        worker.close()
    tokens_to_samples = 1024 * 24000 / 22050  # one GPT token of audio at 24 kHz
    # First piece: stream_chunk_size tokens, less the cross-fade and fade held back.
    assert first[0].size < 4 * tokens_to_samples < later[0].size < 8 * tokens_to_samples + 1
    for pieces in (first, later):
        audio = np.concatenate(pieces).astype(np.int32)
        assert np.sqrt(np.mean(audio**2)) > RANDOM_MODEL_MIN_RMS, "expected sound, not silence"
        # 5 ms raised-cosine fades: each text chunk starts and ends at silence, so
        # joined chunks cannot click.
        assert abs(audio[0]) <= 1 and abs(audio[-1]) <= 1
        assert np.max(np.abs(audio[:30])) < np.max(np.abs(audio[120:2000]))


def test_stop_ends_a_synthesis_after_at_most_one_piece(
        python_xtts: str, tiny_model: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    config = parse_config(xtts_config_text(python_xtts, tiny_model, [clips["bard.wav"]],
                                           tmp_path))
    worker = start_worker(python_xtts, tiny_model, tmp_path)
    try:
        worker.prepare_voice("bard_clone", [str(clips["bard.wav"])])
        engine = XttsEngine(worker, "bard_clone", config.xtts)
        full = synthesize(engine, "A song of the sea and the stars above.", turn_start=True)
        stop = threading.Event()
        stopped: list[np.ndarray] = []

        def emit(piece: np.ndarray) -> None:
            stopped.append(piece)
            stop.set()

        engine.synthesize("A song of the sea and the stars above.", load_voice_settings(),
                          emit, stop, turn_start=True)
        assert engine.last_end is not None and engine.last_end.cancelled
        # The worker is still usable afterwards.
        again = synthesize(engine, "One more.", turn_start=True)
    finally:
        worker.close()
    assert len(full) >= 3
    assert len(stopped) == 1
    assert again


def test_latents_are_cached_and_recomputed_when_a_clip_changes(
        python_xtts: str, tiny_model: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    """`npc-voice voices prepare`: miss, hit, changed clip, corrupt entry, bad clip."""
    clip = tmp_path / "bard.wav"
    clip.write_bytes(clips["bard.wav"].read_bytes())
    config = tmp_path / "voices.toml"
    config.write_text(xtts_config_text(
        python_xtts, tiny_model, [Path("bard.wav"), clips["bard_2.flac"], clips["bard_3.ogg"]],
        tmp_path / "cache"))

    def prepare() -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "daemon", "--log-level", "WARNING",
                               "voices", "prepare", "--config", str(config)],
                              capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr

    code, out = prepare()
    assert code == 0 and "bard_clone: miss" in out, out
    entries = list((tmp_path / "cache").glob("*.pt"))
    assert len(entries) == 1

    code, out = prepare()
    assert code == 0 and "bard_clone: hit" in out, out

    audio, rate = soundfile.read(clip)
    soundfile.write(clip, audio * 0.5, rate)  # the same clip, edited: a new key
    code, out = prepare()
    assert code == 0 and "bard_clone: miss" in out, out
    newest = max((tmp_path / "cache").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    assert newest not in entries

    newest.write_bytes(b"not a torch file")
    code, out = prepare()
    assert code == 0 and "bard_clone: rebuilt" in out, out
    code, out = prepare()
    assert code == 0 and "bard_clone: hit" in out, out

    clip.write_bytes(b"RIFF junk")
    code, out = prepare()
    assert code == 1 and "bard_clone: FAILED" in out and "bard.wav" in out, out


def test_an_xtts_npc_configured_pt_br_passes_pt_to_the_engine(
        python_xtts: str, tiny_model: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    """The NPC's BCP 47 tag reaches XTTS as XTTS's own code (pt-BR -> "pt")."""
    from daemon.engines.loading import xtts_voice_settings
    from tests.support.voices import standin_piper_voice

    portuguese = standin_piper_voice(tmp_path, "pt_BR", "pt-br")  # the fallback
    config = parse_config(config_text(config_for_tests(
        xtts={"model": str(tiny_model), "python": python_xtts, "device": "cpu",
              "dtype": "float32", "latents_cache_dir": str(tmp_path / "latents"), "seed": 7},
        voices={"faber": {"engine": "piper", "model": str(portuguese)},
                "bard_clone": {"engine": "xtts", "reference_clips": [str(clips["bard.wav"])],
                               "fallback": "faber"}},
        npcs={"bardo": {"display_name": "Bardo", "voice": "bard_clone", "language": "pt-BR",
                        "persona": "Você é um bardo alegre."}})))
    settings = xtts_voice_settings(config, "bard_clone")
    assert settings.language == "pt-BR"
    worker = start_worker(python_xtts, tiny_model, tmp_path / "latents")
    sent: list[wire.Synthesize] = []
    synthesize_on_worker = worker.synthesize

    def spy(request: wire.Synthesize, *args: object, **kwargs: object) -> object:
        sent.append(request)
        return synthesize_on_worker(request, *args, **kwargs)

    try:
        worker.prepare_voice("bard_clone", [str(clips["bard.wav"])])
        worker.synthesize = spy  # type: ignore[method-assign]
        engine = XttsEngine(worker, "bard_clone", config.xtts)
        pieces: list[np.ndarray] = []
        engine.synthesize("Bom dia, viajante.", settings, pieces.append, threading.Event(),
                          turn_start=True)
    finally:
        worker.close()
    assert [request.language for request in sent] == ["pt"]
    assert engine.last_end is not None and not engine.last_end.cancelled
    assert pieces and np.concatenate(pieces).size > 0


# ---- configuration ----------------------------------------------------------------

def test_xtts_voice_config_is_checked(tmp_path: Path) -> None:
    base = config_text(config_for_tests())
    with pytest.raises(ConfigError, match="reference_clips is empty"):
        parse_config(base + '[voices.v]\nengine = "xtts"\nfallback = "joe"\n')
    with pytest.raises(ConfigError, match="must name a Piper voice"):
        parse_config(base + '[voices.v]\nengine = "xtts"\nreference_clips = ["a.wav"]\n')
    with pytest.raises(ConfigError, match="for engine = \"xtts\" voices"):
        parse_config(base + '[voices.v]\nreference_clips = ["a.wav"]\n')
    path = tmp_path / "game.toml"
    path.write_text(base + '[voices.v]\nengine = "xtts"\nreference_clips = ["voices/a.wav"]\n'
                    'fallback = "joe"\n')
    # Relative clip paths are relative to the config file, not the working directory.
    assert load_config(path).voices["v"].reference_clips == [str(tmp_path / "voices/a.wav")]


# ---- benchmark --------------------------------------------------------------------

def test_xtts_benchmark_generates_a_fixed_number_of_tokens(
        python_xtts: str, tiny_model: Path, tmp_path: Path) -> None:
    """The benchmark's structure and its fixed length (figures: BENCHMARKS.md, on a GPU)."""
    out = tmp_path / "xtts.json"
    subprocess.run([python_xtts, "-m", "daemon.bench.xtts", "--model", str(tiny_model),
                    "--device", "cpu", "--dtypes", "float32,float16", "--first-chunk-sizes",
                    "2,4", "--tokens", "10", "--repeats", "1", "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    import json

    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and set(report["dtypes"]) == {"float32", "float16"}
    for figures in report["dtypes"].values():
        assert set(figures["first_piece"]) == {"2", "4"}
        assert all(f["p50_ms"] > 0 for f in figures["first_piece"].values())
        # 10 GPT tokens of 1024 samples at 22.05 kHz (46.4 ms each), whatever the random
        # weights say; the vocoder's resampling to 24 kHz trims a few ms.
        assert abs(figures["rtf_audio_ms"] - 10 * 1024 / 22.05) < 20.0, figures
        assert figures["rtf_p50"] > 0
