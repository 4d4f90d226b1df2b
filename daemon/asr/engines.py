"""The loaded speech-recognition engines of voice input, as the server uses them."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.asr.transcriber import Transcriber
from daemon.asr.vad import SileroVad
from daemon.engines.thread import EngineThread


@dataclass
class AsrEngines:
    """Whisper on its owner thread, and the VAD model every microphone stream shares.

    Built by `daemon.engines.loading.load_asr_engines`.
    """

    transcriber: Transcriber
    thread: EngineThread
    vad: SileroVad

    def close(self) -> None:
        """Stop the ASR thread."""
        self.thread.shutdown()
