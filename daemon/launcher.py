"""Starting the daemon as a child process (for `npc-voice demo`, benchmarks, tests).

The child is a real `python -m daemon serve` process; readiness is its "ready on"
log line, so callers never race the model loading.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_MARK = "ready on tcp://"


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DaemonProcess:
    """A daemon child process; use as a context manager.

    Args:
      config_path: Config file (None = the packaged default).
      port: TCP port (None = a free one).
      extra_args: More `serve` arguments, e.g. ["--llm-instances", "2"].
      log_path: Where the child's stderr goes (default: a temporary file).
      ready_timeout_s: How long to wait for "ready".
    """

    def __init__(
        self,
        config_path: str | Path | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        log_path: str | Path | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.port = port or free_tcp_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self._config_path = config_path
        self._extra_args = extra_args or []
        self._ready_timeout_s = ready_timeout_s
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="npc-voice-daemon-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        """Start the child and wait until it logs "ready".

        Raises:
          RuntimeError: the child exited or did not become ready in time (with its log).
        """
        command = [sys.executable, "-m", "daemon", "serve", "--port", str(self.port)]
        if self._config_path is not None:
            command += ["--config", str(self._config_path)]
        command += self._extra_args
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if READY_MARK in self.log_text():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with code {self.process.returncode}:\n{self.log_text()}"
                )
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"daemon not ready after {self._ready_timeout_s:.0f} s:\n{self.log_text()}"
        )

    def log_text(self) -> str:
        """Everything the child has logged so far."""
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (then SIGKILL after `timeout_s`); return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            if sys.platform == "win32":
                self.process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
