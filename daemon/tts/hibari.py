"""hibari-tts on the CPU: a second embedded English voice, "heart" (24 kHz).

hibari (Apache-2.0) ships one voice inside its wheel: "heart", American English,
female, a 7.9 MB ONNX model distilled from Kokoro-82M's af_heart (Apache-2.0), with
its own grapheme-to-phoneme rules (misaki's, no espeak-ng; their dictionaries are read
from compact tries, `daemon.tts.hibari_g2p`). Its other voices download
on first use, so only "heart" is accepted (`daemon.config.HIBARI_VOICE`) and it is
loaded from its file in the package, with downloading turned off: a missing file is an
error, never a download.

The model speaks one sentence per ONNX call and hibari's own streaming is per sentence,
so a chunk streams as one piece per sentence; `stop` is checked before and after each.
Measured on the 2-core dev box: about 0.03 s for a 2 s sentence, RTF about 0.016
(BENCHMARKS.md, "Voices").
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from daemon.config import HIBARI_VOICE, VoiceConfig
from daemon.models import ModelNotFoundError
from daemon.tts.base import Int16Emit, float_to_int16
from daemon.tts.hibari_g2p import packed_g2p

_LOGGER = logging.getLogger(__name__)

HIBARI_SAMPLE_RATE_HZ = 24000


def bundled_heart_path() -> Path:
    """The "heart" ONNX model inside the hibari-tts package.

    Raises:
      ModelNotFoundError: hibari-tts is not installed, or its wheel lacks the model.
    """
    try:
        from hibari.voices import voice_path  # noqa: PLC0415 - optional at import time
    except ImportError:
        raise ModelNotFoundError("hibari voices need the package hibari-tts: "
                                 "pip install hibari-tts") from None
    try:
        return Path(voice_path(HIBARI_VOICE, download_missing=False))
    except (FileNotFoundError, ValueError) as exc:
        raise ModelNotFoundError(f"hibari-tts holds no {HIBARI_VOICE!r} voice: {exc}") from None


class HibariEngine:
    """The loaded hibari "heart" voice. Not thread-safe: use from its owner thread only.

    Args:
      onnx_threads: ONNX Runtime intra- and inter-op threads.

    Raises:
      ModelNotFoundError: hibari-tts or its bundled model is missing.
    """

    def __init__(self, onnx_threads: int = 1) -> None:
        started = time.perf_counter()
        model_path = bundled_heart_path()
        from hibari import Hibari  # noqa: PLC0415 - imports onnxruntime
        from hibari.voices import VOICES  # noqa: PLC0415

        # The G2P's dictionaries as tries (69 MB less resident than hibari's dicts).
        g2p = packed_g2p(british=bool(VOICES[HIBARI_VOICE]["british"]))
        self._tts = Hibari(voice=HIBARI_VOICE, model=str(model_path), threads=onnx_threads,
                           g2p=g2p)
        # hibari's own session keeps ONNX Runtime's CPU memory arena, which holds on to
        # the largest buffers any sentence ever needed; the same model without it (as
        # Piper's sessions) gives a turn's buffers back when the turn ends.
        import onnxruntime  # noqa: PLC0415 - with hibari: only when this voice is used

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = onnx_threads
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        self._tts.sess = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"])
        self.sample_rate_hz: int = int(self._tts.sample_rate)
        if self.sample_rate_hz != HIBARI_SAMPLE_RATE_HZ:
            _LOGGER.warning("hibari reports %d Hz (expected %d)", self.sample_rate_hz,
                            HIBARI_SAMPLE_RATE_HZ)
        self.name = f"hibari:{HIBARI_VOICE}"
        self._rng = np.random.default_rng()
        _LOGGER.info("loaded %s (%d Hz, %d ONNX threads) in %.0f ms", self.name,
                     self.sample_rate_hz, onnx_threads, (time.perf_counter() - started) * 1000)

    def synthesize(
        self, text: str, voice: VoiceConfig, emit: Int16Emit, stop: threading.Event,
        turn_start: bool = False,
    ) -> None:
        """Speak `text` one sentence at a time; see `TtsEngine.synthesize`.

        Each sentence is phonemised just before it is spoken, so the first piece does
        not wait for the G2P of the whole chunk. `length_scale` becomes hibari's speed
        (1 / it); noise settings do not apply. `turn_start` changes nothing: a sentence
        is the smallest piece the model makes.
        """
        speed = 1.0 / (voice.length_scale or 1.0)
        tts = self._tts
        for sentence in tts.split_sentences(text):
            for phonemes in tts.phonemize(sentence):  # > 400 phonemes: split at clauses
                if stop.is_set():
                    return
                audio = tts.from_ids(tts.ids(phonemes), speed, self._rng)
                if stop.is_set():
                    return
                if audio.size:
                    emit(float_to_int16(audio, voice.volume))

    def warm_up(self) -> None:
        """Run one synthesis so ONNX Runtime and the G2P tables load before turn one."""
        pieces: list[np.ndarray] = []
        self.synthesize("Hello there, traveller.", VoiceConfig(engine="hibari",
                                                               model=HIBARI_VOICE),
                        pieces.append, threading.Event())
