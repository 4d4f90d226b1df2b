"""Scenes through the real addon in a real headless Godot 4, against a real daemon (issue 15).

The scenario godot_addon/test/e2e/scenes.gd starts a scene of the blacksmith (on an
NpcVoicePlayer3D) and the innkeeper (on an NpcVoicePlayer) with `max_exchanges` 3, then a
second one that the player joins and the game ends, then scenes refused by the addon. Audio is
really played (headless Godot's Dummy driver mixes in real time): a line has finished playing
when its `speech_finished` comes, every sample consumed by the mixer (`client_played_ms` equals
the daemon's `audio_ms`), and the next line may only start after that. The scenario also
counts, every frame, the voice players that are playing: never two at once. Lip sync is on:
each line's words, visemes or mouth values fire on its player as it plays, and none for the
audio a `scene_cut` dropped.
"""

from __future__ import annotations

import pytest

from daemon.launcher import DaemonProcess
from tests.support.godot import GodotResult, godot, godot_daemon, run_scenario  # noqa: F401
from tests.test_godot_lip_sync import expected_lip_events, fired_lip_events


@pytest.fixture(scope="module")
def scenes_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "scenes", godot_daemon.port)


def lines_of(run: GodotResult, case: str) -> list[dict]:
    scene_id = run.one("case", name=case)["scene_id"]
    return run.of("scene_line_started", scene_id=scene_id)


