"""Many NPCs at once through llama.cpp's own server, and a remote OpenAI-compatible server.

Real llama-server processes (Debian sid's llama.cpp-tools, see tests/support/llama_server.py)
serve the bundled SmolLM2 GGUF: once started and stopped by the daemon (`backend =
"llama_server"`), once running on its own as a remote server (`backend = "openai"`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Cancelled, Error
from daemon.config import LlmConfig
from daemon.launcher import DaemonProcess, free_tcp_port
from daemon.llm.gguf import llm_gguf
from daemon.llm.server_process import LlamaServerProcess
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn
from tests.support.configs import write_config
from tests.support.llama_server import llama_server_binary  # noqa: F401 (fixture)
from tests.support.scenarios import LINES, turns_at_once


@pytest.fixture(scope="module")
def server_daemon(llama_server_binary: str,  # noqa: F811
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon whose LLM is a llama-server it started itself, with four slots."""
    folder = tmp_path_factory.mktemp("llama-server")
    config = write_config(folder / "server.toml",
                          llm={"backend": "llama_server", "server_binary": llama_server_binary,
                               "instances": 4, "n_threads": 2, "n_threads_batch": 2})
    with DaemonProcess(config, log_path=folder / "daemon.log", ready_timeout_s=240) as process:
        yield process


def test_turns_of_three_npcs_at_once_all_complete_through_llama_server(
        server_daemon: DaemonProcess) -> None:
    results = run(turns_at_once(server_daemon.address, LINES), timeout_s=240)
    for result in results.values():
        done = assert_complete_turn(result)
        assert done.timings.reply_tokens > 0 and done.timings.prompt_tokens > 0
    assert "llama-server ready" in server_daemon.log_text()


def test_cancelling_one_turn_of_a_batch_leaves_the_others_untouched(
        server_daemon: DaemonProcess) -> None:
    results = run(turns_at_once(server_daemon.address, LINES, cancel="innkeeper"),
                  timeout_s=240)
    cancelled = results.pop("innkeeper")
    assert isinstance(cancelled.terminal, Cancelled) and cancelled.terminal.reason == "cancel"
    for result in results.values():
        assert_complete_turn(result)


def test_the_server_prompt_cache_serves_a_conversation_again(
        server_daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(server_daemon.address) as client:
            first = await client.run_turn("blacksmith", "Good morning!")
            second = await client.run_turn("blacksmith", "What are you forging?")
            return first, second

    _first, second = run(scenario(), timeout_s=120)
    timings = assert_complete_turn(second).timings
    # The persona and the first turn come from llama-server's cache.
    assert 0 < timings.prefill_tokens < timings.prompt_tokens


# ------------------------------------------------------------------------ remote server

@pytest.fixture
def remote(llama_server_binary: str, tmp_path: Path  # noqa: F811
           ) -> Iterator[tuple[LlamaServerProcess, int, DaemonProcess]]:
    """A llama-server running on its own, and a daemon using it as a remote server."""
    port = free_tcp_port()
    settings = LlmConfig(server_binary=llama_server_binary, instances=2, n_threads=2,
                         n_threads_batch=2)
    server = LlamaServerProcess("remote")
    run(server.start(llm_gguf("smollm2"), settings, port=port), timeout_s=240)
    config = write_config(tmp_path / "remote.toml",
                          llm={"backend": "openai", "url": f"http://127.0.0.1:{port}/v1",
                               "model_name": "smollm2", "read_timeout_ms": 3000,
                               "connect_timeout_ms": 1000})
    daemon = DaemonProcess(config, log_path=tmp_path / "daemon.log").start()
    try:
        yield server, port, daemon
    finally:
        daemon.stop()
        server.close()


def say_once(address: str, npc_id: str = "blacksmith") -> TurnResult:
    async def scenario() -> TurnResult:
        async with BridgeClient(address) as client:
            return await client.run_turn(npc_id, LINES[npc_id], timeout_s=60)

    return run(scenario(), timeout_s=90)


def test_the_remote_backend_survives_its_server_going_silent_dying_and_coming_back(
        remote: tuple[LlamaServerProcess, int, DaemonProcess], llama_server_binary: str  # noqa: F811
        ) -> None:
    server, port, daemon = remote
    assert_complete_turn(say_once(daemon.address))

    # Silent: the server is frozen while a turn waits for its reply.
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        silent = say_once(daemon.address)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert isinstance(silent.terminal, Error) and silent.terminal.code == "engine_failed"
    assert f"127.0.0.1:{port}" in silent.terminal.message

    # Gone: one clear error per turn, and the daemon goes on.
    server.close()
    gone = say_once(daemon.address)
    assert isinstance(gone.terminal, Error) and gone.terminal.code == "engine_failed"
    assert "not reachable" in gone.terminal.message
    assert daemon.process is not None and daemon.process.poll() is None

    # Back: the next turn works, without restarting the daemon.
    settings = LlmConfig(server_binary=llama_server_binary, instances=2)
    run(server.start(llm_gguf("smollm2"), settings, port=port), timeout_s=240)
    assert_complete_turn(say_once(daemon.address))
