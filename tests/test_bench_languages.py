"""`npc-voice bench languages`: its structure on a few lines (figures: BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.bench.stats import word_error_rate


def test_word_error_rate_counts_substitutions_deletions_and_insertions() -> None:
    assert word_error_rate(["Bom dia, senhor."], ["bom dia senhor"]) == 0.0
    assert word_error_rate(["a b c d"], ["a x c"]) == 0.5  # one substitution, one deletion
    assert word_error_rate(["a b", "c d"], ["a b e", "c d"]) == 0.25  # one insertion


def test_the_voices_benchmark_reports_first_audio_and_rtf(tmp_path: Path) -> None:
    out = tmp_path / "languages.json"
    subprocess.run([sys.executable, "-m", "daemon.bench.languages", "--lines", "3",
                    "--skip-asr", "--json", str(out)], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    assert set(report["voices"]) == {"piper:joe", "hibari:heart"}
    assert report["voices"]["hibari:heart"]["sample_rate_hz"] == 24000
    for figures in report["voices"].values():
        assert figures["first_audio_ms"]["p50"] > 0 and figures["rtf"]["p50"] > 0


def test_the_asr_benchmark_reports_time_and_wer_per_window(tmp_path: Path) -> None:
    out = tmp_path / "asr.json"
    subprocess.run([sys.executable, "-m", "daemon.bench.asr", "--lines", "3",
                    "--windows", "30,10", "--multilingual-model", "", "--json", str(out)],
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    assert set(report["sets"]) == {"english", "english_long"}
    assert report["sets"]["english_long"]["utterances"] == 1
    for entry in report["sets"].values():
        assert set(entry["windows"]) == {"30.0", "10.0"}
        for window in entry["windows"].values():
            assert window["asr_ms"]["p50"] > 0
            assert window["wer"] is not None and window["wer"] < 0.5, window["transcripts"]
