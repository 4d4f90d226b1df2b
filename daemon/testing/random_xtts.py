"""Random-weight XTTS-v2 checkpoints, for tests and GPU timings (runs in the XTTS env).

XTTS-v2's weights cannot be fetched by tests, and what a timing measures depends on
the tensor shapes, not their values. So this writes a checkpoint directory in the
layout of the real one (`config.json`, `model.pth`, `vocab.json`) that the daemon
loads through exactly the same code as the real model (`Xtts.load_checkpoint`):

* `TINY`: a 2-layer, 64-channel GPT (about 0.5 M parameters) for CPU tests. The
  HiFi-GAN vocoder keeps its real size (about 18 M parameters): coqui-tts builds it
  with fixed widths in `Xtts.init_models`, and the real loader is what is under test.
* `FULL`: XTTS-v2's real dimensions (from its published config.json: 30 layers, 1024
  channels, 16 heads, 6681 text tokens, 1026 audio tokens), for the GPU benchmark.

The vocabulary is character-level, generated with the `tokenizers` package: the
special tokens coqui's `VoiceBpeTokenizer` requires (`[STOP]`, `[UNK]`, `[SPACE]`,
`[START]`, one `[<lang>]` per language), letters, digits and punctuation, padded
with filler tokens up to the requested size.

Random weights rarely produce the stop token, so generation runs to the length cap
(`max_audio_tokens - 3` tokens; 1 token is about 46 ms of audio).

Usage: python -m daemon.testing.random_xtts OUT_DIR [--size tiny|full] [--seed N]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("[STOP]", "[UNK]", "[SPACE]")
CHARACTERS = tuple("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;\"()")
LANGUAGES = ("en", "pt", "es")
"""Language tokens of the random vocabularies: English and the languages tests speak."""


@dataclass(frozen=True, slots=True)
class XttsDims:
    """Shape of an XTTS GPT (the vocoder and speaker encoder have fixed shapes).

    Attributes:
      gpt_layers: Transformer blocks.
      channels: Model width; a multiple of `heads` and of 4 (GroupNorm groups).
      heads: Attention heads.
      text_tokens: Vocabulary size (at least the specials and characters, ~52).
      max_audio_tokens: Longest audio token sequence; generation stops 3 earlier.
      max_text_tokens: Longest text in tokens.
    """

    gpt_layers: int
    channels: int
    heads: int
    text_tokens: int
    max_audio_tokens: int
    max_text_tokens: int


TINY = XttsDims(gpt_layers=2, channels=64, heads=4, text_tokens=60,
                max_audio_tokens=16, max_text_tokens=402)
"""For CPU tests: at most 13 audio tokens (about 0.6 s of audio) per text chunk."""

FULL = XttsDims(gpt_layers=30, channels=1024, heads=16, text_tokens=6681,
                max_audio_tokens=605, max_text_tokens=402)
"""XTTS-v2's real GPT dimensions (coqui/XTTS-v2 config.json, `model_args`)."""

SIZES = {"tiny": TINY, "full": FULL}


def write_vocab(path: Path, size: int, languages: tuple[str, ...] = ("en",)) -> None:
    """Write a character-level `tokenizers` vocabulary of exactly `size` tokens.

    Raises:
      ValueError: `size` is smaller than the special tokens plus the characters.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = [*SPECIAL_TOKENS, "[START]", *(f"[{lang}]" for lang in languages)]
    tokens = [*SPECIAL_TOKENS, *CHARACTERS, *specials[len(SPECIAL_TOKENS):]]
    if size < len(tokens):
        raise ValueError(f"a vocabulary needs at least {len(tokens)} tokens, got {size}")
    tokens += [f"<filler{i}>" for i in range(size - len(tokens))]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[],
                                     unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(path))


def build_random_xtts(directory: Path, dims: XttsDims = TINY, seed: int = 0):
    """Build a random-weight `Xtts` model (not saved), writing its vocab.json to `directory`.

    Returns:
      (model, config): the coqui `Xtts` in training layout (as a checkpoint stores
      it: call `model.eval()` before inference) and its `XttsConfig`.
    """
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs, XttsAudioConfig

    directory.mkdir(parents=True, exist_ok=True)
    vocab_path = directory / "vocab.json"
    write_vocab(vocab_path, dims.text_tokens, LANGUAGES)
    args = XttsArgs(
        gpt_layers=dims.gpt_layers, gpt_n_model_channels=dims.channels, gpt_n_heads=dims.heads,
        decoder_input_dim=dims.channels, d_vector_dim=512,
        gpt_max_audio_tokens=dims.max_audio_tokens, gpt_max_text_tokens=dims.max_text_tokens,
        gpt_max_prompt_tokens=70, gpt_num_audio_tokens=1026, gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025, gpt_use_perceiver_resampler=True, gpt_code_stride_len=1024,
        input_sample_rate=22050, output_sample_rate=24000, output_hop_length=256,
    )
    # The real config's inference settings (coqui/XTTS-v2 config.json).
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=list(LANGUAGES),
                        temperature=0.75, repetition_penalty=5.0, top_k=50, top_p=0.85,
                        gpt_cond_len=30, gpt_cond_chunk_len=4, max_ref_len=30)
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(vocab_path))
    model.init_models()
    # Mel statistics of a plausible scale: all-ones would leave the GPT's conditioning
    # mels un-normalised (the real checkpoint stores measured values here).
    model.mel_stats.fill_(1.0)
    return model, config


def write_random_xtts(directory: str | Path, dims: XttsDims = TINY, seed: int = 0) -> Path:
    """Write a random-weight XTTS checkpoint directory loadable by `Xtts.load_checkpoint`.

    Args:
      directory: Created if missing; `config.json`, `model.pth` and `vocab.json` are
        (over)written. TINY's model.pth is about 80 MB, FULL's about 1.8 GB.
      dims: GPT shape.
      seed: torch seed of the random weights.

    Returns:
      The directory.
    """
    import torch

    directory = Path(directory)
    model, config = build_random_xtts(directory, dims, seed)
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2), "utf-8")
    return directory


def main(argv: list[str] | None = None) -> None:
    """`python -m daemon.testing.random_xtts DIR`: write a checkpoint, print its folder."""
    parser = argparse.ArgumentParser(
        prog="python -m daemon.testing.random_xtts",
        description="Write a random-weight XTTS-v2 checkpoint directory (tests, GPU timings).")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_random_xtts(args.directory, SIZES[args.size], args.seed)
    print(args.directory)


if __name__ == "__main__":
    main()
