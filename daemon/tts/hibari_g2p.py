"""hibari's grapheme-to-phoneme tables as compact tries, cached on disk.

hibari's G2P (misaki's English rules, ported) keeps its two pronouncing dictionaries
(gold 90k, silver 93k words) and its part-of-speech tagger (80k features x ~3.7 tag
weights) as Python dicts: 69 MB of the daemon's memory, for ~4 MB of data. Here each
table is a marisa trie (marisa-trie, MIT) whose values are the dicts' values in JSON;
looking a word up decodes only that entry. Measured on the 2-core dev box (2026-12-06):
+3.8 MB resident instead of +68.8 MB, loaded in 6 ms instead of 288 ms, 0.69 ms of G2P
per line instead of 0.43 ms, the same phonemes (BENCHMARKS.md, "Memory").

The tries are built once from hibari's packaged JSON into
`<user cache>/hibari-g2p/<key>/` (key: hibari's version and the files' sizes), and
loaded from there afterwards. `packed_g2p` returns hibari's own `G2P` class with the
tables swapped, so every rule of hibari's runs unchanged on them;
`tests/test_hibari_g2p.py` checks the phonemes against the stock G2P.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import time
from pathlib import Path
from typing import Any

import marisa_trie
import msgspec

from daemon.models import replaced_atomically, user_cache_dir

_LOGGER = logging.getLogger(__name__)

_TABLES = ("gold", "silver", "tagdict", "weights", "vocab")
"""The tables, each key -> JSON value (the tagger's vocabulary: word -> 1, read with `in`)."""
_TAGS = "tags.json"
"""The tagger's tag list; written last, so its presence marks a complete folder."""
_ENCODER = msgspec.json.Encoder()


class PackedTable:
    """A read-only str -> JSON value table in a marisa trie, with dict's `get` and `in`.

    Each `get` decodes the entry afresh: callers may not keep it mutated (hibari's G2P
    only reads the values: phoneme strings, or a dict of part-of-speech tag -> phonemes,
    or the tagger's tag -> weight dict).
    """

    __slots__ = ("_trie", "_decoder")

    def __init__(self, trie: marisa_trie.BytesTrie) -> None:
        self._trie = trie
        self._decoder = msgspec.json.Decoder()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored for `key`, or `default`."""
        if not _storable(key):
            return default
        values = self._trie.get(key)
        return default if not values else self._decoder.decode(values[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _storable(key) and key in self._trie

    def __len__(self) -> int:
        return len(self._trie)


def _storable(key: str) -> bool:
    """Whether a trie can hold `key`.

    marisa's keys are NUL-terminated UTF-8: a lookup of a word with NUL in it answers
    for another word or fails, and a lone surrogate cannot be encoded. No table holds
    such a word, so it is simply unknown (text from an LLM can hold anything).
    """
    if key.isprintable():  # the usual word: neither NUL nor a surrogate is printable
        return True
    if "\0" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def g2p_cache_root() -> Path:
    """Folder of the cached tables: <user cache>/hibari-g2p (~/.cache/npc-voice/...)."""
    return user_cache_dir() / "hibari-g2p"


def _assets() -> Path:
    import hibari.g2p  # noqa: PLC0415 - optional at import time, like the voice

    return Path(hibari.g2p.ASSETS)


def _sources(accent: str) -> dict[str, str]:
    return {"gold": f"lexicon_{accent}_gold.json.gz", "silver": f"lexicon_{accent}_silver.json.gz",
            "tagger": "tagger.json.gz"}


def _cache_key(accent: str) -> str:
    assets = _assets()
    identity = [importlib.metadata.version("hibari-tts"), accent]
    identity += [f"{name}:{(assets / name).stat().st_size}" for name in _sources(accent).values()]
    return hashlib.sha256("|".join(identity).encode("utf-8")).hexdigest()[:16]


def ensure_tables(british: bool = False, cache_root: Path | None = None) -> Path:
    """The folder of the packed tables for one accent, built on first use.

    Building reads hibari's JSON one file at a time (~37 MB of dicts at most, freed
    before the next) and takes ~1 s. Each file is renamed into place whole; a daemon
    starting meanwhile builds its own copy, and the last rename wins (same content).

    Args:
      british: misaki's British dictionaries (hibari's British voices) instead of the
        American ones.
      cache_root: Where tables are cached (default: `g2p_cache_root()`).

    Raises:
      OSError: the cache folder cannot be written, or hibari's files cannot be read.
    """
    accent = "gb" if british else "us"
    folder = (cache_root or g2p_cache_root()) / f"{accent}-{_cache_key(accent)}"
    if (folder / _TAGS).is_file():
        return folder
    from hibari.g2p import _load_json  # noqa: PLC0415 - hibari's own reader of its assets

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    sources = _sources(accent)
    for name in ("gold", "silver"):
        _save(marisa_trie.BytesTrie(_packed(_load_json(sources[name]))), folder / f"{name}.marisa")
    tagger = _load_json(sources["tagger"])
    _save(marisa_trie.BytesTrie(_packed(tagger["tagdict"])), folder / "tagdict.marisa")
    _save(marisa_trie.BytesTrie(_packed(tagger["weights"])), folder / "weights.marisa")
    _save(marisa_trie.BytesTrie((word, b"1") for word in tagger["vocab"]),
          folder / "vocab.marisa")
    with replaced_atomically(folder / _TAGS) as temporary:
        temporary.write_text(json.dumps(tagger["tags"]), encoding="utf-8")
    _LOGGER.info("packed hibari's G2P tables (%s) in %.0f ms (cached in %s)", accent,
                 (time.perf_counter() - started) * 1000, folder)
    return folder


def _packed(table: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [(key, _ENCODER.encode(value)) for key, value in table.items()]


def _save(trie: marisa_trie.BytesTrie, target: Path) -> None:
    with replaced_atomically(target) as temporary:
        trie.save(str(temporary))


def packed_g2p(british: bool = False, cache_root: Path | None = None) -> Any:
    """A `hibari.g2p.G2P` that reads its dictionaries and tagger from the packed tables.

    Returns:
      A `hibari.g2p.G2P`: call it with a sentence, get its phonemes (a str).

    A cached table that cannot be read (damaged outside the daemon) is built again,
    with one warning.

    Raises:
      OSError: see `ensure_tables`.
      RuntimeError: the tables built again cannot be read either.
      ImportError: hibari-tts is not installed.
    """
    from hibari.g2p import G2P, Lexicon, Tagger, Tokenizer, _load_json  # noqa: PLC0415

    folder = ensure_tables(british, cache_root)
    try:
        tables, tags = _load_tables(folder)
    except (OSError, RuntimeError, ValueError) as exc:  # marisa: RuntimeError; JSON: ValueError
        _LOGGER.warning("hibari's G2P tables in %s cannot be read (%s): building them again",
                        folder, exc)
        (folder / _TAGS).unlink(missing_ok=True)
        tables, tags = _load_tables(ensure_tables(british, cache_root))
    # hibari's G2P.__init__ reads the JSON into dicts; this builds the same object
    # around the tries instead (its attributes as hibari-tts 0.2.1 sets them).
    g2p = G2P.__new__(G2P)
    g2p.lexicon = Lexicon(tables["gold"], tables["silver"], british)
    g2p.tokenizer = Tokenizer(_load_json("tokenizer_exceptions.json"))
    tagger = Tagger({"tagdict": {}, "tags": tags, "weights": {}})
    tagger.tagdict, tagger.weights, tagger.vocab = (tables["tagdict"], tables["weights"],
                                                     tables["vocab"])
    g2p.tagger = tagger
    g2p._oov = None  # hibari's lazy OOV net, as its __init__ leaves it
    g2p.unk = ""
    g2p.british = british
    return g2p


def _load_tables(folder: Path) -> tuple[dict[str, PackedTable], list[str]]:
    tables = {}
    for name in _TABLES:
        trie = marisa_trie.BytesTrie()
        trie.load(str(folder / f"{name}.marisa"))
        tables[name] = PackedTable(trie)
    tags = json.loads((folder / _TAGS).read_text(encoding="utf-8"))
    return tables, tags
