"""Languages per NPC: tags, config checks, prompts, Piper voices by name; no network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli.models import _show_licence
from daemon.config_file import ConfigError, config_warnings, default_config_text, parse_config
from daemon.languages import (
    UnknownLanguageError,
    canonical_tag,
    display_name,
    whisper_code,
    xtts_code,
)
from daemon.models import (
    ModelNotFoundError,
    hub_model,
    piper_voice_language,
    resolve_piper_voice,
    variant_dir,
)
from tests.support.configs import config_for_tests, config_text

BASE = config_text(config_for_tests())
UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port on loopback: connection refused


def with_npc(extra: str, **npc: str) -> str:
    """The test config plus `extra` TOML and an NPC "guide" with the given fields."""
    fields = {"display_name": "Guide", "persona": "You are a guide.", **npc}
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in fields.items())
    return f"{BASE}\n{extra}\n[npcs.guide]\n{table}\n"


# ---- tags ------------------------------------------------------------------------------

def test_tags_are_canonical_and_map_to_each_engine() -> None:
    assert canonical_tag("pt_br") == "pt-BR"
    assert canonical_tag("ZH-hans-cn") == "zh-Hans-CN"
    assert canonical_tag("es-419") == "es-419"
    assert display_name("pt-BR") == "Brazilian Portuguese"
    assert display_name("es") == "Spanish"
    assert (whisper_code("pt-BR"), whisper_code("nb")) == ("pt", "no")
    assert (xtts_code("pt-BR"), xtts_code("zh-CN"), xtts_code("sv")) == ("pt", "zh-cn", None)
    for bad in ("klingon", "xx", "pt-BRA1", "", "en--US"):
        with pytest.raises(UnknownLanguageError):
            canonical_tag(bad)


# ---- config errors ---------------------------------------------------------------------

def test_an_unknown_language_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"npcs\.guide\.language.*unknown language 'xx'"):
        parse_config(with_npc("", language="xx"))
    with pytest.raises(ConfigError, match="not a BCP 47 language tag"):
        parse_config(with_npc("", language="Portuguese"))
    with pytest.raises(ConfigError, match=r"^<config>: language: unknown language"):
        parse_config(BASE.replace('language = "en"\n', 'language = "tlh"\n', 1))
    with pytest.raises(ConfigError, match=r"asr\.language"):
        parse_config(BASE.replace('language = "npc"', 'language = "martian"'))


def test_a_voice_of_another_language_is_a_config_error() -> None:
    # The bundled Joe speaks American English.
    with pytest.raises(ConfigError, match=r"npcs\.guide speaks pt-BR but its voice 'joe' "
                                          r"speaks en-US"):
        parse_config(with_npc("", language="pt-BR", voice="joe"))
    # A fetched Piper voice says its language in its name, fetched or not.
    spanish = '[voices.carlos]\nengine = "piper"\nmodel = "es_ES-carlfm-x_low"\n'
    with pytest.raises(ConfigError, match="speaks pt-BR but its voice 'carlos' speaks es-ES"):
        parse_config(with_npc(spanish, language="pt-BR", voice="carlos"))
    # The hibari voice is English only.
    with pytest.raises(ConfigError, match="its voice 'heart' speaks en-US"):
        parse_config(with_npc("", language="es", voice="heart"))


def test_a_piper_voice_file_states_its_language(tmp_path: Path) -> None:
    onnx, config = resolve_piper_voice("joe")
    voice = tmp_path / "mine.onnx"
    shutil.copy(onnx, voice)
    settings = json.loads(config.read_text())
    settings["language"] = {"code": "es_MX"}
    Path(f"{voice}.json").write_text(json.dumps(settings))
    assert piper_voice_language(str(voice)) == "es-MX"
    table = f'[voices.mine]\nengine = "piper"\nmodel = {json.dumps(str(voice))}\n'
    parse_config(with_npc(table, language="es", voice="mine"))
    with pytest.raises(ConfigError, match="speaks en but its voice 'mine' speaks es-MX"):
        parse_config(with_npc(table, voice="mine"))
    with pytest.raises(ConfigError, match="but its Piper model speaks es-MX"):
        parse_config(with_npc(table.replace('engine = "piper"',
                                            'engine = "piper"\nlanguage = "fr"'),
                              language="es", voice="mine"))


def test_a_matching_voice_passes_and_a_regional_one_only_warns() -> None:
    faber = '[voices.faber]\nengine = "piper"\nmodel = "pt_BR-faber-medium"\n'
    config = parse_config(with_npc(faber, language="pt-br", voice="faber"))
    assert config.npc_language("guide") == "pt-BR"
    tugao = '[voices.tugao]\nengine = "piper"\nmodel = "pt_PT-tugão-medium"\n'
    config = parse_config(with_npc(tugao, language="pt-BR", voice="tugao"))
    assert any("pt-PT voice 'tugao' (another accent)" in w for w in config_warnings(config))


def test_xtts_voices_speak_their_npcs_language_if_xtts_knows_it() -> None:
    clone = ('[voices.clone]\nengine = "xtts"\nreference_clips = ["a.wav"]\n'
             'fallback = "{fallback}"\n')
    faber = '[voices.faber]\nengine = "piper"\nmodel = "pt_BR-faber-medium"\n'
    parse_config(with_npc(faber + clone.format(fallback="faber"), language="pt-BR",
                          voice="clone"))
    with pytest.raises(ConfigError, match="speaks pt-BR but its fallback 'joe' speaks en-US"):
        parse_config(with_npc(clone.format(fallback="joe"), language="pt-BR", voice="clone"))
    with pytest.raises(ConfigError, match="sv, which XTTS-v2 does not speak"):
        parse_config(with_npc(clone.format(fallback="joe"), language="sv", voice="clone"))
    two = with_npc(faber + clone.format(fallback="faber"), language="pt-BR", voice="clone")
    two += ('\n[npcs.bard]\ndisplay_name = "Bard"\npersona = "A bard."\nvoice = "clone"\n')
    with pytest.raises(ConfigError, match="used by NPCs of different languages"):
        parse_config(two)


def test_hibari_voices_are_the_bundled_heart_only() -> None:
    with pytest.raises(ConfigError, match='hibari voices use model = "heart"'):
        parse_config(BASE + '\n[voices.emma]\nengine = "hibari"\nmodel = "emma"\n')


# ---- prompt and warnings -------------------------------------------------------------

def test_the_persona_tells_the_llm_which_language_to_answer_in() -> None:
    faber = '[voices.faber]\nengine = "piper"\nmodel = "pt_BR-faber-medium"\n'
    config = parse_config(with_npc(faber, language="pt-BR", voice="faber"))
    prompt = config.npc_system_prompt("guide")
    assert prompt.startswith("You are a guide.")
    assert "Brazilian Portuguese (pt-BR)" in prompt
    # English NPCs keep their persona exactly (and its cached KV state).
    assert config.npc_system_prompt("blacksmith") == config.npcs["blacksmith"].persona


def test_an_english_only_llm_is_named_with_the_multilingual_fetch() -> None:
    faber = '[voices.faber]\nengine = "piper"\nmodel = "pt_BR-faber-medium"\n'
    config = parse_config(with_npc(faber, language="pt-BR", voice="faber"))
    warnings = config_warnings(config)
    assert len(warnings) == 1
    assert "English-only" in warnings[0] and "guide" in warnings[0]
    assert "npc-voice models fetch qwen2.5-1.5b" in warnings[0]
    assert config_warnings(parse_config(BASE)) == []


def test_the_packaged_portuguese_npc_works_once_uncommented() -> None:
    text = default_config_text()
    block = text[text.index("# [voices.faber]"):]
    uncommented = re.sub(r"(?m)^# ?", "", block)
    config = parse_config(text.replace(block, uncommented))
    assert config.npc_language("barqueiro") == "pt-BR"
    assert config.npcs["barqueiro"].voice == "faber"
    assert any("qwen2.5-1.5b" in w for w in config_warnings(config))
    fixed = parse_config(text.replace(block, uncommented).replace(
        'model = "smollm2"', 'model = "qwen2.5-1.5b"'))
    assert config_warnings(fixed) == []
    # The English defaults run offline: no NPC of the packaged config needs a fetch.
    assert {parse_config(text).npc_language(n) for n in parse_config(text).npcs} == {"en"}


# ---- Piper voices by name (fetch code: no network here) ------------------------------

def test_piper_voices_are_named_as_in_the_official_repository(tmp_path: Path) -> None:
    model, variant = hub_model("piper:pt_BR-faber-medium")
    assert model.repo_id == "rhasspy/piper-voices"
    assert model.variants[variant] == (
        "pt/pt_BR/faber/medium/pt_BR-faber-medium.onnx",
        "pt/pt_BR/faber/medium/pt_BR-faber-medium.onnx.json",
        "pt/pt_BR/faber/medium/MODEL_CARD")
    with pytest.raises(ModelNotFoundError, match="not a Piper voice name"):
        hub_model("piper:faber")
    with pytest.raises(ModelNotFoundError,
                       match="run `npc-voice models fetch piper:pt_BR-faber-medium`"):
        resolve_piper_voice("pt_BR-faber-medium", tmp_path)
    # Once fetched, the voice resolves to its files in the cache.
    folder = variant_dir(model, tmp_path)
    for name in model.variants[variant]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    onnx, config = resolve_piper_voice("pt_BR-faber-medium", tmp_path)
    assert onnx.name == "pt_BR-faber-medium.onnx" and config.name.endswith(".onnx.json")


def test_fetching_a_piper_voice_shows_its_model_card(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    model, variant = hub_model("piper:pt_BR-faber-medium")
    card = variant_dir(model, tmp_path) / model.licence_file
    card.parent.mkdir(parents=True)
    card.write_text("# Model card for faber (medium)\n\n* License: CC0-1.0\n")
    _show_licence("piper:pt_BR-faber-medium", tmp_path)
    out = capsys.readouterr().out
    assert "licence of piper:pt_BR-faber-medium" in out and "CC0-1.0" in out


def test_fetching_a_piper_voice_without_network_fails_in_one_sentence(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGING"))}
    env |= {"NPC_VOICE_MODELS": str(tmp_path / "models"), "HF_HOME": str(tmp_path / "hf"),
            "HF_ENDPOINT": UNREACHABLE_HUB}
    result = subprocess.run([sys.executable, "-m", "daemon", "models", "fetch",
                             "piper:pt_BR-faber-medium", "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "cannot reach the Hugging Face Hub" in line
    assert "rhasspy/piper-voices" in line


def test_whisper_models_are_fetched_by_name() -> None:
    model, _ = hub_model("whisper:small")
    assert model.repo_id == "Systran/faster-whisper-small" and model.licence == "MIT"
    assert "model.bin" in model.variants["default"]
    with pytest.raises(ModelNotFoundError, match="no Whisper model named 'huge'"):
        hub_model("whisper:huge")
