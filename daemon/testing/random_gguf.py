"""Random-weight GGUF models of the Qwen2 architecture, for tests and GPU timings.

Qwen2.5 weights cannot be fetched by tests, and what a GPU timing measures does not
depend on the weights' values (DESIGN.md, "Models"). So this writes GGUF files of the
real `qwen2` architecture with the `gguf` package (the writer of llama.cpp's
`gguf-py`): tiny ones that load in milliseconds for tests, and full-size ones with
Qwen2.5-1.5B's or -14B's dimensions for the GPU micro-benchmark.

Tiny models (F32) get a nudge so that they "write" words: one embedding dimension is
constant, and the output matrix maps it to high logits for a few English word tokens
and low ones for control and byte tokens. Sampled text is then a stream of words and
punctuation (" the forge. I will fix it") that has sentence boundaries and almost never
an end-of-turn token, which is what the opener and hand-off tests need.

Full-size models (F16, Q8_0 or Q4_K) share one random buffer between all their tensors
(views, not copies), so writing a 14B model needs about as much RAM as its largest
tensor, and quantised blocks are written raw (random quants with a small, fixed scale)
rather than quantised from floats, which would take minutes in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Quant = Literal["f32", "f16", "q8_0", "q4_k"]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Qwen2.5's prompt format (ChatML). Qwen's own template adds tool blocks and a default
system prompt; with a system message, as the daemon always sends, it renders the same."""

_SPECIALS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
BOS_ID, EOS_ID = 1, 4
WORDS = ("▁the", "▁a", "▁sword", "▁forge", "▁fire", "▁iron", "▁good", "▁day", "▁I",
         "▁you", "▁will", "▁fix", "▁it", "▁my", "▁friend", "▁steel")
PUNCTUATION = (".", ",", "!", "?")


@dataclass(frozen=True, slots=True)
class Qwen2Dims:
    """Shape of a Qwen2 model.

    Attributes:
      hidden_size: Embedding width.
      layers: Transformer blocks.
      heads: Query heads (head size = hidden_size / heads).
      kv_heads: Key/value heads (grouped-query attention).
      ffn_size: Feed-forward inner width.
      vocab_size: Tokens; at least the specials, 256 byte tokens and the word list.
      context_length: Training context stated in the file (n_ctx 0 would use it).
      tied_embeddings: The output matrix is the token embedding (no `output.weight`).
    """

    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    ffn_size: int
    vocab_size: int
    context_length: int = 32768
    tied_embeddings: bool = False

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.heads

    def parameter_count(self) -> int:
        """Weights and biases (1.54e9 for Qwen2.5-1.5B, 14.77e9 for Qwen2.5-14B)."""
        e, kv = self.hidden_size, self.kv_heads * self.head_size
        per_layer = 2 * e + e * e + 2 * kv * e + e * e + 3 * e * self.ffn_size + e + 2 * kv
        matrices = 1 if self.tied_embeddings else 2
        return self.layers * per_layer + matrices * self.vocab_size * e + e

    def kv_cache_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """K and V of one token over all layers (F16 cache: 2 bytes per value)."""
        return 2 * self.layers * self.kv_heads * self.head_size * bytes_per_value


# Real dimensions (Qwen2.5 config.json: hidden_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, intermediate_size, vocab_size).
QWEN2_5_1_5B = Qwen2Dims(1536, 28, 12, 2, 8960, 151936, tied_embeddings=True)
QWEN2_5_14B = Qwen2Dims(5120, 48, 40, 8, 13824, 151936)
TINY = Qwen2Dims(64, 2, 4, 2, 128, len(_SPECIALS) + 256 + len(WORDS) + len(PUNCTUATION), 2048)
SMALL = Qwen2Dims(256, 4, 4, 2, 512, 151936, 4096)
"""For a CPU smoke run of the GPU benchmark: real vocabulary, small body."""


def _vocab(size: int) -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType  # noqa: PLC0415 - gguf is a test/bench dependency

    tokens = list(_SPECIALS)
    types = [TokenType.UNKNOWN] + [TokenType.CONTROL] * (len(_SPECIALS) - 1)
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [TokenType.BYTE] * 256
    tokens += list(WORDS) + list(PUNCTUATION)
    types += [TokenType.NORMAL] * (len(WORDS) + len(PUNCTUATION))
    if size < len(tokens):
        raise ValueError(f"vocab_size {size} is below the {len(tokens)} tokens every model has")
    filler = size - len(tokens)
    tokens += [f"▁w{i}" for i in range(filler)]
    types += [TokenType.NORMAL] * filler
    scores = [0.0] * len(_SPECIALS) + [0.0] * 256 + [-float(i) for i in range(size - 261)]
    return tokens, scores, [int(t) for t in types]


