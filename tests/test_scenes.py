"""Group scenes through the real daemon: NPCs in turn, never over each other, the player in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Cancelled, Done, Error, SceneCut, SceneEnded, SceneLine
from daemon.launcher import DaemonProcess
from daemon.llm.scene_prompt import PLAYER, SceneMember, SceneTranscript, next_speaker
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn

NPCS = ["blacksmith", "innkeeper", "oracle"]
SITUATION = "The three argue about who should guard the village gate tonight."


@dataclass
class SceneRecord:
    """What a client saw of one scene."""

    lines: list[SceneLine] = field(default_factory=list)
    turns: dict[int, TurnResult] = field(default_factory=dict)
    cuts: dict[int, int] = field(default_factory=dict)
    ended: SceneEnded | None = None


async def follow(client: BridgeClient, scene_id: int, record: SceneRecord,
                 on_line: object = None) -> None:
    """Collect the scene's lines and their turns until `scene_ended`."""
    collecting: list[asyncio.Task[TurnResult]] = []
    while True:
        event = await asyncio.wait_for(client.scene_events.get(), 120)
        if isinstance(event, SceneEnded):
            record.ended = event
            break
        assert event.scene_id == scene_id
        if isinstance(event, SceneCut):
            record.cuts[event.turn_id] = event.after_chunk_index
            continue
        record.lines.append(event)
        collecting.append(asyncio.create_task(
            client.collect(event.turn_id, asyncio.get_running_loop().time())))
        if callable(on_line):
            await on_line(event)
    for task in collecting:
        result = await task
        record.turns[result.turn_id] = result


