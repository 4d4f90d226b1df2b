"""A real Godot 4 for the addon's tests: finding it, importing the project, running scenarios.

Godot is found through the environment variable NPC_VOICE_GODOT (the path of a `godot`
executable), else `godot` on PATH, else where `bash scripts/bootstrap.sh godot` installs it
(scripts/install_godot.sh: ~/.cache/npc-voice/sid-tools/bin/godot). Without one, every Godot test
skips with one line saying how to get it; when the environment variable CI is set, it fails
instead, so that CI cannot pass without having run them.

Scenarios are GDScript files under godot_addon/test/e2e/ (see scenario.gd there): Godot runs
one headless, it prints its events as JSON lines prefixed with RESULT_MARK and quits with 0
when it ran to its end. Headless Godot uses its Dummy audio driver, which mixes in real time
(about 93 ms of output per mix step) and so consumes what the addon pushes into its
AudioStreamGenerators: playback, pre-buffer and underrun logic run for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from daemon.launcher import DaemonProcess

GODOT_ENV = "NPC_VOICE_GODOT"
# The Godot project under test; NPC_VOICE_GODOT_PROJECT points the tests at another copy (an
# older addon with these tests copied in, to see which of them it fails).
PROJECT = Path(os.environ.get("NPC_VOICE_GODOT_PROJECT")
               or Path(__file__).resolve().parents[2] / "godot_addon").resolve()
RESULT_MARK = "NPCV_E2E "
E2E_SCENE = "res://test/e2e/e2e.tscn"
HOW_TO_GET_GODOT = (f"run `bash scripts/bootstrap.sh godot` (Linux x86-64, as root) or set "
                    f"{GODOT_ENV}=/path/to/godot (Godot 4.3+)")
# Lines of Godot's output that mean something went wrong in a script or in the engine.
ERROR_LINE = re.compile(r"^\s*(SCRIPT ERROR|ERROR|USER ERROR):")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
DEFAULT_TIMEOUT_S = 240.0  # under pytest-timeout (300 s); scenarios stop themselves at 230 s

_import_lock = threading.Lock()
_imported: set[str] = set()


def default_install_path() -> Path:
    """Where scripts/sid_tools.sh (scripts/install_godot.sh) puts its launcher."""
    home = os.environ.get("NPC_VOICE_SID_HOME")
    if home:
        return Path(home) / "bin" / "godot"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "npc-voice" / "sid-tools" / "bin" / "godot"


def find_godot() -> str | None:
    """The Godot executable to test with, or None (see the module docstring)."""
    configured = os.environ.get(GODOT_ENV)
    if configured:
        return configured
    on_path = shutil.which("godot")
    if on_path:
        return on_path
    installed = default_install_path()
    return str(installed) if os.access(installed, os.X_OK) else None


def require_godot() -> str:
    """The Godot executable; skips the test without one (fails under CI)."""
    godot = find_godot()
    if godot is None:
        message = f"no Godot 4 binary for the addon's tests: {HOW_TO_GET_GODOT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: Godot tests must run)")
        pytest.skip(message)
    if not os.access(godot, os.X_OK):
        pytest.fail(f"{GODOT_ENV}={godot} is not an executable file")
    return godot


def godot_version(godot: str) -> str:
    """`godot --version`, e.g. "4.6.3.stable.debian..."."""
    result = subprocess.run([godot, "--headless", "--version"], capture_output=True,
                            text=True, timeout=60)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"


def ensure_imported(godot: str) -> None:
    """Import the project (class_name cache, .godot/) once, when a source is newer."""
    with _import_lock:
        if godot in _imported:
            return
        cache = PROJECT / ".godot" / "global_script_class_cache.cfg"
        sources = [*PROJECT.rglob("*.gd"), *PROJECT.rglob("*.tscn"), PROJECT / "project.godot"]
        newest = max(p.stat().st_mtime for p in sources if ".godot" not in p.parts)
        if not cache.exists() or cache.stat().st_mtime < newest:
            result = subprocess.run([godot, "--headless", "--path", str(PROJECT), "--import"],
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0 and cache.exists(), (
                f"`godot --import` failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
            cache.touch()
        _imported.add(godot)


@dataclass
class GodotResult:
    """What a finished Godot run printed and returned."""

    returncode: int
    lines: list[str]
    events: list[dict] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def of(self, event: str, **match: object) -> list[dict]:
        """The events named `event` whose fields equal `match`."""
        return [e for e in self.events if e["event"] == event
                and all(e.get(k) == v for k, v in match.items())]

    def one(self, event: str, **match: object) -> dict:
        """The single event named `event` matching `match` (fails otherwise)."""
        found = self.of(event, **match)
        assert len(found) == 1, f"expected one {event} {match}, got {found}\n{self.tail()}"
        return found[0]

    def index(self, event: dict) -> int:
        """Position of `event` among all events (for order checks)."""
        return next(i for i, e in enumerate(self.events) if e is event)

    def error_lines(self, allowed: Iterable[str] = ()) -> list[str]:
        """SCRIPT ERROR / ERROR lines that match none of the `allowed` regexes."""
        patterns = [re.compile(p) for p in allowed]
        return [line for line in self.lines if ERROR_LINE.match(line)
                and not any(p.search(line) for p in patterns)]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.lines[-lines:])

    def assert_clean(self, allowed_errors: Iterable[str] = ()) -> None:
        """The run reached its end (exit 0) and printed no unexpected error."""
        assert self.returncode == 0, f"Godot exited with {self.returncode}:\n{self.tail()}"
        assert self.of("scenario_finished") or not self.events, self.tail()
        unexpected = self.error_lines(allowed_errors)
        assert not unexpected, "Godot reported errors:\n" + "\n".join(unexpected) + \
            "\n--- output ---\n" + self.tail()


class GodotProcess:
    """A running headless Godot whose output is read as it comes.

    Args:
      godot: The executable.
      args: Godot's arguments (before `--`).
      user_args: Arguments for the script (after `--`).
    """

    def __init__(self, godot: str, args: list[str], user_args: list[str] | None = None) -> None:
        command = [godot, *args]
        if user_args:
            command += ["--", *user_args]
        self.command = command
        self.lines: list[str] = []
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1,
                                        errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = ANSI_ESCAPE.sub("", raw.rstrip("\n"))
            with self._changed:
                self.lines.append(line)
                if line.startswith(RESULT_MARK):
                    self.events.append(json.loads(line[len(RESULT_MARK):]))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[list[dict]], dict | None],
                 what: str, timeout_s: float = 120.0) -> dict:
        """Block until `condition(events)` returns an event; fails on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = condition(self.events)
                if found is not None:
                    return found
                if self.process.poll() is not None and not self._reader.is_alive():
                    pytest.fail(f"Godot exited ({self.process.returncode}) before {what}:\n"
                                + "\n".join(self.lines[-60:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {what} after {timeout_s:.0f} s:\n"
                                + "\n".join(self.lines[-60:]))
                self._changed.wait(min(left, 1.0))

    def wait_for_event(self, event: str, timeout_s: float = 120.0) -> dict:
        """Block until an event named `event` was printed; return it."""
        return self.wait_for(lambda events: next(
            (e for e in events if e["event"] == event), None), event, timeout_s)

    def finish(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> GodotResult:
        """Wait for the process to exit (killing it after `timeout_s`)."""
        try:
            returncode = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self._reader.join(10)
            pytest.fail(f"Godot still ran after {timeout_s:.0f} s:\n"
                        + "\n".join(self.lines[-80:]))
        self._reader.join(10)
        return GodotResult(returncode, list(self.lines), list(self.events))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_scenario(godot: str, scenario: str, port: int, **options: object) -> GodotProcess:
    """Start res://test/e2e/<scenario>.gd against the daemon on `port`.

    `options` become `--key=value` user arguments (e.g. control=..., wav=...).
    """
    ensure_imported(godot)
    user_args = [f"--scenario={scenario}", f"--port={port}",
                 *(f"--{key}={value}" for key, value in options.items())]
    return GodotProcess(godot, ["--headless", "--max-fps", "60", "--path", str(PROJECT),
                                E2E_SCENE], user_args)


def run_scenario(godot: str, scenario: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S,
                 **options: object) -> GodotResult:
    """Run a scenario to its end (see start_scenario)."""
    process = start_scenario(godot, scenario, port, **options)
    try:
        return process.finish(timeout_s)
    finally:
        process.kill()


# ------------------------------------------------------------------------------ fixtures
# Test modules import these (`from tests.support.godot import godot, godot_daemon`).

def godot_daemon_config_text(**sections: dict[str, object]) -> str:
    """The daemon config of the Godot tests: the test config with short replies (the
    scenarios play them in real time) and a text limit above the 64 KiB frame limit (so
    a line too long for a frame is not refused for its length first)."""
    from tests.support.configs import config_for_tests, config_text

    llm = {"max_reply_tokens": 16, **sections.pop("llm", {})}
    server = {"max_text_chars": 20000, **sections.pop("server", {})}
    return config_text(config_for_tests(llm=llm, server=server, **sections))


@pytest.fixture(scope="session")
def godot() -> str:
    """The Godot executable, with the project imported (skips without Godot, fails on CI)."""
    executable = require_godot()
    ensure_imported(executable)
    return executable


@pytest.fixture(scope="session")
def godot_daemon(godot: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[DaemonProcess]:
    """One real daemon (voice input on) for the Godot scenarios of the session."""
    from daemon.launcher import DaemonProcess

    folder = tmp_path_factory.mktemp("godot-daemon")
    config = folder / "config.toml"
    config.write_text(godot_daemon_config_text())
    process = DaemonProcess(config, log_path=folder / "daemon.log").start()
    yield process
    process.stop()
