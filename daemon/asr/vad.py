"""Voice activity detection: Silero VAD v6 through ONNX Runtime, one model for all streams.

Why not the `silero-vad` package: it needs torch (~400 MB resident, and `import
silero_vad` sets torch's thread count process-wide). The same model ships as an ONNX
file inside faster-whisper, which voice input installs anyway, and ONNX Runtime is
already the daemon's (Piper's) runtime.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from daemon.asr.endpointing import FRAME_SAMPLES


class SileroVad:
    """The Silero VAD v6 model, loaded once and shared by every microphone stream.

    The ONNX file is the one faster-whisper ships (`faster_whisper/assets/
    silero_vad_v6.onnx`, MIT, from snakers4/silero-vad), run with ONNX Runtime: no
    torch. Its graph takes a window of 64 context samples plus one 512-sample frame at
    16 kHz and the recurrent state (h, c: float32 [1, 1, 128] each), and returns the
    speech probability and the next state. The session is stateless, so one session
    serves every stream; each stream keeps only its state (`SpeechProbability`).

    Args:
      model_path: Another copy of that ONNX file; None = faster-whisper's.

    Raises:
      ImportError: faster-whisper or onnxruntime is missing (the `voice` extra).
    """

    CONTEXT_SAMPLES = 64
    """Samples of the previous frame prepended to each frame (silero's streaming input)."""

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime  # noqa: PLC0415 - optional dependency (voice extra)

        if model_path is None:
            spec = importlib.util.find_spec("faster_whisper")
            if spec is None or spec.origin is None:
                raise ImportError("voice input needs faster-whisper (the `voice` extra)")
            model_path = Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # 0.15 ms per frame on one core (measured)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"])

    def run(self, window: np.ndarray, h: np.ndarray, c: np.ndarray
            ) -> tuple[float, np.ndarray, np.ndarray]:
        """One step: (probability in [0, 1], next h, next c).

        Args:
          window: float32 [1, 576]: 64 context samples, then the 512-sample frame.
          h: float32 [1, 1, 128] recurrent state.
          c: float32 [1, 1, 128] recurrent state.
        """
        probability, h, c = self._session.run(None, {"input": window, "h": h, "c": c})
        return float(probability.reshape(-1)[0]), h, c


class SpeechProbability:
    """Speech probability per 512-sample frame for one stream (its own VAD state).

    About 1 KB of state per stream; the model itself is the shared `SileroVad`.

    Args:
      vad: The shared model.
    """

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._window = np.zeros((1, SileroVad.CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        """Probability in [0, 1] that a float32 frame of 512 samples at 16 kHz is speech."""
        context = SileroVad.CONTEXT_SAMPLES
        self._window[0, :context] = self._window[0, -context:]
        self._window[0, context:] = frame
        probability, self._h, self._c = self._vad.run(self._window, self._h, self._c)
        return probability
