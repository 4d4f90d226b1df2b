"""Test configurations, built from the config Structs (never by editing comment text).

`config_for_tests` starts from the packaged configuration, sets what every test wants (a
fixed seed, shorter replies, two LLM instances) and applies the overrides given per
section; `write_config` writes any `Config` as TOML the daemon loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import tomli_w

from daemon.config import Config
from daemon.config_file import default_config_text, parse_config, validate

TEST_SEED = 1234

_BASE = {"llm": {"seed": TEST_SEED, "max_reply_tokens": 48, "instances": 2}}


def _merge(current: Any, changes: dict[str, Any]) -> Any:
    """`current` (a Struct or a dict of Structs) with `changes` applied, field by field."""
    builtins = msgspec.to_builtins(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(builtins.get(key), dict):
            builtins[key] = {**builtins[key], **value}
        else:
            builtins[key] = value
    return builtins


def config_for_tests(**sections: dict[str, Any]) -> Config:
    """The packaged config for tests, with `sections` overrides.

    Example: `config_for_tests(llm={"max_reply_tokens": 24}, asr={"end_silence_ms": 1000},
    npcs={"bard": {...}})`. A table of tables (`voices`, `npcs`, `profiles`) gains or
    changes the entries given; `llm_narrative` may be given whole.
    """
    config = parse_config(default_config_text())
    builtins = msgspec.to_builtins(config)
    for section, changes in _BASE.items():
        builtins[section] = _merge(getattr(config, section), changes)
    for section, changes in sections.items():
        current = getattr(config, section)
        if current is None:
            builtins[section] = changes
        elif section in ("voices", "npcs", "profiles"):
            merged = dict(builtins[section])
            for name, entry in changes.items():
                merged[name] = {**merged.get(name, {}), **entry}
            builtins[section] = merged
        else:
            builtins[section] = _merge(builtins[section], changes)
    result = msgspec.convert(builtins, Config)
    validate(result, "test config")
    return result


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def config_text(config: Config) -> str:
    """`config` as TOML (None fields left out: they mean "default")."""
    return tomli_w.dumps(_without_none(msgspec.to_builtins(config)))


def write_config(path: Path, config: Config | None = None, **sections: dict[str, Any]) -> Path:
    """Write `config` (default: `config_for_tests(**sections)`) to `path`; return `path`."""
    path.write_text(config_text(config if config is not None else config_for_tests(**sections)))
    return path