def test_a_scene_plays_its_lines_in_turn_then_ends(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    scene_id = run.one("case", name="three_lines")["scene_id"]
    lines = lines_of(run, "three_lines")
    assert [line["npc_id"] for line in lines] == ["blacksmith", "innkeeper", "blacksmith"], lines
    assert not any(line["answers_player"] for line in lines), lines
    ended = run.one("scene_ended", scene_id=scene_id)
    assert ended["reason"] == "max_exchanges" and ended["lines"] == 3, ended
    previous_end = -1
    for line in lines:
        turn_id = line["turn_id"]
        started = run.one("speech_started", turn_id=turn_id)
        finished = run.one("speech_finished", turn_id=turn_id)
        # Heard to the end: every sample the daemon sent was consumed by the mixer.
        assert finished["outcome"] == "done", finished
        assert finished["timings"]["audio_ms"] > 0, finished
        assert finished["timings"]["client_played_ms"] == pytest.approx(
            finished["timings"]["audio_ms"], abs=0.1), finished
        # Announced, then started, only after the previous line had finished playing.
        assert previous_end < run.index(line) < run.index(started) < run.index(finished)
        subtitles = run.of("subtitle_received", turn_id=turn_id)
        assert subtitles and all(run.index(started) < run.index(s) < run.index(finished)
                                 for s in subtitles), subtitles
        previous_end = run.index(finished)
    assert previous_end < run.index(ended)


def test_each_line_plays_on_its_npcs_player_never_two_at_once(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    for line in lines_of(run, "three_lines") + lines_of(run, "joined"):
        played_on = run.of("played_on", turn_id=line["turn_id"])
        expected = {"blacksmith": "Blacksmith3D", "innkeeper": "Innkeeper"}[line["npc_id"]]
        assert [p["player"] for p in played_on] == [expected], (line, played_on)
    overlap = run.one("overlap")
    assert overlap["most_playing"] == 1 and overlap["playing_frames"] > 0, overlap


def test_the_player_joins_in_and_is_answered_next(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    said = run.one("case", name="interjection")["turn_id"]
    lines = lines_of(run, "joined")
    assert [line["npc_id"] for line in lines[:2]] == ["innkeeper", "blacksmith"], lines
    answer = lines[1]
    assert answer["turn_id"] == said and answer["answers_player"] is True, lines
    interrupted = run.one("speech_finished", turn_id=lines[0]["turn_id"])
    assert interrupted["outcome"] == "done", interrupted
    assert run.index(interrupted) < run.index(answer)
    assert run.one("speech_finished", turn_id=said)["outcome"] == "done"
    assert not any(line["answers_player"] for line in lines[2:]), lines


def test_the_interrupted_line_plays_only_to_the_daemons_cut(scenes_run: GodotResult) -> None:
    """The player spoke during the first line's first chunk: the daemon's `scene_cut` says
    after which chunk the line ends. The line plays exactly to there (the start of the next
    chunk received, or all it received when nothing later came; a cut falling inside what
    the generator already holds may overrun by a mix step), and no later subtitle shows."""
    run = scenes_run
    run.assert_clean()
    turn_id = lines_of(run, "joined")[0]["turn_id"]
    report = run.one("cuts")
    cuts = [cut for cut in report["cuts"] if cut["turn_id"] == turn_id]
    assert len(cuts) == 1 and cuts[0]["after_chunk_index"] >= 0, report["cuts"]
    after = cuts[0]["after_chunk_index"]
    starts = {int(chunk): ms for chunk, ms in report["chunk_starts_ms"][str(turn_id)].items()}
    later = [ms for chunk, ms in starts.items() if chunk > after]
    cut_ms = min(later) if later else report["received_ms"][str(turn_id)]
    played = run.one("speech_finished", turn_id=turn_id)["timings"]["client_played_ms"]
    assert cut_ms - 0.1 <= played <= cut_ms + 400, (played, cut_ms, starts, after)
    subtitles = run.of("subtitle_received", turn_id=turn_id)
    assert 1 <= len(subtitles) <= after + 1, (subtitles, after)


def test_each_line_fires_its_lip_sync_as_it_plays(scenes_run: GodotResult) -> None:
    """Scene lines wait for their moment (their timing messages with them), then fire every
    event on their NPC's player, in sample order, each once its sample was played."""
    run = scenes_run
    run.assert_clean()
    for line in lines_of(run, "three_lines"):
        expected = expected_lip_events(run, line["turn_id"])
        fired = fired_lip_events(run, line["turn_id"])
        assert expected, line
        assert [(e["kind"], e["text"]) for e in fired] == [(e.kind, e.text) for e in expected]
        assert all(got["played"] >= want.offset for got, want in zip(fired, expected, strict=True))
        kinds = {e.kind for e in expected}
        assert kinds == ({"word", "viseme"} if line["npc_id"] == "blacksmith" else {"mouth"})


def test_no_lip_sync_for_the_audio_a_cut_dropped(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    turn_id = lines_of(run, "joined")[0]["turn_id"]
    cuts = [cut for cut in run.one("cuts")["cuts"] if cut["turn_id"] == turn_id]
    after = cuts[0]["after_chunk_index"]
    expected = expected_lip_events(run, turn_id)
    kept = [e for e in expected if e.chunk_index <= after]
    fired = fired_lip_events(run, turn_id)
    assert [(e["kind"], e["text"], e["value"]) for e in fired] == [
        (e.kind, e.text, pytest.approx(e.value, abs=1e-3)) for e in kept], (after, expected)
    finished = run.one("speech_finished", turn_id=turn_id)
    later = [e for e in run.of("lip", turn_id=turn_id) if run.index(e) > run.index(finished)]
    assert later == [], later


def test_end_scene_stops_the_line_and_ends_the_scene(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    case = run.one("case", name="ended_line")
    finished = run.one("speech_finished", turn_id=case["turn_id"])
    assert finished["outcome"] == "cancelled", finished
    ended = run.one("scene_ended", scene_id=case["scene_id"])
    assert ended["reason"] == "scene_end" and ended["lines"] >= 2, ended
    assert run.index(run.one("case", name="ended_line")) < run.index(finished) < run.index(ended)
    later = [e for e in run.events[run.index(ended):]
             if e["event"] == "scene_line_started" and e["scene_id"] == case["scene_id"]]
    assert later == []


@pytest.mark.parametrize(("case", "message"), [
    ("alone", "a scene has 2 to 6 NPCs, not 1"),
    ("twice", "blacksmith is in the scene twice"),
    ("stranger", "no NPC nobody; the daemon voices"),
])
def test_a_scene_refused_here_ends_with_one_error(scenes_run: GodotResult, case: str,
                                                  message: str) -> None:
    run = scenes_run
    run.assert_clean()
    scene_id = run.one("case", name=case)["scene_id"]
    ended = run.one("scene_ended", scene_id=scene_id)
    assert ended["reason"] == "error" and ended["lines"] == 0, ended
    error = run.events[run.index(ended) - 1]
    assert error["event"] == "error_received" and error["code"] == "bad_scene", error
    assert message in error["message"] and error["turn_id"] == -1, error


def test_no_other_error(scenes_run: GodotResult) -> None:
    run = scenes_run
    run.assert_clean()
    late = run.one("case", name="say_after_the_end")["turn_id"]
    errors = run.of("error_received")
    assert sorted(e["code"] for e in errors) == ["bad_scene"] * 3 + ["unknown_scene"], errors
    assert run.one("error_received", code="unknown_scene")["turn_id"] == late
    assert run.one("speech_finished", turn_id=late)["outcome"] == "error"
