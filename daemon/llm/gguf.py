"""The GGUF an LLM tier loads: the bundled SmolLM2 is re-quantized to Q8_0, once.

`llm.model = "smollm2"` (or "smollm2:q8_0") loads a Q8_0 copy of the bundled Q4_1
file, written by llama.cpp's own quantizer into the model cache on first use;
"smollm2:q4_1" loads the file as shipped. Every other name resolves as
`daemon.models.resolve_llm` says.

Why: Q4_1 is a type that llama.cpp's fast CPU matrix kernels for prompt batches do not
take (llamafile's tinyBLAS, ggml/src/ggml-cpu/llamafile/sgemm.cpp: F32, F16, Q8_0, Q4_0,
Q5_0 and IQ4_NL on x86), so its prefill runs on the generic per-row dot products.
`npc-voice bench quant` on the 2-core AMD EPYC dev box, one thread, each corpus line
after its NPC's cached persona (BENCHMARKS.md, "Weights"): prefill and first token p50
142 -> 94 ms (p95 165 -> 107), decoding 16.6 -> 16.5 ms per token. Q8_0 holds Q4_1's
values to within 1/254 of each 32-weight block's largest magnitude (Q4_1's own step is
1/15 of the block's range), so the model barely changes: KL divergence 0.0027 nats per
token from an F16 copy of the same Q4_1 weights (Q4_1 itself: 0.0018), against 0.26 for
Q4_0 and 0.13 for IQ4_NL, which re-round every weight to a 4-bit grid again. The cost:
47 MB more file, 44 MB more resident memory.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from pathlib import Path

import numpy as np

from daemon.models import BUNDLED_LLM, models_dir, replaced_atomically, resolve_llm

_LOGGER = logging.getLogger(__name__)

QUANT_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "f16": "LLAMA_FTYPE_MOSTLY_F16",
                "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "iq4_nl": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
                "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0", "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1"}
"""Types `requantized` writes: name -> llama.cpp's `llama_ftype` constant. The daemon loads
Q8_0; `npc-voice bench quant` compares it with the others (F16 as the reference)."""

_QUANTIZE_THREADS = 2


def llm_gguf(model: str, directory: Path | None = None) -> Path:
    """The GGUF file to load for `llm.model`.

    Args:
      model: As `daemon.models.resolve_llm` takes it; "smollm2" and "smollm2:q8_0" give
        the Q8_0 copy of the bundled model (written on first use), "smollm2:q4_1" the
        file as shipped.
      directory: Model cache (default: `daemon.models.models_dir()`).

    Returns:
      A local GGUF path. When the cache cannot be written, the shipped Q4_1 file, with a
      warning saying why and what it costs.

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
      ValueError: llama.cpp could not re-quantize the bundled file.
    """
    path = resolve_llm(model, directory)  # for the bundled model: the shipped file
    base, _, quant = model.partition(":")
    if base != BUNDLED_LLM or quant == "q4_1":
        return path
    shipped = path
    target = (directory or models_dir()) / BUNDLED_LLM / shipped.name.replace("Q4_1", "Q8_0")
    try:
        return requantized(shipped, target, "q8_0")
    except OSError as error:
        _LOGGER.warning("could not write the Q8_0 copy of %s into %s (%s); loading the "
                        "shipped Q4_1, whose prompt prefill is about a third slower "
                        "(set NPC_VOICE_MODELS to a writable folder)", shipped.name,
                        target.parent, error)
        return shipped


def _source_stamp(source: Path, llama_cpp_version: str) -> dict[str, object]:
    # Size and modification time, not a hash: hashing 100 MB would cost each start
    # ~0.2 s, and a reinstalled package writes a new file (new mtime) anyway.
    stat = source.stat()
    return {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "llama_cpp_python": llama_cpp_version}


def requantized(source: Path, target: Path, quant: str) -> Path:
    """`source` re-quantized to `quant` at `target`, written on first use only.

    A stamp beside `target` (`<target>.source.json`) records the source's size and
    modification time and the llama-cpp-python version; while they match, `target` is
    reused as is. The file is written under a temporary name in the same folder and
    renamed into place, so a daemon started meanwhile never loads half a model.

    Args:
      source: A GGUF file (any type llama.cpp can read).
      target: Where the re-quantized GGUF goes (its folder is created).
      quant: A key of `QUANT_FTYPES` ("q8_0").

    Returns:
      `target`.

    Raises:
      KeyError: `quant` is not one this module writes.
      OSError: the folder cannot be written (permissions, disk full).
      ValueError: llama.cpp could not read `source` or write the result.
    """
    import llama_cpp  # noqa: PLC0415 - loads the native library; only when needed

    ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    stamp_path = target.with_name(target.name + ".source.json")
    stamp = _source_stamp(source, llama_cpp.__version__)
    if target.is_file() and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return target
        except (OSError, ValueError):
            pass  # an unreadable stamp: write the file again
    target.parent.mkdir(parents=True, exist_ok=True)
    _LOGGER.info("re-quantizing %s to %s once, into %s (a second or two)", source.name,
                 quant.upper(), target)
    started = time.perf_counter()
    with replaced_atomically(target) as temporary:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True  # the source is quantized already (Q4_1)
        params.nthread = _QUANTIZE_THREADS
        # llama.cpp logs each tensor through llama-cpp-python's logger; errors only.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        status = llama_cpp.llama_model_quantize(str(source).encode(),
                                                str(temporary).encode(), ctypes.byref(params))
        if status != 0 or temporary.stat().st_size == 0:
            raise ValueError(f"llama.cpp could not re-quantize {source} to {quant} "
                             f"(status {status})")
    with replaced_atomically(stamp_path) as stamp_temporary:
        stamp_temporary.write_text(json.dumps(stamp) + "\n")
    _LOGGER.info("re-quantized %s to %s in %.0f ms (%.0f MB)", source.name, quant.upper(),
                 (time.perf_counter() - started) * 1000, target.stat().st_size / 1e6)
    return target


def next_token_log_probs(path: Path, text: str, max_tokens: int = 1024,
                         cache_type_k: str = "f16") -> tuple[list[int], np.ndarray]:
    """How a GGUF predicts each next token of `text` (to compare two copies of a model).

    Args:
      path: The GGUF.
      text: What is read.
      max_tokens: Tokens of `text` read.
      cache_type_k: Type of the KV cache's keys, as `llm.cache_type_k` ("f16", "q8_0").

    Returns:
      (tokens, log_probs): the first `max_tokens` tokens of `text`, and float64
      (len(tokens), vocabulary) natural-log probabilities, row i being the
      distribution after tokens[: i + 1].
    """
    import llama_cpp  # noqa: PLC0415 - loads the native library; only when needed

    from daemon.llm.llama import KV_CACHE_TYPES  # noqa: PLC0415 - imports llama_cpp too

    llama = llama_cpp.Llama(model_path=str(path), n_ctx=max_tokens + 8, n_batch=512,
                            n_threads=2, logits_all=True, verbose=False,
                            type_k=KV_CACHE_TYPES[cache_type_k])
    tokens = llama.tokenize(text.encode())[:max_tokens]
    llama.eval(tokens)
    logits = np.array(llama.scores[:len(tokens)], dtype=np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    return tokens, logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def kl_divergence(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean KL(reference || other) per token, in nats, of two `next_token_log_probs`."""
    return float((np.exp(reference) * (reference - other)).sum(axis=-1).mean())
