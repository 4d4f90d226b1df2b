"""Shared fixtures: a real daemon process on the embedded default models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config_file import default_config_text
from daemon.launcher import DaemonProcess

TEST_SEED = 1234


def test_config_text(**replacements: str) -> str:
    """The packaged config with a fixed seed, shorter replies and two LLM instances."""
    text = default_config_text()
    text = text.replace("seed = -1", f"seed = {TEST_SEED}")
    text = text.replace("max_reply_tokens = 96", "max_reply_tokens = 48")
    text = text.replace("instances = 1 ", "instances = 2 ")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


test_config_text.__test__ = False  # a helper, not a test (pytest collects test_* names)


@pytest.fixture(scope="session")
def daemon_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config file used by the shared daemon."""
    path = tmp_path_factory.mktemp("config") / "test.toml"
    path.write_text(test_config_text())
    return path


@pytest.fixture(scope="session")
def daemon(daemon_config_path: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProcess]:
    """One real daemon process for the whole session (models load once)."""
    log_path = tmp_path_factory.mktemp("logs") / "daemon.log"
    process = DaemonProcess(daemon_config_path, log_path=log_path).start()
    yield process
    code = process.stop()
    assert code == 0, f"daemon exited with {code}:\n{process.log_text()[-3000:]}"


def run(coroutine: object, timeout_s: float = 120.0) -> object:
    """Run a coroutine to completion on a fresh event loop, with a timeout."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))  # type: ignore[arg-type]
