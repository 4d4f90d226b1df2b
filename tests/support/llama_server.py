"""llama.cpp's `llama-server` for the LLM server backend's tests.

Found through the environment variable NPC_VOICE_LLAMA_SERVER, then `llama-server` on
PATH, then where `bash scripts/sid_tools.sh llama-server` installs it (Debian sid's
llama.cpp-tools). Without one the tests skip with one line saying how to get it; with
the environment variable CI set they fail instead (CI must run them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ENV = "NPC_VOICE_LLAMA_SERVER"


def find_llama_server() -> str | None:
    """The llama-server program to test with, or None."""
    configured = os.environ.get(ENV)
    if configured:
        return configured
    on_path = shutil.which("llama-server")
    if on_path:
        return on_path
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = os.environ.get("NPC_VOICE_SID_HOME") or str(Path(cache) / "npc-voice" / "sid-tools")
    installed = Path(home) / "bin" / "llama-server"
    return str(installed) if installed.is_file() else None


@pytest.fixture(scope="session")
def llama_server_binary() -> str:
    """The llama-server program (skips without one; fails on CI)."""
    found = find_llama_server()
    if found is None:
        message = (f"no llama-server: run `bash scripts/bootstrap.sh godot` (Linux x86-64, "
                   f"as root) or set {ENV}=/path/to/llama-server")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
