"""`npc-voice bench` end to end on a tiny run, and its pure parts.

The end-to-end test runs the real command in its own process (a real daemon, the
real naive pipeline, two load levels) with short replies, then checks the structure
of what it wrote: the JSON sections and PNG files. It never checks a figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.bench import peer_libraries
from daemon.bench.configs import config_text_with, parse_setting
from daemon.bench.stats import KEPT_MILESTONES, SEGMENTS
from daemon.bench.ttfa import load_corpus, parse_clients, select_modes
from tests.support.configs import write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_command_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    config = tmp_path / "bench.toml"
    write_config(config, llm={"max_reply_tokens": 24})
    out = tmp_path / "results"
    command = [sys.executable, "-m", "daemon", "--log-level", "WARNING", "bench",
               "--config", str(config), "--turns", "2", "--warmup", "1",
               "--modes", "streaming,typing,naive", "--typing-cps", "100",
               "--clients", "1,2", "--load-turns", "1",
               "--out", str(out), "--no-progress"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout + completed.stderr

    stdout = completed.stdout
    assert "streaming: 2/2 turns done" in stdout
    assert "naive: 2/2 turns done" in stdout
    assert "typing: 2/2 turns done" in stdout
    assert "TTFA ratio naive/streaming" in stdout
    assert "largest K with zero underruns" in stdout

    report = json.loads((out / "bench.json").read_text())
    assert report["machine"] and report["machine_load_at_start"]["loadavg_1m"] >= 0
    assert report["settings"]["modes"] == ["streaming", "typing", "naive"]
    assert list(report["modes"]) == ["streaming", "typing", "naive"]
    for name, mode in report["modes"].items():
        summary = mode["summary"]
        assert summary["turns"] == summary["turns_done"] == 2, name
        for key in ("ttfa_ms", "time_to_playback_ms", "rtf", "audio_s"):
            assert set(summary[key]) >= {"p50", "p95", "p99"}, key
        assert set(summary["milestones_ms"]) == set(KEPT_MILESTONES)
        assert set(summary["segments_mean_ms"]) == set(summary["segments_p50_ms"]) == set(SEGMENTS)
        assert isinstance(summary["underruns_total"], int)
        assert mode["peak_rss_mb"] is not None
        if name != "naive":  # the daemon's modes: its RSS after the turns so far
            assert 0 < mode["rss_mb"] <= mode["peak_rss_mb"]
        assert len(mode["turns"]) == 2
        for turn in mode["turns"]:
            assert turn["mode"] == name and turn["outcome"] == "done"
            assert turn["ttfa_ms"] is not None and turn["audio_s"] > 0
    # Warm-up and recorded turns, counted over the daemon's life: 1 + 2, then 3 more.
    assert report["modes"]["streaming"]["rss_after_turns"] == 3
    assert report["modes"]["typing"]["rss_after_turns"] == 6
    assert "daemon RSS after its first 6 turns: " in stdout
    # Same lines in both modes, in the same order.
    assert ([t["line"] for t in report["modes"]["streaming"]["turns"]]
            == [t["line"] for t in report["modes"]["naive"]["turns"]])
    assert set(report["ratios"]["naive/streaming"]) == {"p50", "p95"}
    assert report["modes"]["typing"]["chars_per_s"] == 100
    assert report["modes"]["typing"]["enter_ms"] == 10  # one more keystroke at 100/s

    load = report["load"]
    assert [level["clients"] for level in load["levels"]] == [1, 2]
    assert [level["summary"]["turns"] for level in load["levels"]] == [1, 2]
    assert load["max_clients_without_underruns"] in (None, 1, 2)
    assert load["daemon_peak_rss_mb"] is not None

    assert sorted(report["plots"]) == ["load.png", "stages_by_mode.png", "ttfa_by_mode.png"]
    for name in report["plots"]:
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name


@pytest.mark.parametrize(("text", "expected"), [
    ("asr.pause_ms=120", ("asr", "pause_ms", 120)),
    ("asr.smart_turn = false", ("asr", "smart_turn", False)),
    ('llm.model="smollm2:q4_1"', ("llm", "model", "smollm2:q4_1")),
    ("tts.speed=1.5", ("tts", "speed", 1.5)),
])
def test_a_bench_setting_is_read_as_toml(text: str, expected: tuple[str, str, object]) -> None:
    assert parse_setting(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("pause_ms=120", "SECTION.KEY=VALUE"),
    ("asr.pause_ms", "SECTION.KEY=VALUE"),
    ("llm.model=smollm2", "quote strings"),
    ("asr.pause_ms=[1, 2]", "only strings, numbers and booleans"),
])
def test_a_bad_bench_setting_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_setting(text)


def test_a_bench_setting_reaches_the_config_and_a_misspelt_key_is_refused() -> None:
    section, key, value = parse_setting("asr.speculate_ms=96")
    assert "speculate_ms = 96" in config_text_with({section: {key: value}})
    section, key, value = parse_setting("asr.speculat_ms=96")
    with pytest.raises(ValueError, match="speculat_ms"):
        config_text_with({section: {key: value}})


def test_packaged_corpus_covers_three_npcs_with_thirty_lines() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 30
    assert len({npc_id for npc_id, _ in corpus}) >= 3
    assert [npc for npc, _ in corpus[:3]] == ["blacksmith", "innkeeper", "oracle"]


def test_mode_selection_and_realtimetts_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_libraries, "realtimetts_unavailable",
                        lambda: "realtimetts mode skipped: RealtimeTTS not installed")
    modes, skipped = select_modes(None)
    assert modes == ["streaming", "typing", "naive"]
    assert skipped == ["realtimetts mode skipped: RealtimeTTS not installed"]
    assert select_modes("naive,streaming") == (["streaming", "naive"], [])
    with pytest.raises(ValueError, match="unknown mode"):
        select_modes("streaming,fastest")


def test_client_levels() -> None:
    assert parse_clients("8,1,2,4") == [1, 2, 4, 8]
    assert parse_clients("0") == [] and parse_clients("") == []
    with pytest.raises(ValueError):
        parse_clients("1,-2")


@pytest.mark.slow
def test_realtimetts_mode_when_the_peers_extra_is_installed(tmp_path: Path) -> None:
    """Runs only where `pip install -e '.[peers]'` was done (never in CI)."""
    reason = peer_libraries.realtimetts_unavailable()
    if reason:
        pytest.skip(reason)
    config = tmp_path / "bench.toml"
    write_config(config, llm={"max_reply_tokens": 16})
    out = tmp_path / "results"
    command = [sys.executable, "-m", "daemon", "--log-level", "WARNING", "bench",
               "--config", str(config), "--turns", "1", "--warmup", "0",
               "--modes", "realtimetts", "--clients", "0", "--out", str(out),
               "--no-progress", "--no-plots"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads((out / "bench.json").read_text())
    assert list(report["modes"]) == ["realtimetts"]
    (turn,) = report["modes"]["realtimetts"]["turns"]
    assert turn["outcome"] == "done" and turn["ttfa_ms"] is not None and turn["audio_s"] > 0
    assert report["ratios"] == {}  # no streaming mode to compare with
    assert "load" not in report
