"""The addon's GDScript unit tests (godot_addon/test/run_tests.gd) in a real headless Godot.

They cover the ZMTP codec, the PCM conversions, the playback queue against Godot's real mixer
(pre-buffer, generator kept alive across a replacement, a player stopped or taken over by game
code, chunk starts signalled as the mixer reaches them), the turn table's handling of a cancel
that crosses a barge-in, the microphone resampler and the refusal of surround output for
voice input. Godot: tests/support/godot.py (NPC_VOICE_GODOT).
"""

from __future__ import annotations

import re

from tests.support.godot import PROJECT, GodotProcess, godot  # noqa: F401 (fixture)


def test_gdscript_unit_tests_pass_in_godot(godot: str) -> None:  # noqa: F811
    run = GodotProcess(godot, ["--headless", "--path", str(PROJECT), "-s",
                               "res://test/run_tests.gd"]).finish(120)
    assert run.returncode == 0, run.output
    match = re.search(r"(\d+) checks, (\d+) failures", run.output)
    assert match and match.group(2) == "0" and int(match.group(1)) >= 50, run.output
    run.assert_clean()
