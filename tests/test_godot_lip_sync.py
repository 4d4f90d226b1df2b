"""Lip sync through the real addon in a real headless Godot 4, against a real daemon (issue 17).

The scenario godot_addon/test/e2e/lip_sync.gd has the blacksmith (a Piper voice: words and
visemes) answer on an NpcVoicePlayer2D with an NpcVoiceMouth under it, cancels a second reply
after its first word, and has the innkeeper (hibari: one mouth-open value per block) answer on
an NpcVoicePlayer. It reports every lip-sync signal with the samples of the turn the mixer had
consumed when it fired (`played`), every `timing` message as it came off the wire, and per turn
the largest number of samples the mixer consumed between two frames (one mix step: about 93 ms
on headless Godot's Dummy driver, more after a slow frame).

An event at offset n is due once the mixer has consumed n samples of its turn (PROTOCOL.md
3.9): it must never fire before (`played >= offset`) and must fire at the first frame after the
mix step that reached it (`played - offset <= one mix step`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pytest

from daemon.launcher import DaemonProcess
from tests.support.godot import GodotResult, godot, godot_daemon, run_scenario  # noqa: F401

KIND_ORDER = {"word": 0, "viseme": 1, "mouth": 2}


@dataclass(frozen=True)
class LipEvent:
    """One event of a `timing` message, as the addon should fire it."""

    offset: int
    kind: str  # "word", "viseme" or "mouth"
    text: str  # the word or viseme ("" for mouth)
    value: float  # weight, or open
    chunk_index: int


def expected_lip_events(run: GodotResult, turn_id: int) -> list[LipEvent]:
    """Every event of the `timing` messages of `turn_id`, in the order they must fire: by
    offset; at one offset, in arrival order (a message's words before its visemes)."""
    events = []
    for message in run.of("timing_message", turn_id=turn_id):
        chunk = int(message["chunk_index"])
        events += [LipEvent(int(w["start_sample"]), "word", w["text"], 1.0, chunk)
                   for w in message["words"]]
        events += [LipEvent(int(v["start_sample"]), "viseme", v["viseme"], v["weight"], chunk)
                   for v in message["visemes"]]
        events += [LipEvent(int(m["start_sample"]), "mouth", "", m["open"], chunk)
                   for m in message["mouth"]]
    return sorted(events, key=lambda e: e.offset)  # stable


def fired_lip_events(run: GodotResult, turn_id: int) -> list[dict]:
    """The word, viseme and mouth signals of `turn_id` (not "ended"), in firing order."""
    return [e for e in run.of("lip", turn_id=turn_id) if e["kind"] != "ended"]


def lateness(fired: list[dict], expected: list[LipEvent]) -> list[int]:
    """For each fired event, samples consumed past its offset when it fired."""
    return [got["played"] - want.offset for got, want in zip(fired, expected, strict=False)]


def assert_fired_as_expected(fired: list[dict], expected: list[LipEvent]) -> None:
    assert [(e["kind"], e["text"]) for e in fired] == [(e.kind, e.text) for e in expected]
    for got, want in zip(fired, expected, strict=True):
        assert got["value"] == pytest.approx(want.value, abs=1e-3), (got, want)


@pytest.fixture(scope="module")
def lip_run(godot: str, godot_daemon: DaemonProcess) -> GodotResult:  # noqa: F811
    return run_scenario(godot, "lip_sync", godot_daemon.port)


def case_turn(run: GodotResult, name: str) -> int:
    return run.one("case", name=name)["turn_id"]


def mix_step(run: GodotResult, turn_id: int) -> int:
    """The most samples of `turn_id` the mixer consumed between two frames."""
    return run.one("steps")["largest"][str(turn_id)]


def test_the_addon_asks_for_timing_and_knows_each_npcs_kind(lip_run: GodotResult) -> None:
    lip_run.assert_clean()
    npcs = lip_run.one("npcs")
    assert npcs["asked"] is True, npcs
    assert npcs["lip_sync"]["blacksmith"] == "visemes", npcs
    assert npcs["lip_sync"]["innkeeper"] == "energy", npcs


def test_words_and_visemes_fire_in_order_when_the_mixer_reaches_them(
        lip_run: GodotResult) -> None:
    run = lip_run
    run.assert_clean()
    turn_id = case_turn(run, "visemes")
    assert run.one("speech_finished", turn_id=turn_id)["outcome"] == "done"
    expected = expected_lip_events(run, turn_id)
    fired = fired_lip_events(run, turn_id)
    assert {e.kind for e in expected} == {"word", "viseme"}, expected
    assert_fired_as_expected(fired, expected)
    step = mix_step(run, turn_id)
    late = lateness(fired, expected)
    assert min(late) >= 0, [(f, e) for f, e, d in zip(fired, expected, late, strict=True) if d < 0]
    assert max(late) <= step, (max(late), step)
    rate = int(run.of("timing_message", turn_id=turn_id)[0]["sample_rate_hz"])
    print(f"lip sync (visemes): {len(fired)} events at {rate} Hz fired "
          f"{1000 * statistics.mean(late) / rate:.1f} ms after their sample on average, "
          f"{1000 * max(late) / rate:.1f} ms at most; mix step {1000 * step / rate:.1f} ms")


def test_words_join_to_the_subtitles_and_follow_their_clock(lip_run: GodotResult) -> None:
    run = lip_run
    run.assert_clean()
    turn_id = case_turn(run, "visemes")
    subtitles = run.of("subtitle_received", turn_id=turn_id)
    words = [e for e in fired_lip_events(run, turn_id) if e["kind"] == "word"]
    assert len(subtitles) >= 1 and len(words) >= 3, (subtitles, words)
    assert " ".join(w["text"] for w in words) == " ".join(s["text"] for s in subtitles)
    offsets = [e.offset for e in expected_lip_events(run, turn_id) if e.kind == "word"]
    assert offsets == sorted(set(offsets)), offsets
    by_chunk: dict[int, list[str]] = {}
    for event in expected_lip_events(run, turn_id):
        if event.kind == "word":
            by_chunk.setdefault(event.chunk_index, []).append(event.text)
    assert [" ".join(texts) for _, texts in sorted(by_chunk.items())] == [
        s["text"] for s in subtitles]
    # Per-word subtitles run on the subtitles' clock: a chunk's words come after its subtitle
    # and before the next chunk's.
    position = 0
    for index, (_, texts) in enumerate(sorted(by_chunk.items())):
        chunk_words = words[position:position + len(texts)]
        position += len(texts)
        assert run.index(subtitles[index]) < run.index(chunk_words[0])
        if index + 1 < len(subtitles):
            assert run.index(chunk_words[-1]) < run.index(subtitles[index + 1])


def test_the_mouth_follows_the_voice_and_closes(lip_run: GodotResult) -> None:
    run = lip_run
    run.assert_clean()
    turn_id = case_turn(run, "visemes")
    mouth = run.one("mouth")
    assert mouth["most_open"] > 0.3 and mouth["open_after"] < 0.01, mouth
    lips = run.of("lip", turn_id=turn_id)
    assert lips[-1]["kind"] == "ended" and [e["kind"] for e in lips].count("ended") == 1
    finished = run.one("speech_finished", turn_id=turn_id)
    assert run.index(lips[-1]) < run.index(finished)


def test_an_energy_voice_opens_the_mouth_per_block(lip_run: GodotResult) -> None:
    run = lip_run
    run.assert_clean()
    turn_id = case_turn(run, "energy")
    assert run.one("speech_finished", turn_id=turn_id)["outcome"] == "done"
    expected = expected_lip_events(run, turn_id)
    fired = fired_lip_events(run, turn_id)
    assert expected and {e.kind for e in expected} == {"mouth"}, expected
    assert_fired_as_expected(fired, expected)
    values = [e["value"] for e in fired]
    assert all(0.0 <= v <= 1.0 for v in values) and max(values) > 0.2, values
    step = mix_step(run, turn_id)
    late = lateness(fired, expected)
    assert 0 <= min(late) and max(late) <= step, (late, step)
    rate = int(run.of("timing_message", turn_id=turn_id)[0]["sample_rate_hz"])
    print(f"lip sync (energy): {len(fired)} mouth values at {rate} Hz, "
          f"{1000 * statistics.mean(late) / rate:.1f} ms late on average, "
          f"{1000 * max(late) / rate:.1f} ms at most; mix step {1000 * step / rate:.1f} ms")


def test_nothing_fires_after_a_cancel(lip_run: GodotResult) -> None:
    run = lip_run
    run.assert_clean()
    case = run.one("case", name="cancelled")
    turn_id = case["turn_id"]
    assert run.one("speech_finished", turn_id=turn_id)["outcome"] == "cancelled"
    lips = run.of("lip", turn_id=turn_id)
    before = [e for e in lips if run.index(e) < run.index(case)]
    after = [e for e in lips if run.index(e) > run.index(case)]
    assert any(e["kind"] == "word" for e in before), before
    assert [e["kind"] for e in after] == ["ended"], after
    # The cancel came mid-reply: events the daemon had already sent never fired.
    sent = [m for m in run.of("timing_message", turn_id=turn_id) if run.index(m) < run.index(case)]
    sent_events = sum(len(m["words"]) + len(m["visemes"]) for m in sent)
    assert sent_events > len(before), (sent_events, before)
