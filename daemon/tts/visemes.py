"""Visemes and word timing from Piper's phoneme durations.

Piper phonemizes with espeak-ng (IPA, one list of codepoints per sentence: stress marks
and length marks are separate entries) and its duration predictor gives every phoneme
id a whole number of frames (`hop` samples each); the ids are `^ _ p1 _ p2 ... _ pn _ $`
(`_` the pad). A phoneme's span is the pad before it plus its own ids: the pad's frames
are the transition into the next sound. (piper's `include_alignments` counts the pad
with the phoneme before; measured against the audio's loudness over a 22 s reply,
that puts the viseme track 20 ms late on average, up to 40 ms, and the pad-before
grouping within +-20 ms, mean 0: `npc-voice bench timing`, BENCHMARKS.md.) A sentence
starts with `^` (silence) and ends with `_ $`.

Visemes: the 15-viseme set of game engines, the one Meta's OVRLipSync defines (sil, PP,
FF, TH, DD, kk, CH, SS, nn, RR, aa, E, ih, oh, ou; reference with example words:
https://developers.meta.com/horizon/documentation/unity/audio-ovrlipsync-viseme-reference/).
The reference names the visemes by English example phonemes; the table below extends
it to the IPA symbols espeak-ng writes, by place and manner of articulation:

  viseme  example (OVR)      IPA symbols
  sil     silence            punctuation . , ; : ! ? ( ) - " and ^ $ (sentence ends)
  PP      put, bat, mat      p b m ɓ ʙ ʘ
  FF      fat, vat           f v ɸ β ʋ ɱ ⱱ
  TH      think, that        θ ð
  DD      tip, doll          t d ɾ ʈ ɖ ɗ ɽ ɺ
  kk      call, gas          k ɡ g c ɟ q ɢ ŋ ɴ x ɣ χ ʁ ɠ ʛ ɰ ç ʝ ʄ h ɦ ħ ʜ ʕ ʢ ʔ ʡ
  CH      chair, join, she   ʃ ʒ ɕ ʑ ʂ ʐ ɧ, and t or d followed by ʃ or ʒ (tʃ, dʒ)
  SS      sir, zeal          s z
  nn      lot, not           n l ɫ ɲ ɳ ɭ ʎ ʟ ɬ ɮ
  RR      red                r ɹ ɻ ʀ ɚ ɝ
  aa      car                a ɑ ɐ ʌ æ ɶ
  E       bed                e ɛ ε ə ɘ ɜ ɞ ɤ
  ih      tip                i ɪ ɨ ᵻ ɯ j
  oh      toe                o ɔ ɒ ø œ ɵ
  ou      book               u ʊ ʉ w ʍ y ʏ ɥ

Glottal and pharyngeal sounds (h, ʔ...) take kk, an open, relaxed mouth. Stress marks
(ˈ ˌ) start the viseme of the phoneme after them (their frames are that phoneme's
onset); length and other modifiers (ː ˑ ʲ ʰ ˤ ˞, combining marks, tone digits) and
the word-separating space extend the viseme before them; so does any symbol not in the
table. Consecutive phonemes with the same viseme make one viseme.

Weights (0..1, how far the mouth goes to the shape): vowels after a primary stress mark
1.0, after a secondary one 0.85, unstressed vowels 0.6; consonants and sil 1.0.

Words: the chunk's words are its whitespace-separated tokens (a token without a letter
or digit joins its neighbour), so joining them with spaces gives the chunk's text back.
espeak-ng does not say which phonemes came from which word and merges some words ("of
the" -> ʌvðə), expands others ("42" -> fˈɔːɹɾi tˈuː) and splits sentences at
abbreviations ("Mr." ends one), so each token is phonemized on its own and the
sequences are aligned symbol by symbol (difflib); a phoneme left unmatched goes to the
word of its neighbour in the same espeak word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from daemon.tts.base import SpeechTiming, VisemeMark, WordSpan

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih",
           "oh", "ou")
"""The 15 visemes (OVRLipSync order)."""

_CONSONANTS = {
    "PP": "pbmɓʙʘ", "FF": "fvɸβʋɱⱱ", "TH": "θð", "DD": "tdɾʈɖɗɽɺ",
    "kk": "kɡgcɟqɢŋɴxɣχʁɠʛɰçʝʄhɦħʜʕʢʔʡ", "CH": "ʃʒɕʑʂʐɧ", "SS": "sz",
    "nn": "nlɫɲɳɭʎʟɬɮ", "RR": "rɹɻʀ", "ou": "wʍɥ", "ih": "j",
}
_VOWELS = {"RR": "ɚɝ", "aa": "aɑɐʌæɶ", "E": "eɛεəɘɜɞɤ", "ih": "iɪɨᵻɯ", "oh": "oɔɒøœɵ",
           "ou": "uʊʉyʏ"}
_SILENCE = set(".,;:!?()-\"'‐–—…¡¿«»↓#ǀǁǂǃ^$_")
_STRESS = {"ˈ": 1.0, "ˌ": 0.85}
_UNSTRESSED_VOWEL_WEIGHT = 0.6
_AFFRICATE_STARTS = {"t", "d"}
_AFFRICATE_ENDS = {"ʃ", "ʒ"}

_TABLE: dict[str, tuple[str, bool]] = {}
for _viseme, _symbols in _CONSONANTS.items():
    _TABLE.update({symbol: (_viseme, False) for symbol in _symbols})
for _viseme, _symbols in _VOWELS.items():
    _TABLE.update({symbol: (_viseme, True) for symbol in _symbols})
_TABLE.update({symbol: ("sil", False) for symbol in _SILENCE})

BOS, EOS, PAD = "^", "$", "_"
"""Piper's sentence start, sentence end and pad phonemes."""


