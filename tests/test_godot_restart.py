"""The real addon in a real headless Godot 4 survives its daemon dying mid-turn.

The test freezes the daemon (SIGSTOP) once the first block of a reply reached Godot, lets the
scenario send another line to the frozen daemon (so a turn is surely in flight, whatever the
machine's speed), kills the daemon (SIGKILL: a crash, no goodbye) and starts a new one on the
same port. The turns in flight end "disconnected", the addon reconnects by itself and the next
line is heard to the end. Scenario: godot_addon/test/e2e/daemon_restart.gd.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from daemon.launcher import DaemonProcess, free_tcp_port
from tests.support.godot import godot, godot_daemon_config_text, start_scenario  # noqa: F401

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")


def test_a_daemon_restarted_mid_turn(godot: str, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "config.toml"
    config.write_text(godot_daemon_config_text())
    port = free_tcp_port()
    control = tmp_path / "control"
    control.mkdir()
    first = DaemonProcess(config, port=port, log_path=tmp_path / "first.log").start()
    second: DaemonProcess | None = None
    process = start_scenario(godot, "daemon_restart", port, control=control)
    try:
        process.wait_for_event("streaming")
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGSTOP)
        (control / "frozen").touch()
        in_flight = process.wait_for_event("in_flight")["turn_ids"]
        first.process.kill()  # works on a stopped process too
        first.process.wait()
        second = DaemonProcess(config, port=port, log_path=tmp_path / "second.log").start()
        run = process.finish()
    finally:
        process.kill()
        first.stop()
        if second is not None:
            second.stop()
    run.assert_clean()
    assert in_flight, "the line sent to the frozen daemon must be in flight"
    for turn_id in in_flight:
        assert run.one("speech_finished", turn_id=turn_id)["outcome"] == "disconnected"
    assert len(run.of("disconnected")) == 1 and len(run.of("connected")) == 2
    last = run.one("case", name="after_restart")["turn_id"]
    finished = run.one("speech_finished", turn_id=last)
    assert finished["outcome"] == "done" and finished["underruns"] == 0, finished
    assert finished["timings"]["client_played_ms"] == pytest.approx(
        finished["timings"]["audio_ms"], abs=0.1)
    assert run.of("error_received") == []
