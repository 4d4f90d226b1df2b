"""End of turn from the words: Smart Turn v3.2 judges whether the player has finished.

Silence alone cannot tell "I need a room for..." (thinking) from "I need a room." (done):
a short silence cuts players off mid-thought, a long one makes every reply late. Smart
Turn (pipecat-ai/smart-turn, BSD-2-Clause) is a small audio classifier (a Whisper-tiny
encoder with a linear head, 8.7 MB int8 ONNX) trained on whether an utterance sounds
complete, from intonation and words. The endpointing policy using it is in
`daemon.server.mic`: after a short VAD silence it asks this model, and waits for a longer
silence only when the model says the player is not done.

Where the model comes from: the `pipecat-ai` wheel ships it
(`pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`). The bootstrap installs
that wheel with `--no-deps` (requirements/nodeps.lock) and this module finds the file
through `importlib.metadata`; pipecat itself is never imported.

Input, from pipecat's own analyzer (read, not copied): the last 8 s of 16 kHz audio,
zero-padded at the start when shorter, normalised to zero mean and unit variance, as
Whisper log-mel features (80 mel bins x 800 frames, `WhisperFeatureExtractor` with
`chunk_length=8`; here faster-whisper's feature extractor, which computes the same
features); output, the probability that the turn is complete.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path

import numpy as np

from daemon.asr.endpointing import SAMPLE_RATE_HZ
from daemon.asr.pyav import defer_pyav

_LOGGER = logging.getLogger(__name__)

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
WINDOW_S = 8
"""Seconds of audio the model sees: the end of the utterance."""
_NORMALISE_EPS = 1e-7  # transformers' zero_mean_unit_var_norm


def bundled_model_path() -> Path | None:
    """The Smart Turn v3.2 ONNX file inside the installed pipecat-ai wheel, or None."""
    try:
        files = importlib.metadata.files("pipecat-ai") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == MODEL_FILE:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


class SmartTurn:
    """The Smart Turn v3.2 model on ONNX Runtime. Stateless: one instance serves every stream.

    Not thread-safe for concurrent calls from several threads (run it on one engine
    thread).

    Args:
      model_path: The ONNX file; None = the one in the pipecat-ai wheel.
      threads: ONNX Runtime intra-op threads.

    Raises:
      FileNotFoundError: no model file (pipecat-ai is not installed: Python 3.10, or the
        bootstrap's no-deps step did not run).
      ImportError: faster-whisper or onnxruntime is missing (the `voice` extra).
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime  # noqa: PLC0415 - optional dependency (voice extra)

        defer_pyav()  # faster_whisper's package import would load PyAV, unused here
        from faster_whisper.feature_extractor import FeatureExtractor  # noqa: PLC0415

        path = model_path or bundled_model_path()
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"Smart Turn model {MODEL_FILE} not found (it ships in the pipecat-ai wheel: "
                "`bash scripts/bootstrap.sh setup` installs it without dependencies; "
                "pipecat-ai needs Python >= 3.11)")
        started = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # no buffers kept between judgements
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE_HZ,
                                          chunk_length=WINDOW_S)
        self.name = path.name
        _LOGGER.info("loaded Smart Turn %s (%d ONNX thread(s)) in %.0f ms", self.name, threads,
                     (time.perf_counter() - started) * 1000)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Model input for an utterance: float32 [1, 80, 800] log-mel features.

        Args:
          audio: float32 mono 16 kHz samples in [-1, 1], the utterance up to now (any
            length; only its last 8 s are used).
        """
        window = WINDOW_S * SAMPLE_RATE_HZ
        audio = np.asarray(audio, dtype=np.float32)[-window:]
        if audio.size < window:  # the utterance's end stays at the window's end
            audio = np.concatenate((np.zeros(window - audio.size, np.float32), audio))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + _NORMALISE_EPS)
        log_mel = self._features(audio, padding=0)  # [80, 801]: the last frame is extra
        return np.ascontiguousarray(log_mel[None, :, : window // 160], dtype=np.float32)

    def probability_complete(self, audio: np.ndarray) -> float:
        """Probability in [0, 1] that the player has finished speaking.

        Args:
          audio: float32 mono 16 kHz samples of the utterance up to now (see `features`).
        """
        (logits,) = self._session.run(None, {"input_features": self.features(audio)})
        return float(np.asarray(logits).reshape(-1)[0])

    def warm_up(self) -> None:
        """One inference, so that the first utterance does not pay for initialisation."""
        self.probability_complete(np.zeros(SAMPLE_RATE_HZ, np.float32))
