"""LLM micro-benchmark on full-size random Qwen2.5 GGUFs, and the VRAM budget of both tiers.

What a GPU timing measures does not depend on the weights' values (DESIGN.md,
"Models"), so `run_llm_bench` writes random GGUFs with Qwen2.5-1.5B's and -14B's real
dimensions (daemon.testing.random_gguf), loads them the way the daemon does (full offload,
flash attention, explicit n_ctx and threads) and times a fixed number of tokens: time
to first token for a fixed prompt, then tokens/s. `small=True` uses a tiny body with the
real vocabulary, for a smoke run on a CPU.

`vram_table` is the arithmetic behind the README's VRAM budget: weights = parameters x
bits per weight (llama.cpp's own bits-per-weight figures per quantisation mix) plus the
F16 KV cache at n_ctx plus a compute-buffer estimate, per model, plus one CUDA context.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.testing.random_gguf import (
    QWEN2_5_1_5B,
    QWEN2_5_14B,
    SMALL,
    Quant,
    Qwen2Dims,
    write_qwen2_gguf,
)

_LOGGER = logging.getLogger(__name__)

MODELS: dict[str, Qwen2Dims] = {"1.5b": QWEN2_5_1_5B, "14b": QWEN2_5_14B}

# Bits per weight of llama.cpp's quantisation mixes, from llama.cpp tools/quantize/README.md
# (measured on Llama-2-7B; Qwen2.5 GGUF file sizes agree within ~1-5 %); Q8_0 and F16
# follow from their block layouts (34 bytes per 32 weights; 2 bytes per weight).
BITS_PER_WEIGHT: dict[str, float] = {
    "q2_k": 3.35, "q3_k_m": 3.91, "q4_k_m": 4.84, "q5_k_m": 5.68, "q6_k": 6.56,
    "q8_0": 8.5, "f16": 16.0,
}
CUDA_CONTEXT_GB = 0.5
"""CUDA context, cuBLAS workspace and llama.cpp's own buffers of one process (estimate)."""
XTTS_GB = 2.0
"""XTTS-v2 in FP16 with PyTorch's CUDA context, if it shares the GPU (estimate)."""


@dataclass
class LlmTiming:
    """One model's figures.

    Attributes:
      model: "1.5b", "14b" or "small".
      quant: Weight type of the random GGUF.
      file_gb: Size of the GGUF, in 1e9 bytes.
      load_s: Time to load (and offload) the model.
      prompt_tokens: Tokens in the timed prompt.
      ttft_ms: Median time to the first generated token (prefill of the prompt + 1 token).
      tokens_per_s: Median generation speed after the first token.
      generated_tokens: Tokens generated per repeat.
      vram_mib: GPU memory taken by loading it (nvidia-smi, None without a GPU).
    """

    model: str
    quant: str
    file_gb: float
    load_s: float
    prompt_tokens: int
    ttft_ms: float
    tokens_per_s: float
    generated_tokens: int
    vram_mib: float | None


