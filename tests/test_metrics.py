"""Telemetry: the daemon's Prometheus page after a real turn, and the stage split.

The page test runs a real daemon process (`serve --metrics-port`), one real turn
through the reference client, then reads `/metrics` over HTTP as Prometheus would.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from bridge_protocol.client import BridgeClient
from bridge_protocol.messages import Done, TurnTimings
from daemon.launcher import DaemonProcess, free_tcp_port
from daemon.metrics import OTHER_STAGES, TTFA_STAGES, stage_durations_ms
from tests.support.aio import run

DOCUMENTED_METRICS = (
    "npc_voice_ttfa_seconds",
    "npc_voice_stage_seconds",
    "npc_voice_tts_rtf_ratio",
    "npc_voice_audio_seconds_total",
    "npc_voice_turns_total",
    "npc_voice_cancellations_total",
    "npc_voice_errors_total",
    "npc_voice_connected_clients",
)


def _sample(text: str, name: str, labels: str = "") -> float:
    """Value of one sample line `name{labels} value` of the text format."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(match.group(1))


def _get_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode("utf-8")


@pytest.mark.slow
def test_metrics_endpoint_after_one_turn(daemon_config_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    metrics_port = free_tcp_port()
    process = DaemonProcess(daemon_config_path, log_path=tmp_path / "daemon.log",
                            extra_args=["--metrics-port", str(metrics_port)]).start()
    try:
        before = _get_metrics(metrics_port)
        assert _sample(before, "npc_voice_turns_total", 'outcome="done"') == 0

        async def one_turn() -> tuple[object, str]:
            async with BridgeClient(process.address, client_name="metrics test") as client:
                result = await client.run_turn("blacksmith", "Can you fix my shield?")
                return result.terminal, _get_metrics(metrics_port)

        terminal, during = run(one_turn())
        assert isinstance(terminal, Done)
        after = _get_metrics(metrics_port)
    finally:
        code = process.stop()
    assert code == 0, process.log_text()[-3000:]

    for name in DOCUMENTED_METRICS:
        base = re.escape(name.removesuffix("_total"))  # counters: with or without _total
        assert re.search(rf"^# TYPE {base}(_total)? ", after, re.MULTILINE), name
    assert _sample(after, "npc_voice_turns_total", 'outcome="done"') == 1
    assert _sample(after, "npc_voice_turns_total", 'outcome="error"') == 0
    assert _sample(after, "npc_voice_ttfa_seconds_count") == 1
    assert _sample(after, "npc_voice_ttfa_seconds_sum") > 0
    for stage in TTFA_STAGES:
        assert _sample(after, "npc_voice_stage_seconds_count", f'stage="{stage}"') == 1
    assert _sample(after, "npc_voice_audio_seconds_total") > 0
    assert _sample(after, "npc_voice_cancellations_total", 'reason="barge_in"') == 0
    assert _sample(after, "npc_voice_errors_total", 'code="unknown_npc"') == 0
    # The client was connected while `during` was read, and had left by `after`.
    assert _sample(during, "npc_voice_connected_clients") >= 1
    assert "ttfa_ms=" in process.log_text()  # the structured log line is still there


def test_ttfa_stages_add_up_to_the_first_block() -> None:
    timings = TurnTimings(queued_ms=2.0, llm_first_token_ms=40.0, first_chunk_ms=120.0,
                          tts_first_audio_ms=200.0, first_block_ms=201.5, llm_done_ms=900.0,
                          last_block_ms=1500.0, tts_busy_ms=300.0)
    stages = stage_durations_ms(timings)
    assert set(stages) == {*TTFA_STAGES, *OTHER_STAGES}
    assert sum(stages[s] for s in TTFA_STAGES) == pytest.approx(201.5)
    assert stages["llm_reply"] == pytest.approx(898.0)


def test_stages_that_never_happened_are_left_out() -> None:
    stages = stage_durations_ms(TurnTimings(queued_ms=1.0))  # cancelled before a token
    assert stages == {"queue": 1.0}
