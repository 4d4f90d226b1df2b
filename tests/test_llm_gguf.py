"""The bundled SmolLM2 runs as a Q8_0 copy written once by llama.cpp's quantizer.

Real llama.cpp throughout: the copy is written by `llama_model_quantize` from the
shipped Q4_1 file and read back by llama.cpp.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import llama_cpp
import pytest

from daemon.bench.quant import main as quant_bench
from daemon.bench.ttfa import load_corpus
from daemon.llm.gguf import kl_divergence, llm_gguf, next_token_log_probs, requantized
from daemon.models import ModelNotFoundError, bundled_llm_path


def file_type(path: Path) -> int:
    """The GGUF's `general.file_type` (a `llama_ftype`), as llama.cpp reads it."""
    llama = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return int(llama.metadata["general.file_type"])


def test_the_bundled_model_loads_as_a_q8_0_copy_written_once(tmp_path: Path) -> None:
    path = llm_gguf("smollm2", tmp_path)
    assert path.parent == tmp_path / "smollm2" and "smollm" in path.name.lower()
    assert file_type(path) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a shared cache: not mkstemp's 0600
    assert file_type(bundled_llm_path()) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1
    written = path.stat().st_mtime_ns
    assert llm_gguf("smollm2:q8_0", tmp_path) == path
    assert path.stat().st_mtime_ns == written  # reused, not written again
    assert llm_gguf("smollm2:q4_1", tmp_path) == bundled_llm_path()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_changed_source_is_re_quantized(tmp_path: Path) -> None:
    source = tmp_path / "SmolLM2.Q4_1.gguf"
    shutil.copyfile(bundled_llm_path(), source)
    target = tmp_path / "out" / "SmolLM2.Q8_0.gguf"
    requantized(source, target, "q8_0")
    first = target.stat().st_mtime_ns
    requantized(source, target, "q8_0")
    assert target.stat().st_mtime_ns == first
    later = source.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(later, later))  # as a reinstalled package's new file
    requantized(source, target, "q8_0")
    assert target.stat().st_mtime_ns != first
    assert file_type(target) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0


def test_an_unwritable_cache_loads_the_shipped_file_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="daemon.llm.gguf"):
        assert llm_gguf("smollm2", cache) == bundled_llm_path()
    assert "could not write the Q8_0 copy" in caplog.text
    assert "NPC_VOICE_MODELS" in caplog.text


def test_an_unknown_weight_type_of_the_bundled_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"runs as q8_0 or q4_1, not 'q5_k'"):
        llm_gguf("smollm2:q5_k", tmp_path)


def test_the_q8_0_copy_predicts_what_the_shipped_weights_predict(tmp_path: Path) -> None:
    """Q8_0 re-rounds Q4_1's values on a grid ~8x finer: next-token distributions stay put.

    Measured (`npc-voice bench quant`, BENCHMARKS.md "Weights"): KL 0.0027 nats per
    token from an F16 copy of the Q4_1 weights for Q8_0, 0.26 for Q4_0 (a 4-bit grid
    again), which these bounds tell apart.
    """
    text = "\n".join(line for _, line in load_corpus()) * 3
    _, shipped = next_token_log_probs(bundled_llm_path(), text, max_tokens=512)
    _, copy = next_token_log_probs(llm_gguf("smollm2", tmp_path), text, max_tokens=512)
    _, coarse = next_token_log_probs(requantized(bundled_llm_path(), tmp_path / "q4_0.gguf",
                                                 "q4_0"), text, max_tokens=512)
    assert kl_divergence(shipped, copy) < 0.02
    assert kl_divergence(shipped, coarse) > 0.1  # the measure can tell a worse copy
    agreement = (shipped.argmax(-1) == copy.argmax(-1)).mean()
    assert agreement > 0.9


def test_q8_0_keys_barely_move_the_predictions(tmp_path: Path) -> None:
    """`llm.cache_type_k = "q8_0"`: keys rounded to 8 bits per value.

    Measured (`npc-voice bench quant --cache-types-k f16,q8_0`, BENCHMARKS.md "Memory"):
    KL from the F16 weights 0.0032 nats per token with Q8_0 keys, 0.0027 with F16. Here
    the copy read with Q8_0 keys stays within the bound Q8_0 weights meet against Q4_1's
    (the test above); Q4_0 weights (its control) are five times past it.
    """
    text = "\n".join(line for _, line in load_corpus()) * 3
    model = llm_gguf("smollm2", tmp_path)
    _, f16_keys = next_token_log_probs(model, text, max_tokens=512)
    _, q8_0_keys = next_token_log_probs(model, text, max_tokens=512, cache_type_k="q8_0")
    assert 0 < kl_divergence(f16_keys, q8_0_keys) < 0.02  # > 0: the keys were quantized
    assert (f16_keys.argmax(-1) == q8_0_keys.argmax(-1)).mean() > 0.9


def test_bench_quant_names_an_unknown_key_type() -> None:
    with pytest.raises(SystemExit, match=r"unknown key type\(s\) q4_0; known: f16, q8_0"):
        quant_bench(["--cache-types-k", "q4_0"])
