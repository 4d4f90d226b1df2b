"""The Godot addon's GDScript parses, lints, is formatted, and follows the project's rules.

No Godot binary is needed: gdtoolkit (gdparse, gdlint, gdformat) checks syntax and style, and
the rules of notes/style.md rule 15 that gdlint does not know (every variable, argument and
signal typed, return types stated, past-tense signals, few prefixed class_names, small files)
are checked on gdtoolkit's parse tree. When a `godot` binary is on PATH, the addon's own
headless tests (godot_addon/test/run_tests.gd) run too. API names are checked against Godot's
class reference in test_godot_addon_api.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from gdtoolkit.parser import parser as gd_parser
from lark import Token, Tree

PROJECT = Path(__file__).resolve().parents[1] / "godot_addon"
ADDON = PROJECT / "addons" / "npc_voice"
MAX_FILE_LINES = 450
CLASS_NAME_PREFIX = "NpcVoice"
IRREGULAR_PAST = {"got", "sent", "began", "lost", "read", "set", "built", "heard"}


def gd_files() -> list[Path]:
    return sorted(p for p in PROJECT.rglob("*.gd") if ".godot" not in p.parts)


def gdtoolkit(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a gdtoolkit command (`parser`, `linter`, `formatter`) with this Python."""
    return subprocess.run([sys.executable, "-m", f"gdtoolkit.{tool}", *args],
                          capture_output=True, text=True, cwd=PROJECT, timeout=120)


def test_there_is_gdscript_to_check() -> None:
    names = {p.name for p in gd_files()}
    assert {"plugin.gd", "npc_voice_client.gd", "zmtp_connection.gd", "zmtp_codec.gd",
            "voice_output.gd", "demo.gd", "run_tests.gd"} <= names


def test_every_file_parses() -> None:
    result = gdtoolkit("parser", *map(str, gd_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_gdlint_finds_no_problem() -> None:
    result = gdtoolkit("linter", "addons", "demo", "test")
    assert result.returncode == 0, result.stdout + result.stderr


def test_files_are_gdformat_formatted() -> None:
    result = gdtoolkit("formatter", "--check", *map(str, gd_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def _untyped(tree: Tree) -> list[str]:
    """Declarations without a type (`var x = 1`, `var x`, `func f(a)`, `signal s(a)`, no `->`)."""
    found = []
    for node in tree.iter_subtrees():
        line = node.meta.line if not node.meta.empty else 0
        if node.data in ("class_var_assigned", "class_var_empty", "func_var_assigned",
                         "func_var_empty", "const_assigned"):
            name = next(t for t in node.children if isinstance(t, Token)).value
            found.append(f"line {line}: `{name}` has no type")
        elif node.data in ("func_arg_regular", "signal_arg_regular"):
            found.append(f"line {line}: argument `{node.children[0]}` has no type")
        elif node.data == "for_stmt":
            found.append(f"line {line}: loop variable `{node.children[0]}` has no type")
        elif node.data == "func_header" and not any(
                isinstance(t, Token) and t.type == "TYPE_HINT" for t in node.children):
            found.append(f"line {line}: func `{node.children[0]}` has no return type")
    return found


@pytest.mark.parametrize("path", gd_files(), ids=lambda p: p.name)
def test_every_declaration_is_typed(path: Path) -> None:
    tree = gd_parser.parse(path.read_text("utf-8"), gather_metadata=True)
    problems = _untyped(tree)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", gd_files(), ids=lambda p: p.name)
def test_files_are_small_and_regions_balanced(path: Path) -> None:
    text = path.read_text("utf-8")
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name} has {text.count(chr(10))} lines"
    assert text.count("#region ") == text.count("#endregion"), f"{path.name}: unbalanced regions"


def test_signals_are_past_tense_and_documented() -> None:
    for path in gd_files():
        lines = path.read_text("utf-8").splitlines()
        for i, line in enumerate(lines):
            match = re.match(r"signal (\w+)", line)
            if not match:
                continue
            last_word = match.group(1).rsplit("_", 1)[-1]
            assert last_word.endswith("ed") or last_word in IRREGULAR_PAST, (
                f"{path.name}: signal {match.group(1)} is not past tense")
            assert lines[i - 1].lstrip().startswith("##"), (
                f"{path.name}: signal {match.group(1)} has no ## doc comment")


def test_few_global_class_names_all_prefixed() -> None:
    names = []
    for path in gd_files():
        match = re.search(r"^class_name (\w+)", path.read_text("utf-8"), re.MULTILINE)
        if match:
            names.append(match.group(1))
    assert all(name.startswith(CLASS_NAME_PREFIX) for name in names), names
    assert sorted(names) == ["NpcVoiceMouth", "NpcVoicePlayer", "NpcVoicePlayer2D",
                            "NpcVoicePlayer3D"], names


def test_plugin_manages_the_autoload_in_enable_and_disable() -> None:
    text = (ADDON / "plugin.gd").read_text("utf-8")
    assert text.startswith("@tool\nextends EditorPlugin")
    enable = text.split("func _enable_plugin()")[1].split("\nfunc ")[0]
    disable = text.split("func _disable_plugin()")[1].split("\nfunc ")[0]
    assert "add_autoload_singleton(" in enable and "remove_autoload_singleton(" in disable
    settings = (ADDON / "npc_voice_settings.gd").read_text("utf-8")
    keys = re.findall(r'"(npc_voice/[a-z_/]+)"', settings)
    assert len(keys) >= 8 and all(k.count("/") == 2 for k in keys), keys
    project = (PROJECT / "project.godot").read_text("utf-8")
    assert 'NpcVoice="*res://addons/npc_voice/npc_voice_client.gd"' in project
    assert 'enabled=PackedStringArray("res://addons/npc_voice/plugin.cfg")' in project
