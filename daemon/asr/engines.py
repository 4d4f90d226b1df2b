"""The loaded speech-recognition engines of voice input, as the server uses them."""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.asr.routing import AsrRoute
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

    Attributes:
      transcriber: Whisper for English NPCs (`asr.model`).
      thread: Owner thread of both Whisper models (one decodes at a time).
      multilingual: Whisper for the other NPCs (`asr.multilingual_model`), when one is
        configured and could be loaded; may be `transcriber` itself.
      routes: Each NPC's model and language (`daemon.asr.routing`); an NPC missing here
        is heard in English by `transcriber`.
    """

    transcriber: Transcriber
    thread: EngineThread
    vad: SileroVad
    smart_turn: SmartTurn | None = None
    smart_turn_thread: EngineThread | None = None
    multilingual: Transcriber | None = None
    routes: dict[str, AsrRoute] = field(default_factory=dict)

    def for_npc(self, npc_id: str) -> tuple[Transcriber, AsrRoute] | None:
        """The Whisper model that hears `npc_id`, and how (language, beam size).

        None when the NPC needs the multilingual model and it could not be loaded.
        """
        route = self.routes.get(npc_id, AsrRoute(multilingual=False, language="en"))
        if not route.multilingual:
            return self.transcriber, route
        if self.multilingual is None:
            return None
        return self.multilingual, route

    def close(self) -> None:
        """Stop the ASR threads."""
        self.thread.shutdown()
        if self.smart_turn_thread is not None:
            self.smart_turn_thread.shutdown()