def viseme_of(phoneme: str) -> str | None:
    """The viseme of one Piper phoneme, or None when it has none of its own.

    None: a stress mark, a length mark or other modifier, the space between words, or
    a symbol outside the table (see the module docstring). A multi-codepoint phoneme
    (a voice's vowel cluster) takes the viseme of its first codepoint.
    """
    entry = _TABLE.get(phoneme) or _TABLE.get(phoneme[:1])
    return entry[0] if entry else None


@dataclass(frozen=True, slots=True)
class PhonemeSpan:
    """One phoneme and its samples within a sentence.

    Attributes:
      phoneme: The phoneme (BOS/EOS included).
      start_sample: First sample, from the sentence's start.
      end_sample: One past its last sample.
    """

    phoneme: str
    start_sample: int
    end_sample: int


def phoneme_spans(phonemes: Sequence[str], id_samples: Sequence[int],
                  id_map: Mapping[str, Sequence[int]]) -> list[PhonemeSpan]:
    """Spans of `^`, each phoneme, and `$`, from the samples of each phoneme id.

    Each span but `^`'s starts with the pad id before it (see the module docstring).

    Args:
      phonemes: One sentence as `PiperVoice.phonemize` gives it.
      id_samples: Samples per phoneme id, in the order of `phonemes_to_ids(phonemes)`.
      id_map: The voice's phoneme id map (phonemes it lacks have no ids: piper skips
        them and their pad, so their spans are empty).

    Returns:
      One span per phoneme, BOS first and EOS last, contiguous from sample 0.

    Raises:
      ValueError: `id_samples` does not have the length `phonemes_to_ids` gives.
    """
    pad_count = len(id_map.get(PAD, ()))
    spans: list[PhonemeSpan] = []
    index = position = 0
    for phoneme in (BOS, *phonemes, EOS):
        ids = id_map.get(phoneme, ())
        count = len(ids) + (pad_count if ids and phoneme != BOS else 0)
        samples = int(sum(id_samples[index:index + count]))
        spans.append(PhonemeSpan(phoneme, position, position + samples))
        index += count
        position += samples
    if index != len(id_samples):
        raise ValueError(f"{len(id_samples)} durations for {index} phoneme ids")
    return spans


