"""Reading the configuration: TOML files, cross-checks, command-line overrides.

The packaged `default_config.toml` is both the defaults a fresh install runs with and
the commented example users copy. Unknown keys are rejected so that a typo in a config
file is an error naming the key, not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
from importlib import resources
from pathlib import Path

import msgspec

from daemon.config import DEFAULT_CONFIG_NAME, Config


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file, the key and the fix."""


def default_config_text() -> str:
    """The packaged, commented default configuration (TOML text)."""
    return resources.files("daemon").joinpath(DEFAULT_CONFIG_NAME).read_text("utf-8")


def parse_config(text: str | bytes, source: str = "<config>") -> Config:
    """Parse and cross-check TOML text.

    Raises:
      ConfigError: syntax error, unknown key, bad value, or a dangling reference
        (an NPC naming a voice or profile that does not exist).
    """
    try:
        config = msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    validate(config, source)
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Load `path`, or the packaged default configuration when None.

    Raises:
      ConfigError: the file is missing or invalid (see `parse_config`).
    """
    if path is None:
        return parse_config(default_config_text(), source=f"(packaged) {DEFAULT_CONFIG_NAME}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return _with_clips_relative_to(parse_config(data, source=str(path)), path.parent.resolve())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(config: Config, source: str = "<config>") -> None:
    """Check what a schema cannot: references between sections and the bind policy.

    Raises:
      ConfigError: naming the offending key.
    """
    if not config.npcs:
        raise ConfigError(f"{source}: no NPCs configured; add at least one [npcs.<id>] table")
    profiles = config.profile_names()
    for npc_id, npc in config.npcs.items():
        if not 1 <= len(npc_id) <= 64:
            raise ConfigError(f"{source}: NPC id {npc_id!r} must be 1-64 characters")
        if npc.voice not in config.voices:
            raise ConfigError(
                f"{source}: npcs.{npc_id}.voice = {npc.voice!r} is not a configured voice "
                f"(known: {', '.join(sorted(config.voices))})"
            )
        if npc.profile not in profiles:
            raise ConfigError(
                f"{source}: npcs.{npc_id}.profile = {npc.profile!r} is not a profile "
                f"(known: {', '.join(profiles)})"
            )
        if not npc.persona.strip():
            raise ConfigError(f"{source}: npcs.{npc_id}.persona is empty")
        if npc.narrative_profile not in profiles:
            raise ConfigError(
                f"{source}: npcs.{npc_id}.narrative_profile = {npc.narrative_profile!r} is "
                f"not a profile (known: {', '.join(profiles)})"
            )
        if npc.tiers in ("both", "narrative") and config.llm_narrative is None:
            raise ConfigError(
                f"{source}: npcs.{npc_id}.tiers = {npc.tiers!r} needs an [llm_narrative] "
                "section (the narrative model)"
            )
    _validate_voices(config, source)
    llm, narrative = config.llm, config.llm_narrative
    # Both tiers see the same conversation; a two-tier reply is the opener plus the
    # narrative tier's reply.
    reply_tokens = llm.max_reply_tokens
    if narrative is not None:
        reply_tokens = max(reply_tokens, llm.opener_max_tokens + narrative.max_reply_tokens)
    # Rough upper bound of the prompt: persona + full history + reply, ~48 tokens of
    # user line and chat markup per turn (a llama.cpp prompt over n_ctx fails the turn).
    needed = 512 + llm.history_turns * (reply_tokens + 48) + reply_tokens
    for section, tier in (("llm", llm), ("llm_narrative", narrative)):
        if tier is not None and tier.backend == "openai" and not tier.url:
            raise ConfigError(f'{source}: {section}.backend = "openai" needs {section}.url, '
                              'e.g. "http://127.0.0.1:8080/v1"')
        if tier is not None and tier.backend == "openai":
            continue  # the server's own context size applies
        if tier is not None and needed > tier.n_ctx:
            raise ConfigError(
                f"{source}: {section}.n_ctx = {tier.n_ctx} is too small for history_turns = "
                f"{llm.history_turns} and replies of up to {reply_tokens} tokens "
                f"(about {needed} tokens needed); raise n_ctx or lower history_turns"
            )
    server = config.server
    if not _is_loopback(server.host):
        if not server.allow_remote:
            raise ConfigError(
                f"{source}: server.host = {server.host!r} is not a loopback address; "
                "set server.allow_remote = true (and a token) to accept other machines"
            )
        if not server.token:
            raise ConfigError(f"{source}: server.allow_remote needs server.token to be set")


def _validate_voices(config: Config, source: str) -> None:
    for name, voice in config.voices.items():
        if voice.engine != "xtts":
            if voice.reference_clips or voice.fallback:
                raise ConfigError(f"{source}: voices.{name}: reference_clips and fallback are "
                                  'for engine = "xtts" voices')
            continue
        if not voice.reference_clips:
            raise ConfigError(f"{source}: voices.{name}.reference_clips is empty; an XTTS "
                              "voice needs at least one recording of the voice to clone")
        fallback = config.voices.get(voice.fallback or "")
        if fallback is None or fallback.engine != "piper":
            piper = ", ".join(sorted(n for n, v in config.voices.items() if v.engine == "piper"))
            raise ConfigError(
                f"{source}: voices.{name}.fallback = {voice.fallback!r} must name a Piper "
                f"voice, spoken when XTTS cannot run (Piper voices: {piper or 'none'})")


def _with_clips_relative_to(config: Config, folder: Path) -> Config:
    """`config` with relative reference clip paths made absolute against `folder`."""
    voices = {}
    for name, voice in config.voices.items():
        clips = [str(folder / clip) if not Path(clip).expanduser().is_absolute()
                 else str(Path(clip).expanduser()) for clip in voice.reference_clips]
        voices[name] = msgspec.structs.replace(voice, reference_clips=clips)
    return msgspec.structs.replace(config, voices=voices)


def with_overrides(config: Config, **server_and_llm: object) -> Config:
    """Return a copy of `config` with CLI overrides applied, then re-validated.

    Keyword names are `<section>_<field>`, e.g. `server_port=6000`, `llm_instances=2`;
    None values are ignored.

    Raises:
      ConfigError: an override makes the configuration invalid.
    """
    sections: dict[str, dict[str, object]] = {}
    for key, value in server_and_llm.items():
        if value is None:
            continue
        section, _, field = key.partition("_")
        sections.setdefault(section, {})[field] = value
    updates = {}
    for section, fields in sections.items():
        current = getattr(config, section)
        merged = msgspec.structs.asdict(current) | fields
        try:
            updates[section] = msgspec.convert(merged, type(current))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"command-line override of [{section}]: {exc}") from None
    config = msgspec.structs.replace(config, **updates)
    validate(config, "command line")
    return config
