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

from daemon.config import DEFAULT_CONFIG_NAME, HIBARI_VOICE, Config
from daemon.languages import (
    UnknownLanguageError,
    canonical_tag,
    is_english,
    primary,
    region,
    same_language,
    xtts_code,
)
from daemon.models import ModelNotFoundError, llm_is_english_only, piper_voice_language


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
    _validate_languages(config, source)
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
    reply_tokens = _reply_tokens(config)
    for section, tier in (("llm", config.llm), ("llm_narrative", config.llm_narrative)):
        if tier is not None and tier.backend == "openai" and not tier.url:
            raise ConfigError(f'{source}: {section}.backend = "openai" needs {section}.url, '
                              'e.g. "http://127.0.0.1:8080/v1"')
        if tier is not None and tier.backend != "openai" \
                and reply_tokens + _PROMPT_FLOOR_TOKENS > tier.n_ctx:
            raise ConfigError(
                f"{source}: {section}.n_ctx = {tier.n_ctx} leaves no room for a prompt beside "
                f"replies of up to {reply_tokens} tokens (at least {_PROMPT_FLOOR_TOKENS} "
                f"more needed); raise n_ctx or lower max_reply_tokens"
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


def _known_language(tag: str, key: str, source: str) -> str:
    try:
        return canonical_tag(tag)
    except UnknownLanguageError as exc:
        raise ConfigError(f"{source}: {key}: {exc}") from None


def _validate_languages(config: Config, source: str) -> None:
    """Every language tag is known, and every NPC's voice speaks the NPC's language."""
    _known_language(config.language, "language", source)
    asr_language = config.asr.language
    if asr_language not in ("npc", "auto"):
        _known_language(asr_language, "asr.language (\"npc\", \"auto\" or a tag)", source)
    for name, settings in config.voices.items():
        if settings.language is not None:
            _known_language(settings.language, f"voices.{name}.language", source)
    for npc_id, npc in config.npcs.items():
        _known_language(npc.language or config.language, f"npcs.{npc_id}.language", source)
    for npc_id, npc in config.npcs.items():
        language = config.npc_language(npc_id)
        voice = config.voices.get(npc.voice)
        if voice is None:
            continue  # reported below, with the known voices
        spoken = voice_language(config, npc.voice)
        if spoken is not None and not same_language(spoken, language):
            raise ConfigError(
                f"{source}: npcs.{npc_id} speaks {language} but its voice {npc.voice!r} "
                f"speaks {spoken}; choose a {language} voice (README, \"Languages\": "
                f"`npc-voice models fetch piper:<voice>`) or set npcs.{npc_id}.language")
        if voice.engine == "xtts":
            if xtts_code(language) is None:
                raise ConfigError(
                    f"{source}: npcs.{npc_id} speaks {language}, which XTTS-v2 does not "
                    f"speak (voice {npc.voice!r}); give it a Piper voice of its language")
            others = {config.npc_language(other) for other, o in config.npcs.items()
                      if o.voice == npc.voice}
            if voice.language is None and len({primary(tag) for tag in others}) > 1:
                raise ConfigError(
                    f"{source}: XTTS voice {npc.voice!r} is used by NPCs of different "
                    f"languages ({', '.join(sorted(others))}); set voices.{npc.voice}."
                    "language, or give each language its own voice")


def voice_language(config: Config, name: str) -> str | None:
    """BCP 47 tag of what voice `name` speaks, or None where that cannot be known yet.

    Piper: the model's language (its name or .onnx.json; None if the file is not there
    yet: loading reports a missing model). hibari "heart": American English. XTTS: the
    voice's `language`, else that of the first NPC using it.
    """
    voice = config.voices[name]
    if voice.engine == "piper":
        try:
            return piper_voice_language(voice.model)
        except ModelNotFoundError:
            return None
    if voice.engine == "hibari":
        return "en-US"
    if voice.language is not None:
        return canonical_tag(voice.language)
    users = [npc_id for npc_id, npc in config.npcs.items() if npc.voice == name]
    return config.npc_language(users[0]) if users else None


_PROMPT_FLOOR_TOKENS = 128
"""Context a prompt needs at the least beside the reply: a short persona and line."""


def _reply_tokens(config: Config) -> int:
    """The longest reply, in tokens.

    Both tiers see the same conversation; a two-tier reply is the opener plus the
    narrative tier's reply.
    """
    reply_tokens = config.llm.max_reply_tokens
    if config.llm_narrative is not None:
        reply_tokens = max(reply_tokens, config.llm.opener_max_tokens
                           + config.llm_narrative.max_reply_tokens)
    return reply_tokens


def config_warnings(config: Config) -> list[str]:
    """What a valid configuration may still get wrong, one sentence each (for the log).

    An English-only LLM (the bundled SmolLM2-135M) asked to answer in another language
    mostly answers in English; a voice of another region speaks with its accent; a
    context too small for `history_turns` full turns forgets turns sooner.
    """
    warnings = []
    reply_tokens = _reply_tokens(config)
    # Rough upper bound of the prompt: persona + full history + reply, ~48 tokens of
    # user line and chat markup per turn.
    needed = 512 + config.llm.history_turns * (reply_tokens + 48) + reply_tokens
    for section, tier in (("llm", config.llm), ("llm_narrative", config.llm_narrative)):
        if tier is not None and tier.backend != "openai" and needed > tier.n_ctx:
            warnings.append(
                f"{section}.n_ctx = {tier.n_ctx} may not hold history_turns = "
                f"{config.llm.history_turns} turns with replies of up to {reply_tokens} "
                f"tokens (about {needed} tokens): a conversation that fills it forgets its "
                "oldest turns sooner")
    foreign = sorted(npc_id for npc_id in config.npcs
                     if not is_english(config.npc_language(npc_id)))
    tiers = [("llm", config.llm)]
    if config.llm_narrative is not None:
        tiers.append(("llm_narrative", config.llm_narrative))
    for section, tier in tiers:
        if foreign and tier.backend != "openai" and llm_is_english_only(tier.model):
            languages = sorted({config.npc_language(npc_id) for npc_id in foreign})
            warnings.append(
                f"{section}.model = {tier.model!r} is English-only (SmolLM2-135M), but NPC(s) "
                f"{', '.join(foreign)} speak {', '.join(languages)}: they will mostly answer "
                "in English. Fetch a multilingual model with `npc-voice models fetch "
                f'qwen2.5-1.5b` and set {section}.model = "qwen2.5-1.5b"')
    for npc_id, npc in config.npcs.items():
        language = config.npc_language(npc_id)
        spoken = voice_language(config, npc.voice)
        if spoken is not None and region(language) and region(spoken) \
                and region(language) != region(spoken):
            warnings.append(f"npcs.{npc_id} speaks {language} with the {spoken} voice "
                            f"{npc.voice!r} (another accent)")
    return warnings


def _validate_voices(config: Config, source: str) -> None:
    for name, voice in config.voices.items():
        if voice.engine == "hibari" and voice.model != HIBARI_VOICE:
            raise ConfigError(
                f"{source}: voices.{name}.model = {voice.model!r}: hibari voices use "
                f'model = "{HIBARI_VOICE}", the voice inside the hibari-tts package (its '
                "other voices would be downloaded at run time, which the daemon never does)")
        if voice.engine == "piper" and voice.language is not None:
            try:
                spoken = piper_voice_language(voice.model)
            except ModelNotFoundError:
                spoken = None
            if spoken is not None and not same_language(spoken, voice.language):
                raise ConfigError(f"{source}: voices.{name}.language = {voice.language!r}, "
                                  f"but its Piper model speaks {spoken}")
        if voice.engine == "hibari" and voice.language is not None \
                and not is_english(voice.language):
            raise ConfigError(f"{source}: voices.{name}.language = {voice.language!r}, but "
                              "the hibari voice speaks English")
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
        spoken, fallback_spoken = (voice_language(config, name),
                                   voice_language(config, voice.fallback or ""))
        if spoken and fallback_spoken and not same_language(spoken, fallback_spoken):
            raise ConfigError(
                f"{source}: voices.{name} speaks {spoken} but its fallback "
                f"{voice.fallback!r} speaks {fallback_spoken}; choose a {spoken} Piper voice")


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
