"""The loaded speech-recognition engines of voice input, as the server uses them."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.asr.smart_turn import SmartTurn
from daemon.asr.transcriber import Transcriber
from daemon.asr.vad import SileroVad
from daemon.engines.thread import EngineThread


@dataclass
class AsrEngines:
    """The loaded voice-input models and the threads they run on.

    Whisper on its owner thread, the VAD model every microphone stream shares, and the
    end-of-turn model on a thread of its own (a judgement must not wait behind Whisper).

    Built by `daemon.engines.loading.load_asr_engines`.
    """

    transcriber: Transcriber
    thread: EngineThread
    vad: SileroVad
    smart_turn: SmartTurn | None = None
    smart_turn_thread: EngineThread | None = None

    def close(self) -> None:
        """Stop the ASR threads."""
        self.thread.shutdown()
        if self.smart_turn_thread is not None:
            self.smart_turn_thread.shutdown()
