"""Where phrases and sentences end, and what text is speakable: shared text rules.

Leaf module: the phrase chunker (`daemon.pipeline.chunker`) and the two-tier opener
(`daemon.llm.tiers`) decide boundaries with the same rules, so an opener never ends
where a chunk would not.
"""

from __future__ import annotations

import re

CLAUSE_MARKS = frozenset(",;:")
SENTENCE_MARKS = frozenset(".!?…")
CLOSING_QUOTES = frozenset("\"')]}»”’")
"""Marks that may follow the punctuation that ends a phrase (closing quotes, brackets)."""

# Words that end in "." without ending a sentence. Lower-case, without the dot.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr st sr jr prof gen capt lt sgt col rev vs etc e.g i.e no fig approx".split()
)

def is_boundary_mark(text: str, mark_pos: int, marks: frozenset[str]) -> bool:
    """True if text[mark_pos] (possibly followed by closing quotes) ends a phrase."""
    ch = text[mark_pos]
    if ch not in marks:
        return False
    if ch == ".":
        word_start = mark_pos
        while word_start > 0 and not text[word_start - 1].isspace():
            word_start -= 1
        word = text[word_start:mark_pos].lower().lstrip("\"'([{«“‘")
        if word in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha() and text[word_start:mark_pos].isupper():
            return False  # an initial, as in "J. R. R. Tolkien"
    return True


def ends_phrase(text: str, end: int, marks: frozenset[str]) -> bool:
    """True if the text before position `end` ends a phrase with one of `marks`.

    The mark may be followed by closing quotes or brackets, and must be a real
    boundary (see `is_boundary_mark`).
    """
    mark_pos = end - 1
    while mark_pos > 0 and text[mark_pos] in CLOSING_QUOTES:
        mark_pos -= 1
    return is_boundary_mark(text, mark_pos, marks)


# Markdown emphasis, headings and code marks that small chat models emit; TTS would
# read them or stumble. Characters outside the Basic Multilingual Plane are emoji.
_UNSPEAKABLE = re.compile(r"[*_#`~|<>\U00010000-\U0010FFFF]")


def speakable(text: str) -> str:
    """Remove characters that neither TTS nor subtitles should carry (markdown, emoji).

    Works on arbitrary slices of a stream (token by token): it only deletes single
    characters, so applying it per token equals applying it to the whole reply.
    """
    return _UNSPEAKABLE.sub("", text)
