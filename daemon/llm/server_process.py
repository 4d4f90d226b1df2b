"""llama.cpp's own server, run by the daemon as a child process (`backend = "llama_server"`).

llama-server batches the turns of many NPCs into one decode step (continuous batching
over `instances` slots), prefills new prompts inside the same batches, and keeps idle
conversations' KV in a RAM prompt cache: the engine the daemon would otherwise have to
write. The daemon starts it on a free loopback port with the tier's settings, waits
until it answers `/health`, streams from it with `openai.OpenAiTier`, and stops it at
shutdown. On Linux the child also gets SIGTERM if the daemon itself dies
(`PR_SET_PDEATHSIG`), so no server outlives a crashed daemon.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from daemon.config import LlmConfig

_LOGGER = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class LlamaServerError(RuntimeError):
    """llama-server could not be found, started, or did not become ready."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the daemon dies."""
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl(_PR_SET_PDEATHSIG,
                                                                     signal.SIGTERM)


def server_command(binary: str, model_path: Path, config: LlmConfig, port: int) -> list[str]:
    """The llama-server command line for one tier (documented in README, "Deployment")."""
    slots = config.instances
    command = [
        binary, "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port),
        "--parallel", str(slots), "--ctx-size", str(config.n_ctx * slots),
        "--threads", str(config.n_threads), "--threads-batch", str(config.n_threads_batch),
        "--batch-size", str(config.n_batch), "--n-gpu-layers", str(config.n_gpu_layers),
        "--flash-attn", "on" if config.flash_attn else "off",
        "--cache-type-k", config.cache_type_k,
        "--cache-ram", str(config.cache_ram_mib), "--cont-batching", "--no-webui",
    ]
    if config.seed >= 0:
        command += ["--seed", str(config.seed)]
    return command


class LlamaServerProcess:
    """A running llama-server for one tier. Use `await start(...)`, then `url`; `close()`.

    Args:
      name: For logs ("llm", "llm-narrative").
    """

    def __init__(self, name: str = "llm") -> None:
        self.name = name
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._output: list[str] = []

    async def start(self, model_path: Path, config: LlmConfig, port: int = 0) -> str:
        """Start llama-server on `model_path` and wait until it serves; returns its API URL.

        `port`: the loopback port to serve on (0 = a free one).

        Raises:
          LlamaServerError: the binary is missing, or the server exited or did not
            become ready within `load_timeout_s` (with its last output lines).
        """
        port = port or _free_port()
        started = time.perf_counter()
        self._process = self._launch(model_path, config, port)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + config.load_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise LlamaServerError(
                        f"llama-server exited with code {self._process.returncode}:\n"
                        + "\n".join(self._output[-20:]))
                try:
                    if (await client.get(f"{base}/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.close()
                    raise LlamaServerError(
                        f"llama-server was not ready after {config.load_timeout_s:.0f} s:\n"
                        + "\n".join(self._output[-20:]))
                await asyncio.sleep(0.1)
        _LOGGER.info("%s: llama-server ready in %.1f s", self.name,
                     time.perf_counter() - started)
        self.url = f"{base}/v1"
        return self.url

    def _launch(self, model_path: Path, config: LlmConfig, port: int
                ) -> subprocess.Popen[bytes]:
        binary = shutil.which(config.server_binary) or config.server_binary
        if not Path(binary).is_file():
            raise LlamaServerError(
                f"llama-server not found ({config.server_binary!r}): install llama.cpp's "
                "server (README, \"Many NPCs at once\") or set llm.server_binary")
        command = server_command(binary, model_path, config, port)
        _LOGGER.info("%s: starting llama-server (%d slots) on port %d: %s", self.name,
                     config.instances, port, " ".join(command))
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent if sys.platform == "linux"
                                   else None)
        threading.Thread(target=self._read_output, args=(process,),
                         name=f"{self.name}-server-log", daemon=True).start()
        return process

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._output = [*self._output[-199:], line]
            _LOGGER.debug("%s server: %s", self.name, line)

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """The child process is alive."""
        return self._process is not None and self._process.poll() is None

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout_s`)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
