"""The README's settings for a daemon under 500 MB are a valid config, and the bundled
model runs with them (real llama.cpp, the shipped Q4_1 file, a 1024-token context)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import msgspec

from daemon.bench.configs import config_text_with
from daemon.config_file import load_config, parse_config
from daemon.llm.base import ReplyStats
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.models import bundled_llm_path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_memory_settings() -> dict[str, dict[str, str | int | float | bool]]:
    """The `[llm]` TOML block that follows "under 500 MB" in the README."""
    text = README.read_text(encoding="utf-8")
    after = text.split("under 500 MB", 1)[1]
    match = re.search(r"```toml\n(.*?)```", after, re.DOTALL)
    assert match is not None, "no TOML block after 'under 500 MB' in README.md"
    settings: dict[str, dict[str, str | int | float | bool]] = msgspec.toml.decode(
        match.group(1))
    return settings


def test_readme_memory_settings_change_the_weights_and_the_context() -> None:
    settings = readme_memory_settings()
    config = parse_config(config_text_with(settings), "README settings")
    packaged = load_config().llm
    assert (config.llm.model, config.llm.n_ctx) == ("smollm2:q4_1", 1024)
    assert (packaged.model, packaged.n_ctx) != (config.llm.model, config.llm.n_ctx)


def test_bundled_model_replies_with_the_readme_memory_settings() -> None:
    llm = parse_config(config_text_with(readme_memory_settings()), "README settings").llm
    path = llm_gguf(llm.model)
    assert path == bundled_llm_path()  # the shipped file, no Q8_0 copy written
    context = LlamaContext(path, llm, KvStateStore(16 * 2**20), "test")
    messages = [{"role": "system", "content": "You are Brom, the village blacksmith."},
                {"role": "user", "content": "Can you mend my sword?"}]
    deltas: list[object] = []
    context.reply("smith/1", messages, deltas.append, threading.Event(), max_tokens=4)
    stats = deltas[-1]
    assert isinstance(stats, ReplyStats)
    assert stats.reply_tokens > 0 and stats.finish_reason in ("length", "stop")
