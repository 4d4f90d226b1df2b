"""Scenes benchmark: the pause between speakers at the client, and the player joining in.

A real daemon process and the reference client. Each scene line is played as the Godot
addon plays it (`daemon.pipeline.playback.PlaybackClock`): it starts once the NPC's
pre-buffer of audio has arrived, runs in real time and stalls on a late block. The
**gap** between two speakers is the next line's first sample played minus the previous
line's last sample played; a negative gap is an **overlap**. The **interjection
response** is the time from the player's `say` into a scene to the first block of the
answer, beside the TTFA of the same kind of line typed outside a scene; the interrupted
line first finishes the clause playing at the client (the answer never plays over it),
so the part of the response spent waiting for that is reported too, and when the
answer's first audio was ready in the daemon (its `tts_first_audio_ms`).

    npc-voice bench scenes --exchanges 24 --interjections 6 --json bench-results/scenes.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Done, Error, SceneCut, SceneEnded, SceneLine
from daemon.bench.stats import machine_description, machine_load, percentiles, write_report
from daemon.bench.ttfa import load_corpus
from daemon.launcher import DaemonProcess
from daemon.pipeline.playback import PlaybackClock

NPCS = ["blacksmith", "innkeeper", "oracle"]
SITUATION = "The three argue about who should guard the village gate tonight."
QUESTIONS = [
    "What do you all think of the new tax?",
    "Who saw the stranger at the well?",
    "Is the road to the capital safe?",
    "Which of you is the bravest?",
    "What happened at the mill last night?",
    "Should we trust the merchant?",
]


@dataclass(frozen=True)
class PlayedLine:
    """When a line played at the client, in `time.perf_counter()` seconds."""

    npc_id: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class _Interjection:
    sent_at: float
    answer_id: int


@dataclass
class _SceneRun:
    """What the client saw of one scene."""

    lines: list[SceneLine]
    results: dict[int, TurnResult]
    cuts: dict[int, int]  # turn id -> last chunk played (`scene_cut`)
    interjection: _Interjection | None
    ended: SceneEnded


def played(result: TurnResult, npc_id: str, prebuffer_ms: float,
           cut_after_chunk: int | None = None) -> PlayedLine | None:
    """Playback of one line as the Godot addon plays it (`PlaybackClock`).

    With `cut_after_chunk` (a `scene_cut`), blocks of later chunks are not played.
    """
    if not result.block_arrivals or not result.sample_rate_hz:
        return None
    clock = PlaybackClock(prebuffer_ms / 1000.0)  # the daemon's own model of the client
    for (arrival, samples), chunk in zip(result.block_arrivals, result.block_chunks,
                                         strict=True):
        if cut_after_chunk is None or chunk <= cut_after_chunk:
            clock.block(arrival, samples, result.sample_rate_hz)
    if clock.start_s is None or clock.end_s is None:
        return None
    return PlayedLine(npc_id, clock.start_s, clock.end_s)


async def _scene(client: BridgeClient, scene_id: int, exchanges: int,
                 interject: str | None) -> _SceneRun:
    """Run one scene; with `interject`, the player speaks once its second line is announced.

    The interjection (when the `say` was sent, the answer's turn id) is kept only if
    the answer spoke.
    """
    await client.scene_start(scene_id, NPCS, SITUATION, max_exchanges=exchanges)
    lines: list[SceneLine] = []
    cuts: dict[int, int] = {}
    collecting: list[asyncio.Task[TurnResult]] = []
    sent_at = 0.0
    answer_id: int | None = None
    while True:
        event = await asyncio.wait_for(client.scene_events.get(), 300)
        if isinstance(event, SceneEnded):
            ended = event
            break
        if isinstance(event, SceneCut):
            cuts[event.turn_id] = event.after_chunk_index
            continue
        lines.append(event)
        collecting.append(asyncio.create_task(client.collect(event.turn_id, time.perf_counter())))
        if interject is not None and len(lines) == 2 and answer_id is None:
            speaking = lines[-1].npc_id
            addressed = next(npc for npc in NPCS if npc != speaking)
            sent_at = time.perf_counter()
            answer_id = await client.say_in_scene(scene_id, addressed, interject)
    results = {r.turn_id: r for r in await asyncio.gather(*collecting)}
    interjection = None
    if answer_id is not None and answer_id in results and results[answer_id].block_arrivals:
        interjection = _Interjection(sent_at, answer_id)
    return _SceneRun(lines, results, cuts, interjection, ended)


async def run(address: str, exchanges: int, interjections: int, typed: int) -> dict:
    """The whole benchmark against the daemon at `address`; returns the report's figures."""
    corpus = [pair for pair in load_corpus() if pair[0] in NPCS]
    async with BridgeClient(address, client_name="npc-voice bench scenes") as client:
        assert client.welcome is not None
        prebuffer = {npc.npc_id: npc.prebuffer_ms for npc in client.welcome.npcs}
        for npc_id, line in corpus[:2]:  # warm-up, unrecorded
            await client.run_turn(npc_id, line)
        typed_ttfa = []
        for npc_id, line in corpus[2 : 2 + typed]:
            result = await client.run_turn(npc_id, line)
            if isinstance(result.terminal, Done) and result.ttfa_ms is not None:
                typed_ttfa.append(result.ttfa_ms)

        scene = await _scene(client, 1, exchanges, None)
        plays = [played(scene.results[line.turn_id], line.npc_id, prebuffer[line.npc_id])
                 for line in scene.lines]
        gaps = [(b.start_s - a.end_s) * 1000.0
                for a, b in zip(plays, plays[1:], strict=False) if a and b]
        responses, waits = [], []
        answer_ttfa: list[float | None] = []
        answers: list[dict] = []  # the answers' daemon timings, where the time went
        for index in range(interjections):
            # Three lines: the first, the one the player speaks into, the answer.
            joined = await _scene(client, 2 + index, 3, QUESTIONS[index % len(QUESTIONS)])
            interjection = joined.interjection
            if interjection is None:
                continue
            answer = joined.results[interjection.answer_id]
            responses.append((answer.block_arrivals[0][0] - interjection.sent_at) * 1000.0)
            answer_ttfa.append(answer.terminal.timings.tts_first_audio_ms
                               if isinstance(answer.terminal, Done)
                               and answer.terminal.timings.tts_first_audio_ms else None)
            if isinstance(answer.terminal, Done):
                timings = answer.terminal.timings
                answers.append({"llm_first_token_ms": timings.llm_first_token_ms,
                                "first_chunk_ms": timings.first_chunk_ms,
                                "tts_first_audio_ms": timings.tts_first_audio_ms,
                                "prompt_tokens": timings.prompt_tokens,
                                "prefill_tokens": timings.prefill_tokens})
            interrupted = joined.lines[1]
            before = played(joined.results[interrupted.turn_id], interrupted.npc_id,
                            prebuffer[interrupted.npc_id], joined.cuts.get(interrupted.turn_id))
            if before is not None:
                waits.append(max(0.0, before.end_s - interjection.sent_at) * 1000.0)
    typed_p50 = percentiles(typed_ttfa)["p50"]
    response = percentiles(responses)
    ready = percentiles([t for t in answer_ttfa if t is not None])
    errors = [f"{r.terminal.code}: {r.terminal.message}" for r in scene.results.values()
              if isinstance(r.terminal, Error)]
    return {
        "exchanges": len(scene.lines), "scene_ended": scene.ended.reason, "line_errors": errors,
        "gap_ms": percentiles(gaps), "gaps_ms": [round(g, 1) for g in gaps],
        "overlaps": sum(1 for g in gaps if g < 0),
        "typed_ttfa_ms": percentiles(typed_ttfa),
        "interjections": len(responses),
        "interjection_response_ms": response,
        "interjection_wait_for_clause_ms": percentiles(waits),
        "answer_audio_ready_ms": ready,
        "answers": answers,
        "answer_audio_ready_over_typed_ttfa_p50": (
            round(ready["p50"] / typed_p50, 2) if ready["p50"] and typed_p50 else None),
        "interjection_response_over_typed_ttfa_p50": (
            round(response["p50"] / typed_p50, 2) if response["p50"] and typed_p50 else None),
    }


def main(argv: list[str] | None = None) -> int:
    """`npc-voice bench scenes`: prints the figures and writes JSON; returns the exit code."""
    parser = argparse.ArgumentParser(prog="npc-voice bench scenes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=24,
                        help="lines of the measured scene (default: %(default)s)")
    parser.add_argument("--interjections", type=int, default=6,
                        help="scenes the player joins once each (default: %(default)s)")
    parser.add_argument("--typed", type=int, default=10,
                        help="typed turns outside scenes, for the TTFA baseline")
    parser.add_argument("--config", type=Path, help="daemon config (default: packaged)")
    parser.add_argument("--address", help="measure a running daemon instead of starting one")
    parser.add_argument("--json", type=Path, default=Path("bench-results/scenes.json"))
    args = parser.parse_args(argv)
    report: dict = {"command": " ".join(["npc-voice bench scenes", *(argv or sys.argv[2:])]),
                    "machine": machine_description(), "machine_load_at_start": machine_load()}
    started = time.perf_counter()
    if args.address:
        report.update(asyncio.run(run(args.address, args.exchanges, args.interjections,
                                      args.typed)))
    else:
        with DaemonProcess(args.config) as daemon:
            report.update(asyncio.run(run(daemon.address, args.exchanges, args.interjections,
                                          args.typed)))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    gap, response = report["gap_ms"], report["interjection_response_ms"]
    print(f"scene of {report['exchanges']} lines ({report['scene_ended']}): gap between "
          f"speakers p50 {gap['p50']} ms, p95 {gap['p95']} ms, overlaps {report['overlaps']}")
    for error in report["line_errors"]:
        print(f"  a line ended with an error: {error}")
    print(f"interjections: {report['interjections']}, answered p50 {response['p50']} ms "
          f"(of which waiting for the interrupted clause to play: "
          f"{report['interjection_wait_for_clause_ms']['p50']} ms), typed TTFA p50 "
          f"{report['typed_ttfa_ms']['p50']} ms, ratio "
          f"{report['interjection_response_over_typed_ttfa_p50']}")
    print(f"the answer's first audio was ready {report['answer_audio_ready_ms']['p50']} ms "
          f"after the player's say (p50): x{report['answer_audio_ready_over_typed_ttfa_p50']} "
          "the typed TTFA")
    write_report(args.json, report)
    return 0 if report["exchanges"] and not report["overlaps"] else 1
