"""Phrase chunker per language: hypothesis properties and example replies.

The oracles here are written from the languages' punctuation, not from the chunker's
own helpers: a chunk that does not end at one of its language's marks must have been
forced by the size limit, abbreviations ("Sr.", "Dra.", "etc.") never end a chunk
otherwise, opening marks (¿ ¡ « „) stay with their word, and CJK text is cut only
right after 。、！？ (and the closing quotes that follow them).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.pipeline.chunker import Chunk, PhraseChunker
from daemon.profiles import BUILTIN_PROFILES, Profile

FAST = BUILTIN_PROFILES["fast"]
CINEMATIC = BUILTIN_PROFILES["cinematic"]
SMALL = Profile(first_chunk_max_chars=12, next_chunk_max_chars=25, next_chunk_min_chars=0)
EAGER = Profile(next_chunk_min_chars=0)  # FAST's sizes, every boundary taken
profiles = st.sampled_from([FAST, CINEMATIC, SMALL])

CLOSERS = "\"')]}»”’“"
OPENERS = "\"'([{«“‘„¿¡"
MARKS = ",;:.!?…"

LANGS = {
    "pt-BR": {
        "letters": "abcdefghijlmnopqrstuvxzáâãàçéêíóôõú",
        "abbreviations": ["Sr.", "Sra.", "Srta.", "Dr.", "Dra.", "Prof.", "etc.", "Av."],
        "openers": ["", "", "", "«", "“", "("],
        "closers": ["", "", "", "»", "”", ")"],
    },
    "es": {
        "letters": "abcdefghijlmnñopqrstuvxyzáéíóúü",
        "abbreviations": ["Sr.", "Sra.", "Srta.", "Dr.", "Dra.", "Ud.", "Uds.", "etc.",
                          "Dña."],
        "openers": ["", "", "", "¿", "¡", "«"],
        "closers": ["", "", "", "?", "!", "»"],
    },
    "de": {
        "letters": "abcdefghijklmnopqrstuvwxyzäöüß",
        "abbreviations": ["Dr.", "Hr.", "Fr.", "usw.", "bzw.", "ca."],
        "openers": ["", "", "„", "«"],
        "closers": ["", "", "“", "»"],
    },
}


@st.composite
def replies(draw: st.DrawFn, language: str) -> str:
    """A reply in `language`: words, its abbreviations, opening/closing marks, punctuation.

    Opening marks are glued to the next word and closing marks to the previous one,
    as in written text; words never contain a mark of their own.
    """
    spec = LANGS[language]
    word = st.text(alphabet=spec["letters"], min_size=1, max_size=10)
    token = st.one_of(word, word, word, st.sampled_from(spec["abbreviations"]))
    parts = []
    for _ in range(draw(st.integers(1, 40))):
        opener = draw(st.sampled_from(spec["openers"]))
        text = opener + draw(token)
        if draw(st.booleans()):
            text += draw(st.sampled_from(list(MARKS)))
            text += draw(st.sampled_from(spec["closers"]))
        parts.append(text + draw(st.sampled_from([" ", " ", " ", "\n", "  "])))
    return "".join(parts).rstrip() + draw(st.sampled_from(["", ".", "!", " "]))


@st.composite
def token_splits(draw: st.DrawFn, text: str) -> list[str]:
    """Split `text` at random points, like a token stream."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=40))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def chunk_all(profile: Profile, pieces: list[str], language: str) -> list[Chunk]:
    chunker = PhraseChunker(profile, language)
    chunks = []
    for piece in pieces:
        chunks.extend(chunker.feed(piece))
    chunks.extend(chunker.flush())
    return chunks


def ends_at_a_mark(chunk_text: str, language: str) -> bool:
    """The oracle: the chunk's last word ends a phrase in `language`."""
    last = chunk_text.split()[-1]
    core = last.rstrip(CLOSERS)
    if not core or core[-1] not in MARKS:
        return False
    if core.endswith(".") and core.lstrip(OPENERS) in LANGS[language]["abbreviations"]:
        return False
    return True


def limit_of(profile: Profile, chunk: Chunk) -> int:
    return profile.first_chunk_max_chars if chunk.index == 0 else profile.next_chunk_max_chars


@settings(max_examples=200, deadline=None)
@given(data=st.data(), profile=profiles, language=st.sampled_from(sorted(LANGS)))
def test_chunks_rejoin_keep_words_whole_and_end_only_at_the_language_marks(
        data: st.DataObject, profile: Profile, language: str) -> None:
    text = data.draw(replies(language))
    chunks = chunk_all(profile, data.draw(token_splits(text)), language)
    # Re-join to the input; no word (with its opening and closing marks) is ever split.
    assert " ".join(c.text for c in chunks) == " ".join(text.split())
    assert [w for c in chunks for w in c.text.split()] == text.split()
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        words = chunk.text.split()
        # Opening marks (¿ ¡ « „) belong to the next word: never the end of a chunk.
        assert words[-1].strip(OPENERS)
        if ends_at_a_mark(chunk.text, language):
            continue
        # Anywhere else (an abbreviation like "Sr.", a bare word), only the size
        # limit may have forced the cut: the next word would not have fitted.
        next_word = following.text.split()[0]
        assert len(chunk.text) + 1 + len(next_word) > limit_of(profile, chunk), (
            chunk, following)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), language=st.sampled_from(sorted(LANGS)))
