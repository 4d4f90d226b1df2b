"""Benchmark configs: the packaged config text with some values changed.

The packaged file keeps its comments (a benchmark's config is meant to be read); each
override replaces its key's line in its section, or is added right under the section's
header. The result is parsed and validated, so a misspelt key fails here, not in the
daemon.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from daemon.config_file import default_config_text, parse_config

Overrides = dict[str, dict[str, str | int | float | bool]]
"""{section: {key: value}}, e.g. {"asr": {"smart_turn": False}}."""

_SECTION = re.compile(r"^\[([^\]]+)\]")


def _section_of(line: str) -> str | None:
    match = _SECTION.match(line)
    return match.group(1) if match else None


def _toml_value(value: str | int | float | bool) -> str:
    # JSON's literals are TOML's for these types (true/false, numbers, "strings").
    return json.dumps(value)


def parse_setting(text: str) -> tuple[str, str, str | int | float | bool]:
    """"SECTION.KEY=VALUE" (VALUE in TOML) -> (section, key, value).

    >>> parse_setting("asr.pause_ms=120"), parse_setting('llm.model="smollm2:q4_1"')
    (('asr', 'pause_ms', 120), ('llm', 'model', 'smollm2:q4_1'))

    Raises:
      ValueError: not of that form, or VALUE is not a TOML string, number or boolean.
    """
    name, equals, value_text = text.partition("=")
    section, dot, key = name.strip().rpartition(".")
    if not (equals and dot and section and key):
        raise ValueError(f"{text!r}: expected SECTION.KEY=VALUE, e.g. asr.pause_ms=120")
    try:
        value = msgspec.toml.decode(f"value = {value_text.strip()}")["value"]
    except msgspec.DecodeError as exc:
        raise ValueError(f"{text!r}: the value is not TOML ({exc}); quote strings") from None
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{text!r}: only strings, numbers and booleans can be set")
    return section, key.strip(), value


def config_text_with(overrides: Overrides, base: str | None = None) -> str:
    """`base` (default: the packaged config) with `overrides` applied.

    Raises:
      ValueError: a section that is not in the file, or the result is not a valid config.
    """
    lines = (base if base is not None else default_config_text()).splitlines()
    for section, values in overrides.items():
        header = next((i for i, line in enumerate(lines) if _section_of(line) == section), None)
        if header is None:
            raise ValueError(f"no [{section}] section in the config")
        end = next((i for i in range(header + 1, len(lines)) if _section_of(lines[i])),
                   len(lines))
        for key, value in values.items():
            line = f"{key} = {_toml_value(value)}"
            pattern = re.compile(rf"^{re.escape(key)}\s*=")
            found = next((i for i in range(header + 1, end) if pattern.match(lines[i])), None)
            if found is None:
                lines.insert(header + 1, line)
                end += 1
            else:
                lines[found] = line
    text = "\n".join(lines) + "\n"
    parse_config(text, "benchmark config")  # raises with the problem named
    return text


def write_config_with(path: Path, overrides: Overrides) -> Path:
    """Write the packaged config with `overrides` to `path`; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text_with(overrides), encoding="utf-8")
    return path
