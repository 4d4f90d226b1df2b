"""The real addon in a real headless Godot 4 against a real daemon process.

Each test runs one scenario (godot_addon/test/e2e/<name>.gd) driving the `NpcVoice` autoload
and the voice player nodes, then judges the events it printed (tests/support/godot.py). Audio
is really played: headless Godot's Dummy driver mixes in real time, and the addon's
`client_played_ms` counts the frames its AudioStreamGenerators consumed (pushed minus still
held), so a turn heard to the end must have consumed all the audio the daemon sent.
Every run must also be free of Godot "SCRIPT ERROR" / "ERROR:" lines.
"""

from __future__ import annotations

import pytest

from daemon.launcher import DaemonProcess
from tests.support.godot import (  # noqa: F401 (fixtures)
    PROJECT,
    GodotProcess,
    GodotResult,
    godot,
    godot_daemon,
    run_scenario,
)


def assert_heard_to_the_end(finished: dict) -> None:
    """A turn played completely: done, no underrun, every sample consumed by the mixer."""
    timings = finished["timings"]
    assert finished["outcome"] == "done", finished
    assert finished["underruns"] == 0, finished
    assert timings["lost_blocks"] == 0, finished
    assert timings["client_ttfa_ms"] > 0, finished
    assert timings["audio_ms"] > 0, finished
    assert timings["client_played_ms"] == pytest.approx(timings["audio_ms"], abs=0.1), finished


# ------------------------------------------------------------------------------ typed turns


@pytest.fixture(scope="module")
def typed_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "typed_turn", godot_daemon.port)


def test_a_typed_line_is_heard_to_the_end(typed_run: GodotResult) -> None:
    typed_run.assert_clean()
    finished = typed_run.of("speech_finished", npc_id="blacksmith")
    assert len(finished) == 1
    assert_heard_to_the_end(finished[0])
    assert typed_run.of("error_received") == []


def test_subtitles_come_when_their_chunk_is_played(typed_run: GodotResult) -> None:
    typed_run.assert_clean()
    finished = typed_run.of("speech_finished", npc_id="blacksmith")[0]
    turn_id = finished["turn_id"]
    started = typed_run.one("speech_started", turn_id=turn_id)
    subtitles = typed_run.of("subtitle_received", turn_id=turn_id)
    starts = typed_run.one("chunk_starts", turn_id=turn_id)["starts_ms"]
    assert len(subtitles) >= 2 and len(subtitles) == len(starts), (subtitles, starts)
    assert typed_run.index(started) < typed_run.index(subtitles[0])  # not before the audio
    assert typed_run.index(subtitles[-1]) < typed_run.index(finished)
    chunks = sorted(starts.items(), key=lambda kv: int(kv[0]))
    for subtitle, (chunk, start_ms) in zip(subtitles, chunks, strict=True):
        # The mixer had consumed the chunk's first sample when its subtitle was emitted.
        assert subtitle["played_ms"] > start_ms, (chunk, subtitle, starts)


def test_a_second_line_barges_in(typed_run: GodotResult) -> None:
    typed_run.assert_clean()
    pair = typed_run.one("barge_in")
    first = typed_run.one("speech_finished", turn_id=pair["first"])
    second = typed_run.one("speech_finished", turn_id=pair["second"])
    assert first["outcome"] == "cancelled", first
    assert typed_run.index(first) < typed_run.index(second)
    assert_heard_to_the_end(second)
    assert typed_run.of("error_received") == []  # no stray unknown_turn


# ------------------------------------------------------------------------------ refused says

REFUSALS = [  # scenario case, expected error code
    ("empty_npc_id", "invalid_npc_id"),
    ("long_npc_id", "invalid_npc_id"),
    ("unknown_npc", "unknown_npc"),
    ("unknown_profile", "unknown_profile"),
    ("empty_text", "empty_text"),
    ("text_too_long", "text_too_long"),
    ("frame_too_large", "message_too_large"),
    ("frame_too_large_at_daemon", "bad_frame"),
    ("turn_id_reused", "turn_id_reused"),
    ("cancel_crossing_error", "unknown_npc"),
]


@pytest.fixture(scope="module")
def rejected_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "rejected_says", godot_daemon.port)


@pytest.mark.parametrize(("case", "code"), REFUSALS, ids=[case for case, _ in REFUSALS])
def test_a_refused_say_ends_once_with_an_error(rejected_run: GodotResult, case: str,
                                               code: str) -> None:
    rejected_run.assert_clean()
    said = rejected_run.one("case", name=case)
    # The scenario waits for each refusal before the next case; turn_id_reused reuses the id
    # of an earlier case, so look between this case and the next.
    cases = [i for i, e in enumerate(rejected_run.events) if e["event"] == "case"]
    end = next((i for i in cases if i > rejected_run.index(said)), len(rejected_run.events))
    window = [e for e in rejected_run.events[rejected_run.index(said) + 1:end]
              if e.get("turn_id") == said["turn_id"]]
    assert [(e["event"], e.get("code"), e.get("outcome")) for e in window] == [
        ("error_received", code, None), ("speech_finished", None, "error")], window
    assert window[0]["message"], window


