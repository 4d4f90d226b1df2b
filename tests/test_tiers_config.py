"""Two-tier configuration: the packaged example, defaults, validation errors."""

from __future__ import annotations

import pytest

from daemon.config_file import (
    ConfigError,
    config_warnings,
    default_config_text,
    load_config,
    parse_config,
)


def with_narrative_example(npc_lines: str = "") -> str:
    """The packaged config with its commented [llm_narrative] example switched on."""
    text = default_config_text()
    block = text[text.index("# [llm_narrative]"):text.index("# Every NPC")]
    section = "\n".join(line[2:] for line in block.splitlines()) + "\n"
    head, npcs = text.split("[npcs.blacksmith]", 1)
    npcs = npcs.replace('profile = "fast"\n', f'profile = "fast"\n{npc_lines}', 1)
    return head + section + "[npcs.blacksmith]" + npcs


def test_the_packaged_config_is_single_tier() -> None:
    config = load_config()
    assert config.llm_narrative is None
    assert {config.npc_tiers(npc) for npc in config.npcs} == {"fast"}
    assert config.npc_profiles("oracle") == ("cinematic", None)


def test_the_commented_example_enables_two_tiers_for_every_npc() -> None:
    config = parse_config(with_narrative_example())
    assert config.llm_narrative is not None and config.llm_narrative.model == "qwen2.5-14b"
    assert config.llm_narrative.n_gpu_layers == -1 and config.llm_narrative.flash_attn
    assert {config.npc_tiers(npc) for npc in config.npcs} == {"both"}
    # The profile follows the tier: the NPC's profile opens, narrative_profile continues.
    assert config.npc_profiles("blacksmith") == ("fast", "cinematic")
    assert config.npc_profiles("oracle") == ("cinematic", "cinematic")
    # A per-turn override applies to the whole reply.
    assert config.npc_profiles("blacksmith", "cinematic") == ("cinematic", "cinematic")


def test_an_npc_may_switch_either_tier_off() -> None:
    config = parse_config(with_narrative_example('tiers = "narrative"\n'))
    assert config.npc_tiers("blacksmith") == "narrative"
    assert config.npc_profiles("blacksmith") == ("cinematic", None)
    config = parse_config(with_narrative_example('tiers = "fast"\n'))
    assert config.npc_profiles("blacksmith") == ("fast", None)


@pytest.mark.parametrize(("text", "message"), [
    (default_config_text().replace('profile = "fast"\n', 'profile = "fast"\ntiers = "both"\n', 1),
     r"npcs.blacksmith.tiers = 'both' needs an \[llm_narrative\] section"),
    (with_narrative_example('narrative_profile = "epic"\n'),
     "npcs.blacksmith.narrative_profile = 'epic' is not a profile"),
    (with_narrative_example('tiers = "all"\n'), "tiers"),
    (with_narrative_example().replace("max_reply_tokens = 96\n", "max_reply_tokens = 4000\n"),
     "n_ctx = 2048 leaves no room for a prompt beside replies of up to 4032 tokens"),
])
def test_invalid_tier_settings_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "game.toml")


def test_a_context_short_of_the_history_is_a_warning_not_an_error() -> None:
    """Long replies in both tiers: 8 full turns no longer fit 2048 tokens. The daemon
    starts (a conversation that fills the context forgets its oldest turns sooner) and
    the log says so; the packaged settings fit."""
    long_replies = with_narrative_example().replace("max_reply_tokens = 96\n",
                                                    "max_reply_tokens = 400\n")
    warnings = config_warnings(parse_config(long_replies))
    assert any("llm.n_ctx = 2048 may not hold history_turns = 8" in w for w in warnings)
    assert not any("n_ctx" in w for w in config_warnings(load_config()))