class _Weights:
    """Makes the tensors: fresh nudged F32 arrays, or views of one shared random buffer."""

    def __init__(self, dims: Qwen2Dims, quant: Quant, seed: int) -> None:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: PLC0415

        self._rng = np.random.default_rng(seed)
        self._quant = quant
        self._qtype = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16,
                       "q8_0": GGMLQuantizationType.Q8_0, "q4_k": GGMLQuantizationType.Q4_K}[quant]
        self._block, self._block_bytes = GGML_QUANT_SIZES[self._qtype]
        largest = max(dims.vocab_size * dims.hidden_size, dims.ffn_size * dims.hidden_size)
        self._shared: np.ndarray | None = None
        if quant == "f16":
            self._shared = (self._rng.standard_normal(largest, dtype=np.float32) * 0.02
                            ).astype(np.float16)
        elif quant in ("q8_0", "q4_k"):
            blocks = largest // self._block + 1
            raw = self._rng.integers(0, 256, size=(blocks, self._block_bytes), dtype=np.uint8)
            # Scales are the first f16 fields of a block (Q4_K: d then dmin): small and
            # finite, so activations stay finite through every layer.
            scale_fields = 1 if quant == "q8_0" else 2
            raw[:, : 2 * scale_fields] = np.tile(
                np.array([0.002] * scale_fields, dtype=np.float16).view(np.uint8), (blocks, 1))
            self._shared = raw.reshape(-1)

    def matrix(self, rows: int, cols: int) -> tuple[np.ndarray, object | None]:
        """A (rows, cols) weight and its raw GGML type (None = from the numpy dtype)."""
        if self._quant == "f32":
            return (self._rng.standard_normal((rows, cols), dtype=np.float32)
                    * np.float32(1.0 / np.sqrt(cols))), None
        assert self._shared is not None
        if self._quant == "f16":
            return self._shared[: rows * cols].reshape(rows, cols), None
        if cols % self._block:
            raise ValueError(f"{self._quant} needs rows that are multiples of {self._block} "
                             f"values; got {cols}")
        row_bytes = cols // self._block * self._block_bytes
        return self._shared[: rows * row_bytes].reshape(rows, row_bytes), self._qtype

    def vector(self, size: int, value: float | None = None) -> np.ndarray:
        """A 1-D F32 tensor (norms, biases): `value` everywhere, or small random."""
        if value is not None:
            return np.full(size, value, dtype=np.float32)
        return self._rng.standard_normal(size, dtype=np.float32) * np.float32(0.02)


def _nudge_towards_words(embd: np.ndarray, output: np.ndarray) -> None:
    """Make a tiny F32 model write words (see the module docstring)."""
    embd[:, 0] = 4.0  # a constant direction every hidden state keeps
    first_word = len(_SPECIALS) + 256
    output[:, 0] = -4.0  # specials and bytes: practically never sampled
    output[first_word:first_word + len(WORDS), 0] = 1.5
    output[first_word + len(WORDS):, 0] = 1.2  # punctuation: now and then


def write_qwen2_gguf(path: str | Path, dims: Qwen2Dims = TINY, quant: Quant = "f32",
                     seed: int = 0, chat_template: str = CHATML_TEMPLATE) -> Path:
    """Write a random-weight GGUF of the `qwen2` architecture.

    Args:
      path: File to write (its folder must exist).
      dims: Model shape (`TINY`, `SMALL`, `QWEN2_5_1_5B`, `QWEN2_5_14B` or your own).
      quant: Weight type of the matrices: "f32" (nudged to write words: tests),
        "f16", "q8_0" or "q4_k" (random, for timings; q4_k needs widths that are
        multiples of 256). Norms and biases are always F32.
      seed: Random seed: the same arguments write the same file.
      chat_template: Jinja chat template stored in the file.

    Returns:
      The path written.

    Raises:
      ImportError: the `gguf` package is not installed (`pip install gguf`).
      ValueError: a width does not fit the quantisation's block size.
    """
    import gguf  # noqa: PLC0415 - a test/bench dependency, not the daemon's

    path = Path(path)
    weights = _Weights(dims, quant, seed)
    e, kv = dims.hidden_size, dims.kv_heads * dims.head_size
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(f"random qwen2 {e}x{dims.layers} {quant}")
    writer.add_context_length(dims.context_length)
    writer.add_embedding_length(e)
    writer.add_block_count(dims.layers)
    writer.add_feed_forward_length(dims.ffn_size)
    writer.add_head_count(dims.heads)
    writer.add_head_count_kv(dims.kv_heads)
    writer.add_rope_dimension_count(dims.head_size)
    writer.add_rope_freq_base(1_000_000.0)  # Qwen2.5's rope_theta
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "q4_k": gguf.LlamaFileType.MOSTLY_Q4_K_S}[quant])
    tokens, scores, types = _vocab(dims.vocab_size)
    writer.add_tokenizer_model("llama")  # SentencePiece with byte fallback: any text works
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template)

    def add(name: str, tensor: tuple[np.ndarray, object | None] | np.ndarray) -> None:
        array, raw_type = tensor if isinstance(tensor, tuple) else (tensor, None)
        writer.add_tensor(name, array, raw_dtype=raw_type)  # type: ignore[arg-type]

    embd = weights.matrix(dims.vocab_size, e)
    # Tied: llama.cpp's qwen2 uses token_embd as the output matrix when output.weight
    # is missing (as in Qwen2.5-1.5B's own GGUFs).
    output = None if dims.tied_embeddings else weights.matrix(dims.vocab_size, e)
    if quant == "f32" and output is not None:
        _nudge_towards_words(embd[0], output[0])
    add("token_embd.weight", embd)
    add("output_norm.weight", weights.vector(e, 1.0))
    if output is not None:
        add("output.weight", output)
    for i in range(dims.layers):
        block = f"blk.{i}"
        add(f"{block}.attn_norm.weight", weights.vector(e, 1.0))
        add(f"{block}.attn_q.weight", weights.matrix(e, e))
        add(f"{block}.attn_q.bias", weights.vector(e))
        add(f"{block}.attn_k.weight", weights.matrix(kv, e))
        add(f"{block}.attn_k.bias", weights.vector(kv))
        add(f"{block}.attn_v.weight", weights.matrix(kv, e))
        add(f"{block}.attn_v.bias", weights.vector(kv))
        add(f"{block}.attn_output.weight", weights.matrix(e, e))
        add(f"{block}.ffn_norm.weight", weights.vector(e, 1.0))
        add(f"{block}.ffn_gate.weight", weights.matrix(dims.ffn_size, e))
        add(f"{block}.ffn_up.weight", weights.matrix(dims.ffn_size, e))
        add(f"{block}.ffn_down.weight", weights.matrix(e, dims.ffn_size))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
