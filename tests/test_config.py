"""Configuration: the packaged default, validation errors, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import build_parser
from daemon.config_file import (
    ConfigError,
    default_config_text,
    load_config,
    parse_config,
    with_overrides,
)


def test_packaged_default_has_three_npcs_with_distinct_voice_settings() -> None:
    config = load_config()
    assert len(config.npcs) >= 3
    voices = {npc.voice for npc in config.npcs.values()}
    assert len(voices) >= 3
    settings = {(v.engine, v.model, v.length_scale, v.noise_scale, v.volume)
                for k, v in config.voices.items() if k in voices}
    assert len(settings) == len(voices)
    # Voices of their own: not only Joe with other settings (issue 18).
    assert {config.voices[v].engine for v in voices} == {"piper", "hibari"}
    assert config.server.host == "127.0.0.1"
    assert {npc.profile for npc in config.npcs.values()} == {"fast", "cinematic"}


def test_config_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "game.toml"
    path.write_text(default_config_text().replace("port = 5557", "port = 6001"))
    assert load_config(path).server.port == 6001


@pytest.mark.parametrize(("change", "message"), [
    (("[server]\n", "[server]\nprot = 1\n"), "unknown field `prot`"),
    (('voice = "joe_gruff"', 'voice = "nobody"'), "npcs.blacksmith.voice = 'nobody'"),
    (('profile = "fast"', 'profile = "epic"'), "profile = 'epic' is not a profile"),
    (("port = 5557", "port = 70000"), "port"),
    (('host = "127.0.0.1"', 'host = "0.0.0.0"'), "allow_remote"),
    (("[llm]", "[llm"), "not valid TOML"),
    (("encoder_window_s = 10.0", "encoder_window_s = 5.0"), "encoder_window_s"),
])
def test_invalid_configs_name_the_problem(change: tuple[str, str], message: str) -> None:
    text = default_config_text().replace(*change, 1)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(text, "game.toml")


def test_remote_bind_needs_a_token() -> None:
    config = load_config()
    with pytest.raises(ConfigError, match="token"):
        with_overrides(config, server_host="0.0.0.0", server_allow_remote=True)
    remote = with_overrides(config, server_host="0.0.0.0", server_allow_remote=True,
                            server_token="s3cret")
    assert remote.server.host == "0.0.0.0"


def test_cli_overrides_apply_and_are_validated() -> None:
    config = with_overrides(load_config(), server_port=6002, llm_instances=2, llm_seed=None)
    assert (config.server.port, config.llm.instances) == (6002, 2)
    with pytest.raises(ConfigError, match="llm"):
        with_overrides(config, llm_instances=0)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for command in ("serve", "say", "demo", "bench", "config", "models"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: npc-voice " + command in capsys.readouterr().out
