"""Shared fixtures: a real daemon process on the embedded default models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.launcher import DaemonProcess
from tests.support.configs import write_config


@pytest.fixture(scope="session")
def daemon_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config file used by the shared daemon."""
    return write_config(tmp_path_factory.mktemp("config") / "test.toml")


@pytest.fixture(scope="session")
def daemon(daemon_config_path: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProcess]:
    """One real daemon process for the whole session (models load once)."""
    log_path = tmp_path_factory.mktemp("logs") / "daemon.log"
    process = DaemonProcess(daemon_config_path, log_path=log_path).start()
    yield process
    code = process.stop()
    assert code == 0, f"daemon exited with {code}:\n{process.log_text()[-3000:]}"
