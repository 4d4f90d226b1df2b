"""Conditioning latents of cloned voices: reading reference clips, and the disk cache.

Computing a voice's latents runs XTTS's conditioning encoder and speaker encoder over
up to 30 s of audio (seconds on a CPU), so they are computed once and kept on disk.
An entry's key is a SHA-256 over the model's identity (`model.model_identity`)
and the content of every clip in order, so editing or replacing a clip, or changing
the model, makes a new key. A cache file that cannot be read back is recomputed and
overwritten, never fatal. Files are written to a temporary name and renamed, so a
crash mid-write leaves no half file under the real name.

Runs in the XTTS worker process (needs torch and soundfile).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from daemon.tts.xtts.model import Latents

_LOGGER = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped when what a cache file holds changes (old entries then miss)."""


class ClipError(ValueError):
    """A reference clip is missing, unreadable or empty; the message names it."""


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    """Read a reference clip (WAV, FLAC, OGG/Vorbis: whatever libsndfile reads).

    Returns:
      (samples, sample_rate_hz): 1-D float32 in [-1, 1], channels averaged.

    Raises:
      ClipError: the file is missing, not audio, or silent-empty.
    """
    import soundfile

    try:
        samples, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise ClipError(f"cannot read reference clip {path}: {exc}") from None
    if samples.shape[0] == 0:
        raise ClipError(f"reference clip {path} holds no audio")
    return samples.mean(axis=1), int(rate_hz)


def cache_key(model_id: str, clip_paths: list[Path]) -> str:
    """Key of a voice's entry: SHA-256 of the format, the model and each clip's bytes.

    Raises:
      ClipError: a clip cannot be read.
    """
    digest = hashlib.sha256(f"xtts-latents/{CACHE_FORMAT}/{model_id}".encode())
    for path in clip_paths:
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            raise ClipError(f"cannot read reference clip {path}: {exc.strerror}") from None
    return digest.hexdigest()[:32]


class LatentsCache:
    """Conditioning latents on disk, one `<key>.pt` file per voice and clip set.

    Args:
      directory: Cache folder (created on first store).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        """File of entry `key`."""
        return self.directory / f"{key}.pt"

    def load(self, key: str) -> Latents | None:
        """The entry, or None when absent; an unreadable entry is logged and ignored.

        Raises nothing for a bad file: it is reported and treated as a miss.
        """
        import torch

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            latents = Latents(entry["gpt_cond_latent"].float(),
                              entry["speaker_embedding"].float())
            if latents.gpt_cond_latent.dim() != 3 or latents.speaker_embedding.dim() != 3:
                raise ValueError("unexpected tensor shapes")
        except Exception as exc:  # noqa: BLE001 - any damage means "compute again"
            _LOGGER.warning("latents cache entry %s is unreadable (%s); computing it again",
                            path, exc)
            return None
        return latents

    def store(self, key: str, latents: Latents, clip_paths: list[Path]) -> Path:
        """Write entry `key` atomically; returns its path."""
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"gpt_cond_latent": latents.gpt_cond_latent,
                    "speaker_embedding": latents.speaker_embedding,
                    "clips": [str(p) for p in clip_paths]}, temporary)
        os.replace(temporary, path)
        return path
