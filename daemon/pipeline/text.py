"""Where phrases and sentences end, and what text is speakable: shared text rules.

Leaf module: the phrase chunker (`daemon.pipeline.chunker`) and the two-tier opener
(`daemon.llm.tiers`) decide boundaries with the same rules, so an opener never ends
where a chunk would not.

Each language has its own `TextRules` (`rules_for`): its abbreviations (a "." after
"Sr." or "Dra." ends no sentence in Portuguese, "no." does in Spanish), its opening
marks (Spanish ¿ ¡, « and „ quotes) and, for Chinese and Japanese, marks that end a
phrase without a space after them (。、！？).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLAUSE_MARKS = frozenset(",;:")
SENTENCE_MARKS = frozenset(".!?…")
CLOSING_QUOTES = frozenset("\"')]}»”’")
"""Marks that may follow the punctuation that ends a phrase (closing quotes, brackets)."""

# Words that end in "." without ending a sentence. Lower-case, without the dot.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr st sr jr prof gen capt lt sgt col rev vs etc e.g i.e no fig approx".split()
)

OPENING_MARKS = "\"'([{«“‘„‚¿¡「『（《〈【"
"""Marks that open a quote, a bracket or (Spanish ¿ ¡) a question or exclamation: they
stick to the next word and never end a phrase."""


@dataclass(frozen=True, slots=True)
class TextRules:
    """How one language marks the ends of phrases and sentences.

    Attributes:
      clause_marks: Marks that end a clause (a chunk may end there early in a reply).
      sentence_marks: Marks that end a sentence.
      abbreviations: Words, lower-case and without their final ".", after which "."
        ends nothing ("sr" for "Sr.").
      closing_quotes: Marks that may follow the phrase-ending mark ("», ”, ), 」").
      unspaced_marks: Marks after which a phrase may end with no whitespace (CJK text
        has no spaces between words: "你好。我是" is cut after "。").
    """

    clause_marks: frozenset[str] = CLAUSE_MARKS
    sentence_marks: frozenset[str] = SENTENCE_MARKS
    abbreviations: frozenset[str] = ABBREVIATIONS
    closing_quotes: frozenset[str] = CLOSING_QUOTES
    unspaced_marks: frozenset[str] = frozenset()


ENGLISH_RULES = TextRules()

_ROMANCE_QUOTES = CLOSING_QUOTES | frozenset("“‘")  # « » and „ “ (German-style) quotes

_CJK_CLAUSE = frozenset("、，；：")
_CJK_SENTENCE = frozenset("。！？．")

_RULES: dict[str, TextRules] = {
    "en": ENGLISH_RULES,
    "pt": TextRules(
        abbreviations=frozenset(
            "sr sra srta srs sras dr dra drs dras prof profa profs sto sta av exa exmo "
            "exma v.exa ilmo ilma etc pág págs pag cap vol núm num nº n.º tel obs p ex "
            "p.ex vs aprox".split()),
        closing_quotes=_ROMANCE_QUOTES),
    "es": TextRules(
        abbreviations=frozenset(
            "sr sra srta srs sras dr dra drs dras dña ud uds vd vds prof profa sto sta "
            "av etc pág págs cap vol núm p ej p.ej vs aprox lic ing".split()),
        closing_quotes=_ROMANCE_QUOTES),
    "fr": TextRules(
        abbreviations=frozenset("m mm mme mmes mlle mlles dr pr st ste etc cf p ex vs".split()),
        closing_quotes=_ROMANCE_QUOTES),
    "de": TextRules(
        abbreviations=frozenset("hr fr dr prof st bzw ca etc evtl ggf usw z.b d.h u.a vgl "
                                "nr vs".split()),
        closing_quotes=_ROMANCE_QUOTES),
    "it": TextRules(
        abbreviations=frozenset("sig sigg dott dott.ssa prof ing avv sr etc ecc vs".split()),
        closing_quotes=_ROMANCE_QUOTES),
    "zh": TextRules(
        clause_marks=CLAUSE_MARKS | _CJK_CLAUSE, sentence_marks=SENTENCE_MARKS | _CJK_SENTENCE,
        abbreviations=frozenset(), closing_quotes=CLOSING_QUOTES | frozenset("」』）》〉】"),
        unspaced_marks=_CJK_CLAUSE | _CJK_SENTENCE),
}
_RULES["ja"] = _RULES["zh"]
_RULES["ko"] = TextRules(  # Korean puts spaces between words: only the marks differ
    clause_marks=CLAUSE_MARKS | _CJK_CLAUSE, sentence_marks=SENTENCE_MARKS | _CJK_SENTENCE,
    abbreviations=frozenset(), closing_quotes=CLOSING_QUOTES | frozenset("」』）》〉】"))


def rules_for(language: str) -> TextRules:
    """The text rules of a BCP 47 tag ("pt-BR" -> Portuguese's); English's for others.

    Languages without rules of their own get English marks without English
    abbreviations (an English "no." list would keep a Spanish "no." from ending a
    sentence).
    """
    primary = re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()
    rules = _RULES.get(primary)
    if rules is not None:
        return rules
    return TextRules(abbreviations=frozenset(), closing_quotes=_ROMANCE_QUOTES)


def is_boundary_mark(text: str, mark_pos: int, marks: frozenset[str],
                     rules: TextRules = ENGLISH_RULES) -> bool:
    """True if text[mark_pos] (possibly followed by closing quotes) ends a phrase."""
    ch = text[mark_pos]
    if ch not in marks:
        return False
    if ch == ".":
        word_start = mark_pos
        while word_start > 0 and not text[word_start - 1].isspace():
            word_start -= 1
        word = text[word_start:mark_pos].lower().lstrip(OPENING_MARKS)
        if word in rules.abbreviations:
            return False
        if len(word) == 1 and word.isalpha() and text[word_start:mark_pos].isupper():
            return False  # an initial, as in "J. R. R. Tolkien"
    return True


def ends_phrase(text: str, end: int, marks: frozenset[str],
                rules: TextRules = ENGLISH_RULES) -> bool:
    """True if the text before position `end` ends a phrase with one of `marks`.

    The mark may be followed by closing quotes or brackets, and must be a real
    boundary (see `is_boundary_mark`).
    """
    mark_pos = end - 1
    while mark_pos > 0 and text[mark_pos] in rules.closing_quotes:
        mark_pos -= 1
    return is_boundary_mark(text, mark_pos, marks, rules)


def ends_sentence(text: str, language: str) -> bool:
    """Whether `text` (a typed line) ends with a sentence mark of `language` (BCP 47 tag).

    The mark may be followed by closing quotes; "." after an abbreviation or an
    initial ends nothing (`is_boundary_mark`).

    >>> ends_sentence("Where is the smithy?", "en"), ends_sentence("I saw Dr.", "en")
    (True, False)
    """
    text = text.rstrip()
    rules = rules_for(language)
    return bool(text) and ends_phrase(text, len(text), rules.sentence_marks, rules)


# Markdown emphasis, headings and code marks that small chat models emit; TTS would
# read them or stumble. Characters outside the Basic Multilingual Plane are emoji.
_UNSPEAKABLE = re.compile(r"[*_#`~|<>\U00010000-\U0010FFFF]")


def speakable(text: str) -> str:
    """Remove characters that neither TTS nor subtitles should carry (markdown, emoji).

    Works on arbitrary slices of a stream (token by token): it only deletes single
    characters, so applying it per token equals applying it to the whole reply.
    """
    return _UNSPEAKABLE.sub("", text)