def gpu_memory_used_mib() -> float | None:
    """Memory in use on GPU 0 according to nvidia-smi, or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def ensure_model(folder: Path, name: str, dims: Qwen2Dims, quant: Quant) -> Path:
    """The random GGUF for `name` in `folder`, written once and reused."""
    path = folder / f"random-qwen2.5-{name}-{quant}.gguf"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_qwen2_gguf(partial, dims, quant)
        partial.rename(path)
        _LOGGER.info("wrote %s (%.1f GB) in %.0f s", path.name, path.stat().st_size / 1e9,
                     time.perf_counter() - started)
    return path


def time_model(path: Path, name: str, quant: str, *, n_ctx: int, n_gpu_layers: int,
               flash_attn: bool, n_threads: int, prompt_tokens: int, generated_tokens: int,
               repeats: int) -> LlmTiming:
    """Load `path` like the daemon does and time prefill + generation.

    The prompt is made of word tokens (first token varied per repeat, so nothing comes
    from the KV cache); generation is greedy and ignores end-of-turn tokens, so every
    repeat generates exactly `generated_tokens`.
    """
    from llama_cpp import Llama  # noqa: PLC0415

    vram_before = gpu_memory_used_mib()
    started = time.perf_counter()
    llama = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx),
                  n_threads=n_threads, n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers,
                  flash_attn=flash_attn, verbose=False)
    load_s = time.perf_counter() - started
    vram_after = gpu_memory_used_mib()
    first_word = 5 + 256
    vocab = llama.n_vocab()
    ttfts, speeds = [], []
    for repeat in range(repeats + 1):  # the first round warms up (kernels, caches)
        prompt = [first_word + (repeat * 31 + i * 7919) % (vocab - first_word)
                  for i in range(prompt_tokens)]
        begin = time.perf_counter()
        tokens = llama.generate(prompt, temp=0.0)
        next(tokens)
        first = time.perf_counter()
        for _ in range(generated_tokens - 1):
            next(tokens)
        end = time.perf_counter()
        tokens.close()
        if repeat:
            ttfts.append((first - begin) * 1000)
            speeds.append((generated_tokens - 1) / (end - first))
    del llama
    return LlmTiming(
        model=name, quant=quant, file_gb=round(path.stat().st_size / 1e9, 2),
        load_s=round(load_s, 2), prompt_tokens=prompt_tokens,
        ttft_ms=round(statistics.median(ttfts), 1),
        tokens_per_s=round(statistics.median(speeds), 1), generated_tokens=generated_tokens,
        vram_mib=(round(vram_after - vram_before) if vram_before is not None
                  and vram_after is not None else None))


def run_llm_bench(folder: Path, *, models: list[str], quant: Quant, small: bool, n_ctx: int,
                  n_gpu_layers: int, flash_attn: bool, n_threads: int, prompt_tokens: int,
                  generated_tokens: int, repeats: int) -> dict[str, object]:
    """Write (once) and time each model; returns the JSON-ready report."""
    import llama_cpp  # noqa: PLC0415

    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    if not gpu and n_gpu_layers:
        _LOGGER.warning("this llama-cpp-python build cannot offload to a GPU: the timings "
                        "are CPU timings (see README: installing llama-cpp-python with CUDA)")
    chosen = {"small": SMALL} if small else {name: MODELS[name] for name in models}
    timings = []
    for name, dims in chosen.items():
        path = ensure_model(folder, name, dims, quant)
        timings.append(time_model(path, name, quant, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                                  flash_attn=flash_attn, n_threads=n_threads,
                                  prompt_tokens=prompt_tokens,
                                  generated_tokens=generated_tokens, repeats=repeats))
        _LOGGER.info("%s", timings[-1])
    return {"gpu_offload": gpu, "n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers,
            "flash_attn": flash_attn, "n_threads": n_threads,
            "timings": [asdict(t) for t in timings]}


def model_gb(dims: Qwen2Dims, quant: str, n_ctx: int, n_ubatch: int = 512) -> dict[str, float]:
    """Estimated GPU memory of one fully offloaded context of `dims`, in 1e9 bytes.

    weights: parameters x bits per weight; kv: F16 K and V for n_ctx tokens; compute:
    llama.cpp's compute buffer, dominated by the logits of one micro-batch
    (n_ubatch x vocab x 4 bytes) plus activations (estimate).
    """
    weights = dims.parameter_count() * BITS_PER_WEIGHT[quant] / 8 / 1e9
    kv = dims.kv_cache_bytes_per_token() * n_ctx / 1e9
    compute = n_ubatch * (dims.vocab_size + 16 * dims.hidden_size) * 4 / 1e9
    return {"weights": round(weights, 2), "kv": round(kv, 2), "compute": round(compute, 2),
            "total": round(weights + kv + compute, 2)}


def vram_table(n_ctx: int, fast_quants: tuple[str, ...] = ("q4_k_m", "q8_0"),
               narrative_quants: tuple[str, ...] = ("q2_k", "q3_k_m", "q4_k_m", "q5_k_m",
                                                    "q6_k", "q8_0")) -> dict[str, object]:
    """Both tiers on one GPU: the estimate for each pair of quantisations.

    Returns:
      {"n_ctx", "models": {name: {quant: model_gb}}, "pairs": [{fast, narrative,
      total_gb, with_xtts_gb, fits: {"8": bool, ...}, fits_with_xtts: {...}}]}, where
      "8" is an 8 GiB card.
    """
    models = {"1.5b": {q: model_gb(QWEN2_5_1_5B, q, n_ctx) for q in fast_quants},
              "14b": {q: model_gb(QWEN2_5_14B, q, n_ctx) for q in narrative_quants}}
    cards_gb = {str(gib): gib * 2**30 / 1e9 * 0.95 for gib in (8, 16, 24)}  # 5 % kept free
    pairs = []
    for fast in fast_quants:
        for narrative in narrative_quants:
            total = (models["1.5b"][fast]["total"] + models["14b"][narrative]["total"]
                     + CUDA_CONTEXT_GB)
            pairs.append({"fast": fast, "narrative": narrative, "total_gb": round(total, 2),
                          "with_xtts_gb": round(total + XTTS_GB, 2),
                          "fits": {card: total <= gb for card, gb in cards_gb.items()},
                          "fits_with_xtts": {card: total + XTTS_GB <= gb
                                             for card, gb in cards_gb.items()}})
    return {"n_ctx": n_ctx, "units": "GB = 1e9 bytes; cards are 8/16/24 GiB, 5 % kept free",
            "cuda_context_gb": CUDA_CONTEXT_GB, "xtts_gb": XTTS_GB, "models": models,
            "pairs": pairs}
