"""Which Whisper model hears which NPC, and in which language (pure rules).

English NPCs keep the bundled English-only tiny.en: on the English voice-input set it
was nearly as accurate as the multilingual base (WER 3.5 % vs 2.2 %), and base took
about 2.8 times as long, far more than the 150 ms extra issue 18 allows (BENCHMARKS.md,
"Languages").
Every other NPC is heard by the multilingual model (beam 5 by default), forced to the
NPC's language, or with the language detected when `asr.language` is "auto" (on
espeak-ng Portuguese, detection gave 84 % WER against 28 % forced: short utterances
get taken for another language).
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
      beam_size: Whisper beam size; None = the ASR profile's.
    """

    multilingual: bool
    language: str | None
    beam_size: int | None = None


def asr_route(setting: str, npc_language: str, multilingual_beam_size: int | None = None
              ) -> AsrRoute:
    """The route of an NPC speaking `npc_language` under `asr.language = setting`.

    Args:
      setting: "npc" (the NPC's language), "auto" (detect) or a BCP 47 tag for all.
      npc_language: The NPC's canonical BCP 47 tag.
      multilingual_beam_size: Beam size of the multilingual model (None = the profile's).
    """
    if setting == DETECT:
        return AsrRoute(multilingual=True, language=None, beam_size=multilingual_beam_size)
    language = npc_language if setting == NPC_LANGUAGE else setting
    if is_english(language):
        return AsrRoute(multilingual=False, language="en")
    return AsrRoute(multilingual=True, language=whisper_code(language),
                    beam_size=multilingual_beam_size)


def asr_routes(setting: str, npc_languages: dict[str, str],
               multilingual_beam_size: int | None = None) -> dict[str, AsrRoute]:
    """`asr_route` of every NPC, by NPC id."""
    return {npc_id: asr_route(setting, tag, multilingual_beam_size)
            for npc_id, tag in npc_languages.items()}
