"""Turns through the daemon's socket: the streaming mode, and K simultaneous clients.

Everything here is a client of a real daemon process (`BridgeClient`), so TTFA is
what a game sees, IPC both ways included. In a load level, K clients (K NPC
conversations, one connection each) each run their turns back to back, all starting
together; TTFA and underruns are then read against K.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from bridge_protocol.client import BridgeClient
from bridge_protocol.messages import Done, Error
from daemon.bench.stats import DEFAULT_PREBUFFER_MS, ProcessTreeMeter, TurnRecord, summarise
from daemon.metrics import turn_outcome
from daemon.pipeline.text import ends_sentence

Corpus = list[tuple[str, str]]
"""(npc_id, player line) pairs."""


@dataclass(frozen=True)
class Typist:
    """How the benchmark's player types.

    Attributes:
      chars_per_s: Typing speed.
      debounce_ms: The client's least time between two `typing` messages.
      enter_ms: From the last character to Enter; None = one more keystroke
        (1 / `chars_per_s`). 0 = Enter together with the last character (the
        benchmark's only timing before 2026-12-06).
    """

    chars_per_s: float = 5.0
    debounce_ms: float = 200.0
    enter_ms: float | None = None


async def type_line(client: BridgeClient, npc_id: str, line: str, typing: Typist) -> None:
    """Type `line` as a player would, sending `typing` messages as the Godot addon does.

    One character every 1 / `chars_per_s` seconds; a `typing` message with the text so
    far once the player has paused for `debounce_ms`, every `debounce_ms` while typing
    on, and at once when the text ends a sentence (the addon's debounce). Enter comes
    `enter_ms` after the last character. Returns at Enter (nothing of it sent yet).
    """
    interval_s = 1.0 / typing.chars_per_s
    loop = asyncio.get_running_loop()
    last_sent, sent = loop.time(), ""
    for end in range(1, len(line) + 1):
        await asyncio.sleep(interval_s)
        now = loop.time()
        if now - last_sent >= typing.debounce_ms / 1000.0 or (
                end == len(line) and ends_sentence(line, "en")):
            sent = line[:end]
            await client.typing(npc_id, sent)
            last_sent = now
    enter_s = interval_s if typing.enter_ms is None else typing.enter_ms / 1000.0
    if sent != line and enter_s >= typing.debounce_ms / 1000.0:
        await asyncio.sleep(typing.debounce_ms / 1000.0)  # the pause ends the debounce
        await client.typing(npc_id, line)
        enter_s -= typing.debounce_ms / 1000.0
    await asyncio.sleep(enter_s)


async def client_turn(client: BridgeClient, mode: str, npc_id: str, line: str,
                      prebuffer_ms: dict[str, int], typing: Typist | None = None
                      ) -> TurnRecord:
    """Run one turn over `client` and summarise it.

    With `typing` the line is typed first (`type_line`); TTFA then counts from "Enter".
    """
    if typing is not None:
        await type_line(client, npc_id, line, typing)
    result = await client.run_turn(npc_id, line)
    terminal = result.terminal
    timings = getattr(terminal, "timings", None)
    outcome = turn_outcome(terminal)[0] if terminal is not None else "none"
    if isinstance(terminal, Error):  # a failed turn is a figure; say why, as in-process
        print(f"{mode}: turn failed ({npc_id}: {line!r}): {terminal.code}: {terminal.message}",
              file=sys.stderr)
    reply = terminal.reply_text if isinstance(terminal, Done) else " ".join(result.subtitles)
    return TurnRecord.build(mode, npc_id, line, result, timings, outcome,
                            prebuffer_ms.get(npc_id, DEFAULT_PREBUFFER_MS), reply)


def _prebuffers(client: BridgeClient) -> dict[str, int]:
    assert client.welcome is not None
    return {npc.npc_id: npc.prebuffer_ms for npc in client.welcome.npcs}


async def run_streaming(address: str, corpus: Corpus, turns: int, warmup: int,
                        bar: Any, typing: Typist | None = None, mode: str = "streaming"
                        ) -> list[TurnRecord]:
    """The streaming mode: `warmup` unrecorded, then `turns` recorded turns, one at a time.

    Args:
      address: The daemon's address.
      corpus: (NPC id, line) pairs, used in order.
      turns: Recorded turns.
      warmup: Unrecorded turns first.
      bar: A tqdm progress bar, advanced once per recorded turn.
      typing: Type each recorded line first, sending `typing` messages (the "typing"
        mode); None = the line is pasted at once.
      mode: The records' mode name.
    """
    records = []
    async with BridgeClient(address, client_name="npc-voice bench") as client:
        prebuffer = _prebuffers(client)
        for index in range(warmup):
            npc_id, line = corpus[index % len(corpus)]
            await client.run_turn(npc_id, line)
        for index in range(turns):
            npc_id, line = corpus[(warmup + index) % len(corpus)]
            records.append(await client_turn(client, mode, npc_id, line, prebuffer, typing))
            bar.update()
    return records


async def run_level(address: str, corpus: Corpus, clients: int, turns_per_client: int,
                    first_line: int, bar: Any) -> list[TurnRecord]:
    """K = `clients` connections, each running `turns_per_client` turns, all at once.

    Client i starts `i * turns_per_client` lines after `first_line` in the corpus, so
    the clients talk to different NPCs with different lines.
    """
    connections = [BridgeClient(address, client_name=f"npc-voice bench load {i}")
                   for i in range(clients)]
    try:
        for connection in connections:
            await connection.connect()
        start = asyncio.Event()

        async def conversation(index: int, client: BridgeClient) -> list[TurnRecord]:
            prebuffer = _prebuffers(client)
            records = []
            await start.wait()
            for turn in range(turns_per_client):
                npc_id, line = corpus[(first_line + index * turns_per_client + turn)
                                      % len(corpus)]
                records.append(await client_turn(client, f"load-{clients}", npc_id, line,
                                                 prebuffer))
                bar.update()
            return records

        tasks = [asyncio.create_task(conversation(i, c)) for i, c in enumerate(connections)]
        start.set()
        per_client = await asyncio.gather(*tasks)
    finally:
        for connection in connections:
            await connection.close()
    return [record for records in per_client for record in records]


async def run_load(address: str, corpus: Corpus, levels: list[int], turns_per_client: int,
                   first_line: int, bar: Any, daemon_pid: int | None = None) -> dict:
    """Every load level in turn; returns the `load` section of the report.

    `max_clients_without_underruns` is the largest K tested such that no level up to
    and including K had an underrun or an unfinished turn (None if K = 1 already had).
    With `daemon_pid`, each level also records the CPU (% of one core) and resident
    memory of the daemon and its children (a llama-server it started).
    """
    results = []
    sustained: int | None = None
    clean_so_far = True
    meter = ProcessTreeMeter(daemon_pid)
    for clients in levels:
        meter.start()
        records = await run_level(address, corpus, clients, turns_per_client, first_line, bar)
        summary = summarise(records)
        results.append({"clients": clients, "summary": summary, "daemon": meter.stop(),
                        "turns": [r.to_json() for r in records]})
        clean = summary["underruns_total"] == 0 and summary["turns_done"] == summary["turns"]
        clean_so_far = clean_so_far and clean
        if clean_so_far:
            sustained = clients
    return {"turns_per_client": turns_per_client, "levels": results,
            "max_clients_without_underruns": sustained}


def format_load(load: dict) -> str:
    """The terminal table of the load levels."""
    lines = [f"load: K simultaneous clients, {load['turns_per_client']} turns each",
             f"  {'K':>3} {'turns':>7} {'TTFA p50':>9} {'p95':>8} {'p99':>8} "
             f"{'underruns':>10} {'turns w/ underruns':>19} {'CPU %':>6} {'RSS MiB':>7}"]
    for level in load["levels"]:
        s = level["summary"]
        ttfa = s["ttfa_ms"]

        def cell(value: float | None, width: int) -> str:
            return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"

        lines.append(f"  {level['clients']:>3} {s['turns_done']:>3}/{s['turns']:<3} "
                     f"{cell(ttfa['p50'], 9)} {cell(ttfa['p95'], 8)} {cell(ttfa['p99'], 8)} "
                     f"{s['underruns_total']:>10} {s['turns_with_underruns']:>19} "
                     f"{cell(level['daemon']['cpu_percent'], 6)} "
                     f"{cell(level['daemon']['rss_mb'], 7)}")
    best = load["max_clients_without_underruns"]
    if best is not None:
        verdict = str(best)
    elif load["levels"]:
        verdict = f"none (underruns or failures already at K = {load['levels'][0]['clients']})"
    else:
        verdict = "-"
    lines.append(f"  largest K with zero underruns (and none below it): {verdict}")
    return "\n".join(lines)
