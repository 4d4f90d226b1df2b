"""Piper (VITS, ONNX Runtime) on the CPU: the default TTS engine.

piper-tts 1.8 synthesises one `AudioChunk` per sentence (espeak-ng clause split), so
a phrase chunk of one or two sentences comes back in one or two pieces. The session
is built by hand rather than with `PiperVoice.load` so that its thread count is set
explicitly (`load` uses ONNX Runtime's default: every core).

Licence: piper-tts is GPL-3.0-or-later (OHF-Voice/piper1-gpl).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from daemon.config import VoiceConfig
from daemon.tts.base import Int16Emit, float_to_int16

_LOGGER = logging.getLogger(__name__)


class PiperEngine:
    """One loaded Piper voice model. Not thread-safe: use from its owner thread only.

    Args:
      model_path: The voice's .onnx file.
      config_path: Its .onnx.json file.
      onnx_threads: ONNX Runtime intra-op threads (inter-op is 1).

    Raises:
      FileNotFoundError, onnxruntime errors: the model cannot be loaded.
    """

    def __init__(self, model_path: Path, config_path: Path, onnx_threads: int = 1) -> None:
        started = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = onnx_threads
        options.inter_op_num_threads = 1
        # No CPU memory arena: ONNX Runtime's arena keeps the largest buffers any chunk
        # ever needed (VITS tensors scale with the chunk's length) and never shrinks;
        # without it, a turn's buffers go back to the allocator when it ends.
        options.enable_cpu_mem_arena = False
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        with open(config_path, encoding="utf-8") as config_file:
            config = PiperConfig.from_dict(json.load(config_file))
        self._voice = PiperVoice(session=session, config=config)
        self.sample_rate_hz: int = config.sample_rate
        self.name = f"piper:{model_path.stem}"
        _LOGGER.info(
            "loaded %s (%d Hz, %d ONNX threads) in %.0f ms",
            self.name,
            self.sample_rate_hz,
            onnx_threads,
            (time.perf_counter() - started) * 1000,
        )

    def synthesize(
        self, text: str, voice: VoiceConfig, emit: Int16Emit, stop: threading.Event,
        turn_start: bool = False,
    ) -> None:
        """Speak `text` sentence by sentence; see `TtsEngine.synthesize`.

        Piper's first piece is a whole sentence either way, so `turn_start` changes
        nothing.

        Peak normalisation is off (`normalize_audio=False`): Piper would otherwise
        scale every sentence to full scale and loudness would jump between chunks.
        """
        syn_config = SynthesisConfig(
            speaker_id=voice.speaker_id,
            length_scale=voice.length_scale,
            noise_scale=voice.noise_scale,
            noise_w_scale=voice.noise_w_scale,
            normalize_audio=False,
        )
        for piece in self._voice.synthesize(text, syn_config=syn_config):
            if stop.is_set():
                return
            emit(float_to_int16(piece.audio_float_array, voice.volume))

    def warm_up(self) -> None:
        """Run one synthesis so espeak-ng and ONNX Runtime initialise before turn one."""
        pieces: list[np.ndarray] = []
        self.synthesize("Hello there, traveller.", VoiceConfig(), pieces.append, threading.Event())