def test_refused_says_leave_no_stray_error(rejected_run: GodotResult) -> None:
    rejected_run.assert_clean()
    errors = rejected_run.of("error_received")
    assert sorted(e["code"] for e in errors) == sorted(code for _, code in REFUSALS), errors
    assert all(e["turn_id"] >= 0 for e in errors), errors  # none without a turn (unknown_turn)
    last = rejected_run.one("case", name="last_line")["turn_id"]
    assert rejected_run.one("speech_finished", turn_id=last)["outcome"] == "cancelled"


# ------------------------------------------------------------------------------ priorities


@pytest.fixture(scope="module")
def priorities_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "priorities", godot_daemon.port)


@pytest.mark.parametrize("case", ["ambient", "high"])
def test_a_line_with_a_priority_is_heard_to_the_end(priorities_run: GodotResult,
                                                    case: str) -> None:
    priorities_run.assert_clean()
    turn_id = priorities_run.one("case", name=case)["turn_id"]
    assert_heard_to_the_end(priorities_run.one("speech_finished", turn_id=turn_id))


def test_an_unknown_priority_is_refused_here(priorities_run: GodotResult) -> None:
    priorities_run.assert_clean()
    assert priorities_run.one("listen_refused") | {"frame": 0} == {
        "event": "listen_refused", "returned": False, "listening": False, "frame": 0}
    turn_id = priorities_run.one("case", name="invalid")["turn_id"]
    errors = priorities_run.of("error_received")
    assert [(e["code"], e["turn_id"]) for e in errors] == [
        ("invalid_priority", -1), ("invalid_priority", turn_id)], errors
    assert all("urgent" in e["message"] or "loud" in e["message"] for e in errors), errors
    finished = priorities_run.one("speech_finished", turn_id=turn_id)
    assert finished["outcome"] == "error", finished
    high = priorities_run.one("case", name="high")["turn_id"]  # same NPC: not interrupted
    assert priorities_run.index(finished) < priorities_run.index(
        priorities_run.one("speech_finished", turn_id=high))


# ------------------------------------------------------------------------------ player nodes


@pytest.fixture(scope="module")
def village_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "players_scene", godot_daemon.port)


def test_a_3d_player_in_a_scene_plays_its_npc_to_the_end(village_run: GodotResult) -> None:
    village_run.assert_clean()
    finished = village_run.of("speech_finished", npc_id="innkeeper")[0]
    player = village_run.of("player", who="innkeeper", turn_id=finished["turn_id"])[0]
    assert player["class"] == "AudioStreamPlayer3D" and player["generator"], player
    assert player["playing"] and player["playing_turn"] == player["turn_id"], player
    assert_heard_to_the_end(finished)


@pytest.mark.parametrize(("who", "node_class"), [("innkeeper", "AudioStreamPlayer3D"),
                                                 ("oracle", "AudioStreamPlayer2D"),
                                                 ("narrator", "AudioStreamPlayer")])
def test_a_player_barges_in_and_interrupts_its_own_lines(village_run: GodotResult, who: str,
                                                         node_class: str) -> None:
    village_run.assert_clean()
    pair = village_run.one("barge_in", who=who)
    player = village_run.one("player", who=who, turn_id=pair["second"])
    assert player["class"] == node_class and player["playing_turn"] == pair["second"], player
    first = village_run.one("speech_finished", turn_id=pair["first"])
    second = village_run.one("speech_finished", turn_id=pair["second"])
    for finished in (first, second):  # heard, then stopped: barge-in, then interrupt()
        assert finished["outcome"] == "cancelled", finished
        assert finished["timings"]["client_played_ms"] > 0, finished
    assert village_run.index(first) < village_run.index(second)
    assert village_run.of("error_received") == []


@pytest.fixture(scope="module")
def misuse_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "player_misuse", godot_daemon.port)


@pytest.mark.parametrize("how", ["stop", "playing_false", "stream_replaced"])
def test_game_code_taking_a_player_away_ends_its_turn(misuse_run: GodotResult, how: str) -> None:
    misuse_run.assert_clean()
    turn_id = misuse_run.one("case", name=how)["turn_id"]
    finished = misuse_run.one("speech_finished", turn_id=turn_id)
    assert finished["outcome"] == "cancelled", finished
    assert misuse_run.of("error_received") == []


