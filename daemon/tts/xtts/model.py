"""A loaded XTTS-v2 model and its streaming synthesis (runs in the XTTS worker process).

Loading follows coqui-tts 0.28's own path (`XttsConfig.load_json`, `Xtts(config)`,
`Xtts.load_checkpoint(eval=True)`), so a real checkpoint and the tests' random one go
through the same code. Precision (the traps are listed in ../shared/notes/engines.md):

* The GPT's transformer, embeddings and heads run in `dtype` (float16 on CUDA). Its
  conditioning encoder and perceiver stay float32, so conditioning latents are always
  computed in full precision, also for voices added after the model was halved.
* The HiFi-GAN vocoder and its speaker encoder stay float32 (the speaker encoder is
  reported to break when halved); a forward pre-hook casts the GPT's half latents to
  float32 on their way into the vocoder.

Streaming uses coqui's `Xtts.inference_stream`, which re-decodes all latents of the
text so far on every piece and cross-fades each piece's start with the previous
piece's tail (`overlap_wav_len`). Each call starts from silence, so a 5 ms
raised-cosine fade-in and fade-out at the ends of every text chunk keeps the joins
between chunks free of clicks (the fade-out needs the last 5 ms of a chunk to be held
back until the generator ends).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_LOGGER = logging.getLogger(__name__)

EDGE_FADE_MS = 5.0
"""Fade at both ends of every text chunk's audio (raised cosine)."""

WARM_UP_TEXT = "Well met, traveller."


class ModelFilesMissing(FileNotFoundError):
    """The model folder lacks config.json, model.pth or vocab.json."""


@dataclass(frozen=True, slots=True)
class Latents:
    """A voice's conditioning latents, as XTTS uses them.

    Attributes:
      gpt_cond_latent: float32 tensor [1, 32, gpt_n_model_channels] (perceiver output).
      speaker_embedding: float32 tensor [1, 512, 1] (H/ASP ResNet, L2-normalised).
    """

    gpt_cond_latent: Any
    speaker_embedding: Any