def visemes_from_spans(spans: Sequence[PhonemeSpan], offset_samples: int = 0
                       ) -> list[VisemeMark]:
    """The viseme track of a sentence: one mark where each viseme starts.

    Args:
      spans: The sentence's phoneme spans (`phoneme_spans`).
      offset_samples: Added to every start (the sentence's place in its chunk).

    Returns:
      Marks in time order; consecutive equal visemes merged (the first start, the
      largest weight).
    """
    marks: list[VisemeMark] = []
    onset: int | None = None  # start of a stress mark waiting for its vowel
    stress = 0.0
    for index, span in enumerate(spans):
        if span.phoneme in _STRESS:
            if onset is None:
                onset, stress = span.start_sample, _STRESS[span.phoneme]
            continue
        entry = _TABLE.get(span.phoneme) or _TABLE.get(span.phoneme[:1])
        if entry is None:
            continue  # modifier or space: the current viseme goes on
        viseme, vowel = entry
        following = spans[index + 1].phoneme if index + 1 < len(spans) else ""
        if span.phoneme in _AFFRICATE_STARTS and following in _AFFRICATE_ENDS:
            viseme = "CH"
        weight = (stress or _UNSTRESSED_VOWEL_WEIGHT) if vowel else 1.0
        start = (span.start_sample if onset is None else onset) + offset_samples
        onset, stress = None, 0.0
        if marks and marks[-1].viseme == viseme:
            if weight > marks[-1].weight:
                marks[-1] = VisemeMark(viseme, marks[-1].start_sample, weight)
            continue
        marks.append(VisemeMark(viseme, start, weight))
    return marks


def viseme_sequence(phonemes: Sequence[str]) -> list[str]:
    """The visemes a sentence's phonemes give, in order (what its timing will list).

    Args:
      phonemes: One sentence as `PiperVoice.phonemize` gives it (BOS and EOS are added).
    """
    spans = [PhonemeSpan(p, i, i + 1) for i, p in enumerate((BOS, *phonemes, EOS))]
    return [mark.viseme for mark in visemes_from_spans(spans)]


_WORD_CHAR = re.compile(r"\w", re.UNICODE)
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """The words of a chunk: whitespace-separated tokens, punctuation kept.

    A token without a letter or digit ("-", "...") joins the word before it (or the
    one after it, at the start), so `" ".join(word_tokens(t))` equals `" ".join(t.split())`.
    """
    words: list[str] = []
    leading = ""
    for token in text.split():
        if not _WORD_CHAR.search(token):
            if words:
                words[-1] = f"{words[-1]} {token}"
            else:
                leading = f"{leading}{token} "
            continue
        words.append(leading + token)
        leading = ""
    if leading and words:
        words[0] = leading + words[0]
    return words


def spoken_form(word: str) -> str:
    """What is phonemized for a word token: its text without edge punctuation."""
    return _EDGE_PUNCTUATION.sub("", word)


def _is_sound(phoneme: str) -> bool:
    """A phoneme with a viseme of its own that is not silence (what alignment matches)."""
    viseme = viseme_of(phoneme)
    return viseme is not None and viseme != "sil"