def test_the_game_keeps_its_own_stream_and_the_player_plays_on(misuse_run: GodotResult) -> None:
    misuse_run.assert_clean()
    assert misuse_run.one("game_stream") | {"frame": 0} == {
        "event": "game_stream", "kept": True, "playing": True, "frame": 0}
    turn_id = misuse_run.one("case", name="next_turn")["turn_id"]
    finished = misuse_run.one("speech_finished", turn_id=turn_id)
    assert finished["outcome"] == "cancelled" and finished["timings"]["client_played_ms"] > 0


# ------------------------------------------------------------------------------ connection


def test_connect_to_daemon_on_a_live_connection_ends_what_ran(
        godot: str, godot_daemon: DaemonProcess) -> None:  # noqa: F811
    run = run_scenario(godot, "reconnect_by_game", godot_daemon.port)
    run.assert_clean()
    moment = run.one("reconnecting")
    assert not moment["listening"] and not moment["microphone_open"], moment
    assert run.one("speech_finished", turn_id=moment["turn_id"])["outcome"] == "disconnected"
    assert len(run.of("disconnected")) == 1 and len(run.of("connected")) == 2
    last = run.one("case", name="after_reconnect")["turn_id"]
    assert run.one("speech_finished", turn_id=last)["outcome"] == "cancelled"
    assert run.of("error_received") == []  # no not_listening from a mic left streaming


# ------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "demo_scene", godot_daemon.port)


def test_the_demo_scene_answers_a_typed_line(demo_run: GodotResult) -> None:
    run = demo_run
    run.assert_clean()
    demo = run.one("demo")
    assert demo["outcome"] == "done"
    assert any(label.startswith("Done. TTFA") for label in demo["labels"]), demo
    subtitles = " ".join(e["text"] for e in run.of("subtitle_received"))
    assert "You: Hello there!" in demo["log"] and subtitles.split()[0] in demo["log"], demo
    assert run.one("talk")["listening"] is True and run.one("released")["listening"] is False


def test_the_demos_face_moves_its_mouth_and_shows_the_words(demo_run: GodotResult) -> None:
    """Lip sync in the demo: the drawn face's mouth (an NpcVoiceMouth on the speaker's player)
    opened while the NPC spoke, and its words, shown as they were spoken, are the reply."""
    run = demo_run
    run.assert_clean()
    face = run.one("face")
    turn_id = run.of("speech_finished")[0]["turn_id"]
    subtitles = " ".join(e["text"] for e in run.of("subtitle_received", turn_id=turn_id))
    assert face["most_open"] > 0.2, face
    assert face["words"] == subtitles, (face, subtitles)


def test_the_demo_sends_the_line_while_it_is_typed(demo_run: GodotResult) -> None:
    """Typed key by key, "Hello " went out after the pause and "Hello there!" at once, as it
    ends a sentence (whatever went out in between, on a slow machine, is a prefix of it). The
    daemon started the reply on it, and Enter's say took that reply."""
    run = demo_run
    run.assert_clean()
    sent = run.one("typing")["sent"]
    finished = run.of("speech_finished")[0]
    npc_id = finished["npc_id"]
    assert sent[0] == f"{npc_id}: Hello " and sent[-1] == f"{npc_id}: Hello there!", sent
    texts = [entry.split(": ", 1)[1] for entry in sent]
    assert all("Hello there!".startswith(t) for t in texts), sent
    assert len(set(texts)) == len(texts), sent  # never the same text twice
    timings = finished["timings"]
    assert timings["speculative"] is True and timings["speculative_lead_ms"] > 0, timings


def test_the_demo_starts_a_scene_the_player_joins_and_ends(demo_run: GodotResult) -> None:
    run = demo_run
    run.assert_clean()
    lines = run.of("scene_line_started")
    assert {line["npc_id"] for line in lines} <= {"blacksmith", "innkeeper"}, lines
    answer = next(line for line in lines if line["answers_player"])
    assert answer["npc_id"] == "blacksmith", lines
    assert run.one("scene_button")["text"] == "End scene"
    ended = run.one("scene_ended")
    assert ended["reason"] == "scene_end" and ended["scene_id"] == lines[0]["scene_id"], ended
    demo = run.one("demo_scene")
    assert demo["button"] == "Start scene", demo
    assert "You (to blacksmith): Brom, is that fair?" in demo["log"], demo
    assert "Scene over (scene_end," in demo["log"], demo
    assert run.of("error_received") == [], run.of("error_received")


def test_the_demo_is_the_main_scene_and_starts_cleanly(godot: str) -> None:  # noqa: F811
    """The project as a game would start it (daemon or not on the default port)."""
    process = GodotProcess(godot, ["--headless", "--path", str(PROJECT), "--quit-after", "90"])
    process.finish(120).assert_clean()
