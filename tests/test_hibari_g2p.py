"""hibari's G2P on packed tables: the same phonemes as hibari's own, from a cache built once."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from hibari.g2p import G2P, _load_json
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.bench.ttfa import load_corpus
from daemon.tts.hibari_g2p import PackedTable, ensure_tables, packed_g2p

# Lines that reach each rule the tables serve: part-of-speech readings ("read", "live",
# "record", "used to"), capitals and initials (proper nouns spelt out), numbers and
# money, a possessive and a plural (stems), and words in no dictionary (the OOV net).
TRICKY_LINES = [
    "I read the record yesterday; now I live to record it live.",
    "We used to say the UN and the EU used it.",
    "The blacksmith's 3rd hammer cost $9.99 on March 3, 2024.",
    "Dr. Smith met J. K. Rowling at 7:30 pm.",
    "Zorbulax and Quenthrim read the Wyrmtongue's scrolls.",
    "THE GATES ARE CLOSED! Come back at dawn, traveller.",
]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hibari-g2p")


@pytest.fixture(scope="module")
def stock() -> G2P:
    return G2P()


def test_packed_tables_give_hibaris_own_phonemes(cache_root: Path, stock: G2P) -> None:
    packed = packed_g2p(cache_root=cache_root)
    lines = [line for _, line in load_corpus()] + TRICKY_LINES
    for line in lines:
        assert packed(line) == stock(line), line
    assert packed("Zorbulax")  # the OOV net still reads what no table holds


def test_the_tables_are_built_once_then_loaded(cache_root: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    folder = ensure_tables(cache_root=cache_root)
    files = sorted(path.name for path in folder.iterdir())
    assert files == ["gold.marisa", "silver.marisa", "tagdict.marisa", "tags.json",
                     "vocab.marisa", "weights.marisa"]
    for path in folder.iterdir():  # a model cache shared between users stays readable
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    with caplog.at_level(logging.INFO, logger="daemon.tts.hibari_g2p"):
        assert ensure_tables(cache_root=cache_root) == folder
    assert not [r for r in caplog.records if "packed hibari" in r.getMessage()]
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == written


def test_a_folder_left_half_written_is_built_again(tmp_path: Path, stock: G2P) -> None:
    folder = ensure_tables(cache_root=tmp_path)
    (folder / "tags.json").unlink()  # the last file written: the folder is incomplete
    (folder / "gold.marisa").write_bytes(b"torn")
    assert ensure_tables(cache_root=tmp_path) == folder
    assert packed_g2p(cache_root=tmp_path)("Hello there, traveller.") == stock(
        "Hello there, traveller.")


def test_a_damaged_table_is_built_again_with_a_warning(
        tmp_path: Path, stock: G2P, caplog: pytest.LogCaptureFixture) -> None:
    folder = ensure_tables(cache_root=tmp_path)
    (folder / "weights.marisa").write_bytes(b"not a trie")  # complete folder, bad file
    with caplog.at_level(logging.WARNING, logger="daemon.tts.hibari_g2p"):
        g2p = packed_g2p(cache_root=tmp_path)
    assert g2p("I read the record.") == stock("I read the record.")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot be read" in warnings[0], warnings


GOLD: dict = _load_json("lexicon_us_gold.json.gz")
GOLD_KEYS = sorted(GOLD)


@pytest.fixture(scope="module")
def gold_table(cache_root: Path) -> PackedTable:
    g2p = packed_g2p(cache_root=cache_root)
    table = g2p.lexicon.golds.d
    assert isinstance(table, PackedTable) and len(table) == len(GOLD)
    return table


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(GOLD_KEYS), other=st.text(max_size=12))
def test_a_packed_table_answers_as_the_dict(gold_table: PackedTable, key: str,
                                            other: str) -> None:
    assert gold_table.get(key) == GOLD[key]  # a str, or a dict of tag -> phonemes
    assert key in gold_table
    assert gold_table.get(other, "absent") == GOLD.get(other, "absent")
    assert (other in gold_table) == (other in GOLD)


@pytest.mark.parametrize("word", ["\x00", "a\x00", "\x00the", "\ud800", "the\udfff"])
def test_a_word_no_trie_can_hold_is_unknown(gold_table: PackedTable, word: str) -> None:
    # marisa's keys are NUL-terminated UTF-8: such a lookup would answer for another
    # word or fail. Text from an LLM can hold anything.
    assert gold_table.get(word, "absent") == "absent"
    assert word not in gold_table
