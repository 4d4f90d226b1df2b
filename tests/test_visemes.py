"""Phonemes -> visemes and words, with Piper's own phonemizer (espeak-ng) for real input."""

from __future__ import annotations

import json
import unicodedata

import pytest

from daemon.models import bundled_piper_voice
from daemon.tts.piper import PiperEngine
from daemon.tts.visemes import (
    VISEMES,
    ChunkAligner,
    PhonemeSpan,
    phoneme_spans,
    viseme_of,
    viseme_sequence,
    visemes_from_spans,
    word_tokens,
)


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    model, config = bundled_piper_voice()
    return PiperEngine(model, config, onnx_threads=1, streaming=False)


def phonemes(engine: PiperEngine, text: str) -> list[list[str]]:
    return engine.phonemize(text)


def test_every_letter_the_voice_knows_has_a_viseme() -> None:
    _, config = bundled_piper_voice()
    id_map = json.loads(config.read_text())["phoneme_id_map"]
    for phoneme in id_map:
        viseme = viseme_of(phoneme)
        assert viseme is None or viseme in VISEMES
        if unicodedata.category(phoneme) in ("Ll", "Lu", "Lo"):  # not modifier letters (Lm)
            assert viseme is not None, phoneme


@pytest.mark.parametrize(("word", "expected"), [
    ("map", ["sil", "PP", "aa", "PP", "sil"]),
    ("fish", ["sil", "FF", "ih", "CH", "sil"]),
    ("thin", ["sil", "TH", "ih", "nn", "sil"]),
    ("judge", ["sil", "CH", "aa", "CH", "sil"]),
    ("red", ["sil", "RR", "E", "DD", "sil"]),
    ("who", ["sil", "kk", "ou", "sil"]),
    ("sees", ["sil", "SS", "ih", "SS", "sil"]),
    ("go", ["sil", "kk", "oh", "ou", "sil"]),
])
def test_words_give_the_visemes_of_their_sounds(engine: PiperEngine, word: str,
                                                expected: list[str]) -> None:
    [sentence] = phonemes(engine, word)
    assert viseme_sequence(sentence) == expected


def test_stress_starts_the_vowel_and_length_extends_it() -> None:
    spans = [PhonemeSpan(p, 10 * i, 10 * i + 10) for i, p in enumerate(
        ["^", "s", "l", "ˈ", "i", "ː", "p", "$"])]
    marks = visemes_from_spans(spans, offset_samples=1000)
    assert [(m.viseme, m.start_sample, m.weight) for m in marks] == [
        ("sil", 1000, 1.0), ("SS", 1010, 1.0), ("nn", 1020, 1.0), ("ih", 1030, 1.0),
        ("PP", 1060, 1.0), ("sil", 1070, 1.0)]


def test_spans_follow_piper_ids_with_their_pads() -> None:
    id_map = {"^": [1], "_": [0], "$": [2], "a": [14], "b": [15]}
    # ids: ^ _ a _ b _ $  ->  samples per id; each pad goes with the sound after it
    spans = phoneme_spans(["a", "b"], [256, 512, 768, 256, 1024, 0, 512], id_map)
    assert [(s.phoneme, s.start_sample, s.end_sample) for s in spans] == [
        ("^", 0, 256), ("a", 256, 1536), ("b", 1536, 2816), ("$", 2816, 3328)]
    with pytest.raises(ValueError):
        phoneme_spans(["a"], [256, 256], id_map)


def test_word_tokens_keep_the_text() -> None:
    text = "Well -- met, traveller... I have 42 swords!"
    words = word_tokens(text)
    assert words == ["Well --", "met,", "traveller...", "I", "have", "42", "swords!"]
    assert " ".join(words) == " ".join(text.split())


def test_words_own_their_phonemes_even_when_espeak_merges_or_expands_them(
        engine: PiperEngine) -> None:
    text = "I have 42 swords and a pint of the best ale, Mr. Smith."
    sentences = phonemes(engine, text)
    assert len(sentences) == 2  # espeak ends a sentence at "Mr."
    id_map = engine.phoneme_id_map
    aligner = ChunkAligner(text, sentences, engine.phonemize_words, id_map)
    offset = 0
    words = []
    for index, ids in enumerate(engine.phoneme_ids(text)):
        timing = aligner.sentence_timing(index, [256] * len(ids), offset)
        assert timing.start_sample == offset
        offset = timing.end_sample
        words.extend(timing.words)
    assert [w.text for w in words] == word_tokens(text)
    for word, following in zip(words, words[1:], strict=False):
        assert word.start_sample < word.end_sample <= following.start_sample
    spans = {w.text: w.end_sample - w.start_sample for w in words}
    # "of the" is one espeak word (ʌvðə): each gets its part; "42" is two (forty two).
    assert spans["of"] > 0 and spans["the"] > 0
    assert spans["42"] > spans["swords"]


def test_a_token_without_sounds_is_said_with_the_word_before() -> None:
    id_map = {"^": [1], "_": [0], "$": [2], "a": [14], "b": [15], " ": [3]}
    sentences = [["a", " ", "b"]]
    aligner = ChunkAligner("a 123 b", sentences,
                           lambda words: [["a"], [], ["b"]], id_map)
    timing = aligner.sentence_timing(0, [1] * 9, 0)
    assert [(w.text, w.start_sample, w.end_sample) for w in timing.words] == [
        ("a", 1, 3), ("123", 3, 3), ("b", 5, 7)]
