"""Phrase chunking: turning the LLM's token stream into text chunks for TTS.

TTFA is dominated by how early the first chunk can go to TTS, so the first chunk is
cut at the first clause boundary (, . ! ? ; :) and kept short; later chunks are
larger (better prosody, fewer TTS calls) because earlier audio is already playing.
Limits come from the speech profiles measured in the original system (DESIGN.md,
"Profiles"): FAST <= 30 chars then <= 90, CINEMATIC <= 100 then <= 150.

Rules, in order:
  * never cut inside a word: every cut is at whitespace;
  * a punctuation mark is a boundary only when whitespace and more text follow it,
    so "$29.95", "1,000", "Mr. Smith" and a trailing "." whose stream may continue
    are never cut (one token of look-ahead: the text after the mark is usually in the
    very next token);
  * after about 5 s of speech (`sentence_boundaries_after_chars`), later chunks end
    only at sentence boundaries (. ! ?) unless the size limit forces a cut;
  * a chunk exceeds its limit only when a single word is longer than the limit.

Marks and abbreviations follow the reply's language (`daemon.pipeline.text.rules_for`):
Portuguese "Sr." and "Dra." end nothing, Spanish ¿ ¡ and opening quotes stick to the
next word, and in Chinese and Japanese a chunk may end right after 。、！？ with no
space (a run of CJK text without marks is one "word": it is never cut inside).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.pipeline.text import OPENING_MARKS, ends_phrase, rules_for
from daemon.profiles import Profile


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of reply text for TTS.

    Attributes:
      text: Whitespace-normalised text (single spaces, no leading/trailing space).
      index: 0-based position of the chunk within the turn.
      is_last: True for the turn's final chunk (known once the LLM stream ended).
    """

    text: str
    index: int
    is_last: bool


_WORD = re.compile(r"\S+(?=\s)")
_WHITESPACE_RUN = re.compile(r"\s+")


class PhraseChunker:
    """Incremental chunker for one turn: feed token text, get chunks as they are ready.

    Not thread-safe; one instance per turn. Example:
        chunker = PhraseChunker(BUILTIN_PROFILES["fast"], language="pt-BR")
        for delta in token_texts: send(chunker.feed(delta))
        send(chunker.flush())

    Args:
      profile: Chunk sizes.
      language: BCP 47 tag of the reply ("en", "pt-BR"): picks the punctuation and
        abbreviation rules.
    """

    def __init__(self, profile: Profile, language: str = "en") -> None:
        self._profile = profile
        self._rules = rules_for(language)
        self._buffer = ""
        self._next_index = 0
        self._chunked_chars = 0

    @property
    def chunk_count(self) -> int:
        """Chunks emitted so far."""
        return self._next_index

    def feed(self, text: str) -> list[Chunk]:
        """Add LLM output text; return the chunks that became complete (maybe none)."""
        # Collapse whitespace as it arrives so that limits count what is emitted.
        self._buffer = _WHITESPACE_RUN.sub(" ", self._buffer + text)
        chunks = []
        while (cut := self._find_cut()) is not None:
            chunks.append(self._emit(cut, is_last=False))
        return chunks

    def flush(self) -> list[Chunk]:
        """End of the LLM stream: return the remaining chunks, the last one marked."""
        chunks = []
        while (cut := self._find_cut()) is not None:
            chunks.append(self._emit(cut, is_last=False))
        if self._buffer.strip():
            chunks.append(self._emit(len(self._buffer), is_last=True))
        elif chunks:
            chunks[-1] = Chunk(chunks[-1].text, chunks[-1].index, is_last=True)
        return chunks

    def _emit(self, cut: int, is_last: bool) -> Chunk:
        text = " ".join(self._buffer[:cut].split())
        self._buffer = self._buffer[cut:].lstrip()
        chunk = Chunk(text, self._next_index, is_last)
        self._next_index += 1
        self._chunked_chars += len(text)
        return chunk

    def _find_cut(self) -> int | None:
        """Index in the buffer to cut at (a whitespace position), or None to wait."""
        text = self._buffer = self._buffer.lstrip()
        first = self._next_index == 0
        profile = self._profile
        limit = profile.first_chunk_max_chars if first else profile.next_chunk_max_chars
        minimum = profile.first_chunk_min_chars if first else profile.next_chunk_min_chars
        rules = self._rules
        sentence_marks = rules.sentence_marks
        if first or self._chunked_chars < profile.sentence_boundaries_after_chars:
            eager_marks = rules.clause_marks | sentence_marks
        else:
            eager_marks = sentence_marks

        # Confirmed cut positions: whitespace right after a word, with text after it.
        last_text = len(text.rstrip())
        word_ends = self._word_ends(text, last_text)
        for end in word_ends:
            if end > limit:
                break
            if end >= minimum and ends_phrase(text, end, eager_marks, rules):
                return end
        if last_text <= limit:
            return None  # everything fits: wait for a boundary or the end of the stream
        # Over the limit: cut at the best position that fits, never inside a word, and not
        # before the minimum while a word ends between the two (XTTS babbles on a first
        # chunk as short as "A merry bard,").
        fitting = ([end for end in word_ends if minimum <= end <= limit]
                   or [end for end in word_ends if end <= limit])
        for marks in (sentence_marks, rules.clause_marks):
            for end in reversed(fitting):
                if ends_phrase(text, end, marks, rules):
                    return end
        if fitting:
            return fitting[-1]
        return word_ends[0] if word_ends else None  # one word longer than the limit

    def _word_ends(self, text: str, last_text: int) -> list[int]:
        """Positions where a chunk may end, in order, each with more text after it.

        After a word followed by whitespace (not a word made only of opening marks, as
        a lone "¿" or "«", which belongs to the next word), and, in languages written
        without spaces, right after an unspaced mark (and its closing quotes).
        """
        ends = [m.end() for m in _WORD.finditer(text, 0, last_text)
                if m.group().strip(OPENING_MARKS)]
        unspaced = self._rules.unspaced_marks
        if unspaced:
            closing = self._rules.closing_quotes
            for index in range(last_text - 1):
                if text[index] not in unspaced:
                    continue
                end = index + 1
                while end < last_text and text[end] in closing:
                    end += 1
                if end < last_text and not text[end].isspace():
                    ends.append(end)
            ends = sorted(set(ends))
        return ends