def test_a_three_npc_scene_takes_turns_without_overlap(daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[SceneRecord, BridgeClient]:
        record = SceneRecord()
        async with BridgeClient(daemon.address) as client:
            await client.scene_start(1, NPCS, SITUATION, max_exchanges=4)
            await follow(client, 1, record)
            return record, client

    record, client = run(scenario(), timeout_s=300)
    assert record.ended is not None and record.ended.reason == "max_exchanges"
    assert record.ended.lines == 4 == len(record.lines)
    speakers = [line.npc_id for line in record.lines]
    assert speakers[0] == "blacksmith", "the first NPC named speaks first"
    assert all(a != b for a, b in zip(speakers, speakers[1:], strict=False)), speakers
    ids = [line.turn_id for line in record.lines]
    assert ids == sorted(ids) and len(set(ids)) == 4
    previous_end: float | None = None
    for line in record.lines:
        result = record.turns[line.turn_id]
        assert_complete_turn(result)
        first_block = result.block_arrivals[0][0]
        if previous_end is not None:
            assert first_block > previous_end, "a line starts after the previous one ended"
        previous_end = result.terminal_at
    assert client.unrouted == []


def test_the_player_speaking_into_a_scene_is_answered_next(daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[SceneRecord, int]:
        record = SceneRecord()
        async with BridgeClient(daemon.address) as client:
            said: list[int] = []

            async def on_line(line: SceneLine) -> None:
                if not said:  # the player speaks as soon as the first line is announced
                    said.append(await client.say_in_scene(2, "oracle", "Oracle, what do "
                                                          "you see for tonight?"))
                elif len(record.lines) >= 3:
                    await client.scene_end(2)

            await client.scene_start(2, NPCS, SITUATION, max_exchanges=8)
            await follow(client, 2, record, on_line)
            return record, said[0]

    record, answer_id = run(scenario(), timeout_s=300)
    answer = next(i for i, line in enumerate(record.lines) if line.answers_player)
    assert answer == 1, "the line after the player's is the answer"
    line = record.lines[answer]
    assert line.turn_id == answer_id and line.npc_id == "oracle"
    assert_complete_turn(record.turns[answer_id])
    # The interrupted first line ended properly, at a clause boundary: `done`, and
    # either it stopped generating there by itself (its last block final) or, as the
    # client held audio beyond the clause playing, a `scene_cut` after that clause.
    first_id = record.lines[0].turn_id
    first = record.turns[first_id]
    assert isinstance(first.terminal, Done)
    assert first.seqs == list(range(len(first.seqs)))
    if first_id in record.cuts:
        assert 0 <= record.cuts[first_id] <= max(first.block_chunks)
    else:
        assert first.final_flags[-1] is True
    assert set(record.cuts) <= {first_id}


def test_scene_end_stops_the_line_speaking_and_everything_queued(
        daemon: DaemonProcess) -> None:
    async def scenario() -> SceneRecord:
        record = SceneRecord()
        async with BridgeClient(daemon.address) as client:
            async def on_line(_line: SceneLine) -> None:
                await client.scene_end(3)

            await client.scene_start(3, ["innkeeper", "blacksmith"], "", max_exchanges=10)
            await follow(client, 3, record, on_line)
            await asyncio.sleep(1.0)  # nothing of the scene may follow
            assert client.unrouted == []
        return record

    record = run(scenario(), timeout_s=120)
    assert record.ended is not None and record.ended.reason == "scene_end"
    assert len(record.lines) == 1
    terminal = record.turns[record.lines[0].turn_id].terminal
    assert isinstance(terminal, Cancelled) and terminal.reason == "scene_end"


def test_bad_scenes_are_refused_with_named_errors(daemon: DaemonProcess) -> None:
    async def scenario() -> list[Error]:
        async with BridgeClient(daemon.address) as client:
            await client.scene_start(4, ["innkeeper", "innkeeper"])
            await client.scene_start(5, ["innkeeper", "nobody"])
            refused = [await client.next_control(), await client.next_control()]
            turn_id = await client.say_in_scene(99, "innkeeper", "Hello?")
            async for event in client.events(turn_id, timeout_s=10):
                refused.append(event)  # type: ignore[arg-type]
            return refused

    duplicate, unknown, no_scene = run(scenario(), timeout_s=60)
    assert isinstance(duplicate, Error) and duplicate.code == "bad_scene"
    assert isinstance(unknown, Error) and unknown.code == "bad_scene"
    assert "nobody" in unknown.message
    assert isinstance(no_scene, Error) and no_scene.code == "unknown_scene"


# --------------------------------------------------------------------------- pure core

MEMBERS = [SceneMember("smith", "Brom the Blacksmith", "You are Brom."),
           SceneMember("inn", "Mira the Innkeeper", "You are Mira."),
           SceneMember("oracle", "The Oracle", "You are the Oracle.")]


def test_each_speaker_hears_the_others_by_name_in_a_byte_stable_prompt() -> None:
    transcript = SceneTranscript(MEMBERS, "A storm is coming.")
    first = transcript.messages_for("inn")
    transcript.add("Brom the Blacksmith", "The gate needs a guard.")
    transcript.add(PLAYER, "I can help.")
    later = transcript.messages_for("inn")
    assert later[0] == first[0], "the system prompt never changes within a scene"
    assert later[0]["content"].startswith("You are Mira.")
    assert "Brom the Blacksmith: The gate needs a guard." in later[1]["content"]
    assert "The player: I can help." in later[1]["content"]
    assert "Brom the Blacksmith" in later[0]["content"] and "The Oracle" in later[0]["content"]


def test_a_members_prompt_prefix_stays_a_prefix_of_its_later_prompts() -> None:
    transcript = SceneTranscript(MEMBERS, "A storm is coming.")
    transcript.add("Brom the Blacksmith", "The gate needs a guard.")
    prefix = transcript.prompt_prefix_for("oracle")
    transcript.add(PLAYER, "I can help.")
    for later in (transcript.messages_for("oracle"), transcript.prompt_prefix_for("oracle")):
        assert later[0] == prefix[0]
        assert later[1]["content"].startswith(prefix[1]["content"])
    assert prefix[1]["content"].endswith("Brom the Blacksmith: The gate needs a guard.\n")
    assert "speaks" not in prefix[1]["content"], "the open user message ends at the lines"


def test_a_line_is_in_the_transcript_once_when_its_turn_records_it() -> None:
    transcript = SceneTranscript(MEMBERS, "A storm is coming.")
    transcript.add("Brom the Blacksmith", "The gate needs a guard.")  # written: the scene
    assert transcript.view("smith").record("", "The gate needs a guard.") is False
    assert transcript.lines == [("Brom the Blacksmith", "The gate needs a guard.")]


def test_past_lines_heard_the_oldest_half_leaves_the_prompts_at_once() -> None:
    transcript = SceneTranscript(MEMBERS, "A storm is coming.", lines_heard=4)
    for index in range(4):
        transcript.add(PLAYER, f"line {index}")
    assert [text for _, text in transcript.heard] == ["line 0", "line 1", "line 2", "line 3"]
    transcript.add(PLAYER, "line 4")
    assert [text for _, text in transcript.heard] == ["line 3", "line 4"]
    prompt = transcript.messages_for("inn")[1]["content"]
    assert "line 2" not in prompt and "line 3" in prompt and "line 4" in prompt
    transcript.add(PLAYER, "line 5")  # the start stays put until the next cut
    assert transcript.messages_for("inn")[1]["content"].startswith(
        transcript.prompt_prefix_for("inn")[1]["content"].rsplit("line 5", 1)[0])
    assert [text for _, text in transcript.heard] == ["line 3", "line 4", "line 5"]
    assert len(transcript.lines) == 6, "the scene keeps every line; only prompts forget"


def test_a_scene_too_long_for_the_context_forgets_its_oldest_lines_but_the_last() -> None:
    transcript = SceneTranscript(MEMBERS, "A storm is coming.", lines_heard=10)
    for index in range(5):
        transcript.add(PLAYER, f"line {index}")
    dialogue = transcript.view("inn")
    assert dialogue.shorten() is True
    assert [text for _, text in transcript.heard] == ["line 3", "line 4"]
    assert dialogue.shorten() is True
    assert [text for _, text in transcript.heard] == ["line 4"]
    assert dialogue.shorten() is False, "the line being answered stays"
    assert "line 4" in dialogue.messages_for("")[1]["content"]
    assert len(transcript.lines) == 5, "the scene keeps every line; only prompts forget"

def test_the_next_speaker_is_the_one_addressed_else_named_else_next_in_turn() -> None:
    assert next_speaker(MEMBERS, None) == "smith"
    assert next_speaker(MEMBERS, "smith", "Well, Mira, what say you?") == "inn"
    assert next_speaker(MEMBERS, "smith", "And the oracle agrees.") == "oracle"
    assert next_speaker(MEMBERS, "smith", "Nobody named.") == "inn"
    assert next_speaker(MEMBERS, "oracle", "Nobody named.") == "smith"
    assert next_speaker(MEMBERS, "inn", "I, Mira, say no.") == "oracle", "never twice in a row"
    assert next_speaker(MEMBERS, "smith", "Mira!", addressed="oracle") == "oracle"
    assert next_speaker(MEMBERS, None, "", addressed="smith") == "smith"