def phoneme_owners(sentences: Sequence[Sequence[str]], word_phonemes: Sequence[Sequence[str]]
                   ) -> list[list[int | None]]:
    """Which word each phoneme of a chunk belongs to.

    Args:
      sentences: The chunk phonemized as Piper does (one list per sentence).
      word_phonemes: Each word token phonemized on its own (any sentence split
        flattened away), in order.

    Returns:
      Per sentence, per phoneme: the word's index, or None (silence, the space
      between words). Indices never decrease along the chunk.
    """
    keys: list[str] = []
    places: list[tuple[int, int]] = []  # (sentence, phoneme index) of each key
    espeak_words: list[int] = []  # espeak's word count before each key
    word_count = 0
    for s, phonemes in enumerate(sentences):
        for i, phoneme in enumerate(phonemes):
            if _is_sound(phoneme):
                keys.append(phoneme)
                places.append((s, i))
                espeak_words.append(word_count)
            elif phoneme == " " or viseme_of(phoneme) == "sil":
                word_count += 1
    targets: list[str] = []
    target_words: list[int] = []
    for w, phonemes in enumerate(word_phonemes):
        for phoneme in phonemes:
            if _is_sound(phoneme):
                targets.append(phoneme)
                target_words.append(w)
    owner_of_key: list[int | None] = [None] * len(keys)
    matcher = SequenceMatcher(None, keys, targets, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            owner_of_key[block.a + k] = target_words[block.b + k]
    resolved = _fill_unmatched(owner_of_key, espeak_words, len(word_phonemes))
    owners: list[list[int | None]] = [[None] * len(p) for p in sentences]
    for (s, i), owner in zip(places, resolved, strict=True):
        owners[s][i] = owner
    for s, phonemes in enumerate(sentences):
        _attach_modifiers(list(phonemes), owners[s])
    return owners


def _fill_unmatched(owners: list[int | None], espeak_words: list[int], word_count: int
                    ) -> list[int | None]:
    """Give every unmatched key the word of a matched neighbour (see `phoneme_owners`)."""
    if word_count == 0:
        return [None] * len(owners)
    matched = [k for k, owner in enumerate(owners) if owner is not None]
    if not matched:
        return [0] * len(owners)
    result: list[int | None] = list(owners)
    previous: int | None = None  # last matched key before k
    upcoming = iter(matched)
    following = next(upcoming, None)  # first matched key after k
    for k, owner in enumerate(owners):
        if owner is not None:
            previous = k
            if following == k:
                following = next(upcoming, None)
            continue
        if previous is None:
            result[k] = owners[following] if following is not None else None
            continue
        before = owners[previous]
        assert before is not None
        if following is None or espeak_words[k] == espeak_words[previous]:
            result[k] = before
            continue
        after = owners[following]
        assert after is not None
        if espeak_words[k] == espeak_words[following]:
            result[k] = after
        else:  # a whole espeak word unmatched between two words
            result[k] = min(before + 1, after)
    return result


def _attach_modifiers(phonemes: list[str], owners: list[int | None]) -> None:
    """Stress marks belong to the next sound's word, other modifiers to the previous."""
    for i, phoneme in enumerate(phonemes):
        if owners[i] is not None or phoneme == " " or viseme_of(phoneme) is not None:
            continue
        if phoneme in _STRESS:
            owners[i] = next((owners[j] for j in range(i + 1, len(phonemes))
                              if owners[j] is not None), None)
        elif i > 0:
            owners[i] = owners[i - 1]


class ChunkAligner:
    """Word and viseme timing of one chunk, sentence by sentence.

    Args:
      text: The chunk's text.
      sentences: The chunk phonemized (`PiperVoice.phonemize(text)`, empty sentences
        dropped), in the order they are synthesized.
      phonemize_words: Phonemizes a list of words, one phoneme list per word (see
        `daemon.tts.piper`).
      id_map: The voice's phoneme id map.
    """

    def __init__(self, text: str, sentences: Sequence[Sequence[str]],
                 phonemize_words: Callable[[list[str]], list[list[str]]],
                 id_map: Mapping[str, Sequence[int]]) -> None:
        self.words = word_tokens(text)
        self._sentences = sentences
        self._id_map = id_map
        spoken = [spoken_form(word) for word in self.words]
        self._owners = phoneme_owners(sentences, phonemize_words(spoken))
        homes: list[int | None] = [None] * len(self.words)
        for s, owners in enumerate(self._owners):
            for owner in owners:
                if owner is not None and homes[owner] is None:
                    homes[owner] = s
        # A word without phonemes of its own is said with the word before it.
        home = 0
        for w, sentence in enumerate(homes):
            home = sentence if sentence is not None else home
            homes[w] = home
        self._homes = homes

    def sentence_timing(self, index: int, id_samples: Sequence[int], offset_samples: int
                        ) -> SpeechTiming:
        """Timing of sentence `index`, in samples from the chunk's start.

        Args:
          index: The sentence (position in `sentences`).
          id_samples: Samples per phoneme id of that sentence (frames x hop).
          offset_samples: Where the sentence starts in the chunk's audio.

        Raises:
          ValueError: `id_samples` does not fit the sentence's phoneme ids.
        """
        phonemes = list(self._sentences[index])
        spans = phoneme_spans(phonemes, id_samples, self._id_map)
        sentence_samples = spans[-1].end_sample
        bounds: dict[int, tuple[int, int]] = {}
        for span, owner in zip(spans[1:-1], self._owners[index], strict=True):
            if owner is None or span.end_sample == span.start_sample:
                continue
            start, end = bounds.get(owner, (span.start_sample, span.end_sample))
            bounds[owner] = (min(start, span.start_sample), max(end, span.end_sample))
        words: list[WordSpan] = []
        last_end = spans[0].end_sample  # after the leading silence
        for w, word in enumerate(self.words):
            if w in bounds:
                start, end = bounds[w]
                last_end = end
            elif self._homes[w] == index:
                start = end = last_end  # no phonemes of its own
            else:
                continue
            words.append(WordSpan(word, start + offset_samples, end + offset_samples))
        return SpeechTiming(start_sample=offset_samples,
                            end_sample=offset_samples + sentence_samples,
                            words=tuple(words),
                            visemes=tuple(visemes_from_spans(spans, offset_samples)))