def test_an_abbreviation_never_ends_the_first_chunk_early(data: st.DataObject,
                                                           language: str) -> None:
    abbreviation = data.draw(st.sampled_from(LANGS[language]["abbreviations"]))
    name = data.draw(st.text(alphabet="abcdefgh", min_size=1, max_size=6))
    text = f"{abbreviation} {name} {name}, {name}."
    chunks = chunk_all(FAST, data.draw(token_splits(text)), language)
    assert chunks[0].text == f"{abbreviation} {name} {name},"


CJK_RUN = st.text(alphabet="你好我是铁匠的朋友今天天气很日本語です", min_size=1, max_size=12)
CJK_MARKS = "。、！？"
CJK_CLOSERS = ["", "", "」", "）"]


@st.composite
def cjk_replies(draw: st.DrawFn) -> str:
    """Chinese/Japanese-like text: runs of characters, marks, no spaces at all."""
    parts = []
    for _ in range(draw(st.integers(1, 30))):
        opener = draw(st.sampled_from(["", "", "「"]))
        parts.append(opener + draw(CJK_RUN))
        if draw(st.integers(0, 3)):
            parts.append(draw(st.sampled_from(list(CJK_MARKS))) + draw(
                st.sampled_from(CJK_CLOSERS)))
    return "".join(parts)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), profile=profiles, language=st.sampled_from(["zh", "ja", "zh-Hans-CN"]))
def test_cjk_is_cut_only_right_after_its_marks(data: st.DataObject, profile: Profile,
                                               language: str) -> None:
    text = data.draw(cjk_replies())
    chunks = chunk_all(profile, data.draw(token_splits(text)), language)
    assert "".join(c.text for c in chunks) == text
    position = 0
    for chunk in chunks[:-1]:
        position += len(chunk.text)
        before = text[:position].rstrip("」）")
        # A cut between two characters of a run would split a word.
        assert before[-1] in CJK_MARKS, (text, [c.text for c in chunks])
        assert text[position] not in "」）"  # the closing quote stays with its mark
    for chunk in chunks:
        limit = limit_of(profile, chunk)
        if len(chunk.text) > limit:
            # Too long only if no mark within the limit had text after it (a mark that
            # ends the reply, closing quotes aside, ends the last chunk anyway).
            assert not any(ch in CJK_MARKS and chunk.text[i + 1:].lstrip("」）")
                           for i, ch in enumerate(chunk.text[:limit])), chunk.text


# ---- example replies -----------------------------------------------------------------

def texts(language: str, reply: str, profile: Profile = FAST) -> list[str]:
    words = reply.split(" ")
    pieces = words[:1] + [" " + w for w in words[1:]]  # one token per word, as an LLM
    return [c.text for c in chunk_all(profile, pieces, language)]


def test_a_portuguese_reply() -> None:
    reply = ("Bom dia, Sr. Almeida! A Dra. Helena trouxe pregos, cordas, martelos etc. e "
             "disse: «Volte amanhã.» O preço é R$ 12,50, viu?")
    chunks = texts("pt-BR", reply, EAGER)
    assert chunks[0] == "Bom dia,"
    assert "Sr. Almeida!" in chunks  # "Sr." ends nothing; "!" does
    joined = " ".join(chunks)
    assert joined == reply
    for abbreviation in ("Sr.", "Dra.", "etc."):
        assert not any(chunk.endswith(abbreviation) for chunk in chunks), chunks
    assert "«Volte amanhã.»" in joined and not any(c.endswith("«Volte") for c in chunks)
    assert "12,50," in joined and not any(c.endswith("12,") for c in chunks)


def test_a_spanish_reply() -> None:
    reply = ("¡Hola, viajero! ¿Busca al Sr. Gómez o a la Dra. Ruiz? Ud. llega tarde, "
             "pero la posada sigue abierta. «Pase», dijo. No. Mañana, quizás.")
    chunks = texts("es", reply, CINEMATIC)
    assert " ".join(chunks) == reply
    assert not any(c.endswith(("Sr.", "Dra.", "Ud.", "¿", "¡")) for c in chunks), chunks
    short = texts("es", reply)
    assert short[0] == "¡Hola, viajero!"[:6]  # "¡Hola," : the first clause, ¡ kept
    assert short[1].startswith("viajero!")
    # "No." is a sentence in Spanish, not the English abbreviation of "number".
    assert any(c.endswith("No.") for c in texts("es", reply, SMALL))


def test_german_quotes_close_with_a_left_double_quote() -> None:
    chunks = texts("de", "Er sagte: „Ja, morgen.“ Dann ging er, Dr. Weber auch.", EAGER)
    assert chunks[0] == "Er sagte:"
    assert "„Ja," in chunks[1] and not chunks[1].endswith("„Ja")
    assert any(c.endswith("morgen.“") for c in chunks), chunks
    assert not any(c.endswith("Dr.") for c in chunks)


def test_chinese_and_japanese_cut_after_their_marks_without_spaces() -> None:
    zh = texts("zh", "你好，旅行者。我是铁匠，今天很忙！明天再来吧？")
    assert zh[0] == "你好，"
    assert "".join(zh) == "你好，旅行者。我是铁匠，今天很忙！明天再来吧？"
    ja = texts("ja", "「こんにちは。」と彼は言った、旅人よ。")
    assert ja[0] == "「こんにちは。」"
    assert "".join(ja) == "「こんにちは。」と彼は言った、旅人よ。"


def test_english_rules_are_unchanged_by_default() -> None:
    chunker = PhraseChunker(FAST)
    chunks = chunker.feed("I met Dr. Brown at St. Mary's, by the gate. ") + chunker.flush()
    assert chunks[0].text == "I met Dr. Brown at St. Mary's,"
