"""Which Whisper model hears which NPC, and in which language (pure rules).

English NPCs keep the bundled English-only tiny.en: on the English voice-input set it
is as accurate as the multilingual base and much faster on a small CPU (BENCHMARKS.md,
"Speech recognition per language"). Every other NPC is heard by the multilingual model,
forced to the NPC's language, or with the language detected when `asr.language` is
"auto" (detection costs a little and can pick a wrong language on short utterances).
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.languages import is_english, whisper_code

NPC_LANGUAGE = "npc"
DETECT = "auto"


@dataclass(frozen=True, slots=True)
class AsrRoute:
    """How one NPC's voice input is recognised.

    Attributes:
      multilingual: True = `asr.multilingual_model`, False = `asr.model`.
      language: Whisper's language code ("en", "pt"); None = detected.
    """

    multilingual: bool
    language: str | None


def asr_route(setting: str, npc_language: str) -> AsrRoute:
    """The route of an NPC speaking `npc_language` under `asr.language = setting`.

    Args:
      setting: "npc" (the NPC's language), "auto" (detect) or a BCP 47 tag for all.
      npc_language: The NPC's canonical BCP 47 tag.
    """
    if setting == DETECT:
        return AsrRoute(multilingual=True, language=None)
    language = npc_language if setting == NPC_LANGUAGE else setting
    if is_english(language):
        return AsrRoute(multilingual=False, language="en")
    return AsrRoute(multilingual=True, language=whisper_code(language))


def asr_routes(setting: str, npc_languages: dict[str, str]) -> dict[str, AsrRoute]:
    """`asr_route` of every NPC, by NPC id."""
    return {npc_id: asr_route(setting, tag) for npc_id, tag in npc_languages.items()}
