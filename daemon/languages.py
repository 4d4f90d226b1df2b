"""Languages: BCP 47 tags as the config writes them, and what each engine calls them.

Leaf module. Every NPC speaks one language (`npcs.<id>.language`, else the top-level
`language`); the LLM prompt, the phrase chunker, the voice and speech recognition all
follow it. A tag is a primary language subtag, optionally a script and a region
("pt-BR", "en", "es-419", "zh-Hans-CN"); only languages listed in `LANGUAGES` are
accepted, because each must be known to the engines it reaches (an unknown tag would
otherwise fail mid-game, in Whisper or XTTS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENGLISH = "en"


@dataclass(frozen=True, slots=True)
class LanguageInfo:
    """What the daemon knows of one language (a primary subtag).

    Attributes:
      name: English name, used in the persona prompt ("Answer in Spanish").
      xtts: XTTS-v2's language code, or None when XTTS-v2 does not speak it.
    """

    name: str
    xtts: str | None = None


LANGUAGES: dict[str, LanguageInfo] = {
    # XTTS-v2's 17 languages (its config.json "languages"), with its codes.
    "en": LanguageInfo("English", "en"),
    "es": LanguageInfo("Spanish", "es"),
    "fr": LanguageInfo("French", "fr"),
    "de": LanguageInfo("German", "de"),
    "it": LanguageInfo("Italian", "it"),
    "pt": LanguageInfo("Portuguese", "pt"),
    "pl": LanguageInfo("Polish", "pl"),
    "tr": LanguageInfo("Turkish", "tr"),
    "ru": LanguageInfo("Russian", "ru"),
    "nl": LanguageInfo("Dutch", "nl"),
    "cs": LanguageInfo("Czech", "cs"),
    "ar": LanguageInfo("Arabic", "ar"),
    "zh": LanguageInfo("Chinese", "zh-cn"),
    "ja": LanguageInfo("Japanese", "ja"),
    "hu": LanguageInfo("Hungarian", "hu"),
    "ko": LanguageInfo("Korean", "ko"),
    "hi": LanguageInfo("Hindi", "hi"),
    # Languages with Piper voices and Whisper support but no XTTS-v2.
    "ca": LanguageInfo("Catalan"),
    "da": LanguageInfo("Danish"),
    "el": LanguageInfo("Greek"),
    "fi": LanguageInfo("Finnish"),
    "no": LanguageInfo("Norwegian"),
    "nb": LanguageInfo("Norwegian"),
    "ro": LanguageInfo("Romanian"),
    "sv": LanguageInfo("Swedish"),
    "uk": LanguageInfo("Ukrainian"),
    "vi": LanguageInfo("Vietnamese"),
}

_REGION_NAMES = {
    ("pt", "BR"): "Brazilian Portuguese",
    ("pt", "PT"): "European Portuguese",
    ("en", "GB"): "British English",
    ("en", "US"): "American English",
    ("es", "419"): "Latin American Spanish",
    ("es", "MX"): "Mexican Spanish",
    ("es", "ES"): "European Spanish",
    ("fr", "CA"): "Canadian French",
}

_WHISPER_CODES = {"nb": "no"}
"""Whisper's code where it differs from the primary subtag (Whisper knows "no")."""

_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?$")


class UnknownLanguageError(ValueError):
    """A language tag is malformed or names a language the daemon does not know."""


def canonical_tag(tag: str) -> str:
    """`tag` in canonical BCP 47 case: "pt_br" -> "pt-BR", "zh-hans" -> "zh-Hans".

    Raises:
      UnknownLanguageError: not a language[-Script][-REGION] tag, or a language
        missing from `LANGUAGES` (the message lists the known ones).
    """
    match = _TAG.match(tag.strip())
    if match is None:
        raise UnknownLanguageError(
            f"{tag!r} is not a BCP 47 language tag like 'en', 'pt-BR' or 'es-419'")
    language, script, region = match.groups()
    language = language.lower()
    if language not in LANGUAGES:
        raise UnknownLanguageError(
            f"unknown language {tag!r}; known: {', '.join(sorted(LANGUAGES))} "
            "(with an optional region, e.g. pt-BR)")
    parts = [language]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def primary(tag: str) -> str:
    """The primary language subtag of a (canonical or not) tag: "pt-BR" -> "pt"."""
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


def region(tag: str) -> str | None:
    """The region subtag of a tag, upper case ("pt-BR" -> "BR"), or None."""
    match = _TAG.match(tag.strip())
    return match.group(3).upper() if match and match.group(3) else None


def display_name(tag: str) -> str:
    """English name of the language of `tag`, with its region where that matters.

    "pt-BR" -> "Brazilian Portuguese", "es" -> "Spanish", "de-AT" -> "German".
    """
    language = primary(tag)
    regional = _REGION_NAMES.get((language, region(tag) or ""))
    if regional:
        return regional
    info = LANGUAGES.get(language)
    return info.name if info else tag


def is_english(tag: str) -> bool:
    """True for "en" and every regional English ("en-GB", "en-US")."""
    return primary(tag) == ENGLISH


def same_language(a: str, b: str) -> bool:
    """True if two tags name the same language (primary subtags equal).

    Regions may differ (an en-GB voice can speak for an "en" NPC); callers that care
    compare `region` themselves.
    """
    return primary(a) == primary(b)


def whisper_code(tag: str) -> str:
    """Whisper's language code for `tag` ("pt-BR" -> "pt", "nb" -> "no")."""
    language = primary(tag)
    return _WHISPER_CODES.get(language, language)


def xtts_code(tag: str) -> str | None:
    """XTTS-v2's language code for `tag` ("pt-BR" -> "pt", "zh-CN" -> "zh-cn"), or None."""
    info = LANGUAGES.get(primary(tag))
    return info.xtts if info else None


def answer_in_instruction(tag: str) -> str:
    """The sentence appended to a non-English NPC's persona (its system prompt).

    Small chat models drift back to English, or follow the player's language, unless
    the system prompt names the language; the tag is given too so that a multilingual
    model picks the right variety ("Brazilian Portuguese (pt-BR)").
    """
    return (f"Always answer in {display_name(tag)} ({tag}), whatever language the player "
            "uses.")