def model_identity(model_dir: Path) -> str:
    """A short content identity of a checkpoint folder, for latents cache keys.

    Hashes config.json and vocab.json whole, and model.pth's size with its first and
    last MiB: hashing all 1.8 GB would add seconds to every start, and another
    checkpoint differs in those bytes too.

    Returns:
      16 hex characters.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "vocab.json"):
        digest.update((model_dir / name).read_bytes())
    weights = model_dir / "model.pth"
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with open(weights, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class XttsModel:
    """XTTS-v2 loaded on one device. Not thread-safe: one owner thread.

    Args:
      model_dir: Checkpoint folder (config.json, model.pth, vocab.json, optionally
        speakers_xtts.pth). Must be writable the first time an original checkpoint is
        loaded: coqui-tts re-saves a legacy pickled model.pth once.
      device: "cuda", "cuda:N" or "cpu".
      dtype: "float16", "bfloat16" or "float32" for the GPT.

    Raises:
      ModelFilesMissing: a required file is missing.
      RuntimeError (incl. torch.cuda.OutOfMemoryError): loading failed.
    """

    def __init__(self, model_dir: Path, device: str, dtype: str) -> None:
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        missing = [name for name in ("config.json", "model.pth", "vocab.json")
                   if not (model_dir / name).is_file()]
        if missing:
            raise ModelFilesMissing(f"{model_dir} lacks {', '.join(missing)}")
        self.torch = torch
        self.model_id = model_identity(model_dir)
        config = XttsConfig()
        config.load_json(str(model_dir / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True)
        model.to(device)
        self.device = device
        self.dtype = getattr(torch, dtype)
        self.model = model
        self.config = config
        if self.dtype != torch.float32:
            self._lower_gpt_precision(model)
        self.sample_rate_hz: int = int(config.model_args.output_sample_rate)
        self._fade_samples = round(self.sample_rate_hz * EDGE_FADE_MS / 1000.0)
        ramp = np.linspace(0.0, np.pi / 2.0, self._fade_samples, dtype=np.float32)
        self._fade_in = np.sin(ramp) ** 2
        self._fade_out = self._fade_in[::-1].copy()

    def _lower_gpt_precision(self, model) -> None:
        """GPT in `self.dtype` except its conditioning path; vocoder fed float32."""
        keep_float32 = {"conditioning_encoder", "conditioning_perceiver"}
        for name, module in model.gpt.named_children():
            if name not in keep_float32:
                module.to(self.dtype)
        torch, dtype = self.torch, self.dtype
        width = int(self.config.model_args.gpt_n_model_channels)

        # coqui's GPT replaces GPT-2's position table by a function returning float32
        # zeros; added to half embeddings they promote the hidden states to float32,
        # and the half LayerNorms then fail (on CPU: "mixed dtype"). Autocast hides
        # this on CUDA; zeros of the GPT's own dtype fix it everywhere.
        def null_positions(position_ids):
            return torch.zeros((*position_ids.shape, width), dtype=dtype,
                               device=position_ids.device)

        model.gpt.gpt.wpe = null_positions

        def float32_inputs(_module, args, kwargs):
            def cast(value):
                return value.float() if torch.is_tensor(value) else value
            return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

        model.hifigan_decoder.register_forward_pre_hook(float32_inputs, with_kwargs=True)

    def compute_latents(self, clips: list[tuple[np.ndarray, int]]) -> Latents:
        """Conditioning latents of one voice from its reference clips, in float32.

        As coqui's `get_conditioning_latents`: each clip is cut to `max_ref_len` s;
        the speaker embedding is the mean of the clips' embeddings; the GPT latent
        comes from the clips joined, cut every `gpt_cond_chunk_len` s (settings from
        the model's config.json: 30 and 4 for XTTS-v2).

        Args:
          clips: (samples, sample_rate_hz) per clip; samples are 1-D float32 in [-1, 1].

        Raises:
          RuntimeError: the audio is too short (under 0.33 s in every piece).
        """
        import soxr

        torch, model, config = self.torch, self.model, self.config
        load_rate_hz = 22050
        pieces, embeddings = [], []
        for samples, rate_hz in clips:
            audio = soxr.resample(samples, rate_hz, load_rate_hz) if rate_hz != load_rate_hz \
                else samples
            audio = audio[: load_rate_hz * int(config.max_ref_len)]
            tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, :]
            tensor = tensor.to(self.device)
            embeddings.append(model.get_speaker_embedding(tensor, load_rate_hz))
            pieces.append(tensor)
        gpt_cond_latent = model.get_gpt_cond_latents(
            torch.cat(pieces, dim=-1), load_rate_hz, length=int(config.gpt_cond_len),
            chunk_length=int(config.gpt_cond_chunk_len))
        speaker_embedding = torch.stack(embeddings).mean(dim=0)
        return Latents(gpt_cond_latent.float().cpu(), speaker_embedding.float().cpu())

    def stream(self, text: str, latents: Latents, language: str, stream_chunk_size: int,
               overlap_samples: int, should_stop: Callable[[], bool],
               **sampling: float) -> Iterator[np.ndarray]:
        """Speak one text chunk, yielding audio pieces as XTTS streams them.

        Args:
          text: One phrase chunk (under ~250 characters for English).
          latents: The voice (see `compute_latents`).
          language: XTTS language code.
          stream_chunk_size: GPT tokens per piece; smaller = earlier first audio, more
            vocoder runs (1 token = 1024 samples at 22.05 kHz, about 46 ms).
          overlap_samples: Cross-fade between consecutive pieces.
          should_stop: Polled after every piece; the generator ends once it is true.
          sampling: temperature, top_k, top_p, repetition_penalty, length_penalty,
            speed (coqui's `inference_stream` arguments).

        Yields:
          1-D int16 arrays at `sample_rate_hz`; the first starts with a 5 ms fade-in
          and the last ends with a 5 ms fade-out.
        """
        torch = self.torch
        generator = self.model.inference_stream(
            text, language, latents.gpt_cond_latent.to(self.device, self.dtype),
            latents.speaker_embedding.to(self.device, torch.float32),
            stream_chunk_size=stream_chunk_size, overlap_wav_len=overlap_samples,
            enable_text_splitting=False, **sampling)
        held = np.zeros(0, dtype=np.float32)
        first = True
        try:
            for piece in generator:
                audio = np.concatenate([held, piece.float().clamp(-1.0, 1.0).cpu().numpy()])
                if first and audio.size:
                    head = min(self._fade_samples, audio.size)
                    audio[:head] *= self._fade_in[:head]
                    first = False
                held = audio[-self._fade_samples:].copy()
                out = audio[: audio.size - held.size]
                if out.size:
                    yield _to_int16(out)
                if should_stop():
                    return
        finally:
            generator.close()
        if held.size:
            held *= self._fade_out[-held.size:]
            yield _to_int16(held)

    def warm_up(self, max_tokens: int = 24) -> float:
        """One short synthesis with neutral latents (CUDA kernels, allocator, caches).

        Generation is capped at `max_tokens` GPT tokens: neutral latents (and random
        test weights) may never produce the stop token.

        Returns:
          Its duration in ms.
        """
        torch, gpt = self.torch, self.model.gpt
        started = time.perf_counter()
        channels = int(self.config.model_args.gpt_n_model_channels)
        neutral = Latents(torch.zeros(1, 32, channels),
                          torch.nn.functional.normalize(torch.ones(1, 512, 1), dim=1))
        cap = gpt.max_gen_mel_tokens
        gpt.max_gen_mel_tokens = min(cap, max_tokens)
        try:
            for _ in self.stream(WARM_UP_TEXT, neutral, "en", 8, 1024, lambda: False):
                pass
        finally:
            gpt.max_gen_mel_tokens = cap
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - started) * 1000.0


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
