"""The two-tier benchmark's arithmetic and its LLM timing loop (on a tiny GGUF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_protocol.client import TurnResult
from bridge_protocol.messages import Done, TurnTimings
from daemon.bench.llm import model_gb, time_model, vram_table
from daemon.bench.tiers import bench_config_text, summary, turn_figures
from daemon.config_file import parse_config
from daemon.testing.random_gguf import QWEN2_5_1_5B, QWEN2_5_14B, TINY, write_qwen2_gguf

RATE_HZ = 1000  # one sample per ms keeps the arithmetic readable


def two_tier_result(arrivals_s: list[float], chunks: list[int], samples: int) -> TurnResult:
    result = TurnResult(turn_id=1, sent_at=0.0, sample_rate_hz=RATE_HZ)
    result.terminal = Done(turn_id=1, block_count=len(arrivals_s),
                           sample_count=samples * len(arrivals_s),
                           timings=TurnTimings(handoff_chunk_index=2))
    result.subtitles = ["Ah,", "welcome.", "I can fix it."]
    result.block_arrivals = [(t, samples) for t in arrivals_s]
    result.pcm = bytearray(2 * samples * len(arrivals_s))
    return result


def test_the_handoff_gap_is_how_late_the_continuation_starts_playing() -> None:
    # 100 ms blocks; playback starts at 0.1 s + 240 ms pre-buffer = 0.34 s, so the third
    # block (the continuation's first) is due at 0.54 s: it arrives at 0.60 s.
    arrivals = [0.10, 0.15, 0.60, 0.62]
    result = two_tier_result(arrivals, [0, 1, 2, 2], samples=100)
    blocks = [(t, chunk, 100) for t, chunk in zip(arrivals, [0, 1, 2, 2], strict=True)]
    figures = turn_figures(result, blocks, prebuffer_ms=240)
    assert figures["handoff_gap_ms"] == pytest.approx(60.0)
    assert figures["continuation_first_audio_ms"] == pytest.approx(600.0)
    assert figures["underruns_after_handoff"] == 1  # the fourth, due at 0.64 s, is on time
    assert figures["opener"] == "Ah, welcome."
    seamless = [(t - 0.2 if i >= 2 else t, c, s) for i, (t, c, s) in enumerate(blocks)]
    assert turn_figures(result, seamless, prebuffer_ms=240)["handoff_gap_ms"] == 0.0
    stats = summary([figures, turn_figures(result, seamless, prebuffer_ms=240)])
    assert stats["turns_with_a_gap"] == 1 and stats["turns_with_handoff"] == 2


def test_the_generated_bench_configs_are_valid() -> None:
    early = parse_config(bench_config_text("two-tier"))
    late = parse_config(bench_config_text("two-tier-late"))
    assert early.llm_narrative is not None and early.llm_narrative.narrative_early_start
    assert late.llm_narrative is not None and not late.llm_narrative.narrative_early_start
    assert parse_config(bench_config_text("single")).llm_narrative is None


def test_the_vram_budget_follows_parameters_bits_and_kv_cache() -> None:
    assert QWEN2_5_1_5B.parameter_count() == pytest.approx(1.54e9, rel=0.01)
    assert QWEN2_5_14B.parameter_count() == pytest.approx(14.7e9, rel=0.01)
    assert QWEN2_5_14B.kv_cache_bytes_per_token() == 48 * 8 * 128 * 2 * 2
    # Q4_K_M weights match the published file size of Qwen2.5-14B-Instruct-Q4_K_M (8.99 GB).
    assert model_gb(QWEN2_5_14B, "q4_k_m", 4096)["weights"] == pytest.approx(8.99, rel=0.02)
    pairs = {(p["fast"], p["narrative"]): p for p in vram_table(4096)["pairs"]}
    assert not any(p["fits"]["8"] for p in pairs.values())
    assert pairs[("q8_0", "q4_k_m")]["fits_with_xtts"]["16"]
    assert not pairs[("q8_0", "q8_0")]["fits"]["16"]
    assert pairs[("q8_0", "q8_0")]["fits_with_xtts"]["24"]


def test_the_llm_timing_loop_runs_on_a_tiny_gguf(tmp_path: Path) -> None:
    path = write_qwen2_gguf(tmp_path / "tiny.gguf", TINY)
    timing = time_model(path, "tiny", "f32", n_ctx=256, n_gpu_layers=0, flash_attn=False,
                        n_threads=1, prompt_tokens=16, generated_tokens=8, repeats=1)
    assert timing.prompt_tokens == 16 and timing.generated_tokens == 8
    assert timing.ttft_ms > 0 and timing.tokens_per_s > 0
