"""`npc-voice bench`: TTFA and per-stage latency over many turns, printed and saved as JSON.

The benchmark is a client of a real daemon process (started here unless --endpoint
is given), so it measures what a game sees: client-side TTFA includes IPC both ways.
Turns run one at a time after a warm-up; lines cycle through a corpus addressed to
several NPCs so that the per-NPC KV states are exercised as in a game.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgspec
import numpy as np
import psutil

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Done

STAGES = ("queued_ms", "llm_first_token_ms", "first_chunk_ms", "tts_first_audio_ms",
          "first_block_ms")
"""Daemon-side stage timings (ms since the utterance) reported per turn."""


def load_corpus(path: Path | None = None) -> list[tuple[str, str]]:
    """(npc_id, line) pairs, interleaving NPCs: a, b, c, a, b, c, ...

    Args:
      path: TOML file with a `[lines]` table of NPC id -> list of lines; None = the
        packaged corpus (31 lines over 3 NPCs).
    """
    if path is None:
        text = resources.files("daemon").joinpath("data/bench_corpus.toml").read_bytes()
    else:
        text = path.read_bytes()
    lines: dict[str, list[str]] = msgspec.toml.decode(text, type=dict[str, dict[str, list[str]]])[
        "lines"
    ]
    pairs = []
    for index in range(max(len(v) for v in lines.values())):
        for npc_id, npc_lines in lines.items():
            if index < len(npc_lines):
                pairs.append((npc_id, npc_lines[index]))
    return pairs


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/mean/max of `values` (None when empty)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "mean": round(float(array.mean()), 1),
        "max": round(float(array.max()), 1),
    }


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of process `pid` in MiB (Linux VmHWM; else current RSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


@dataclass
class TurnRecord:
    """The figures kept of one benchmark turn."""

    npc_id: str
    line: str
    ttfa_ms: float | None
    last_block_ms: float | None
    audio_s: float
    underruns: int
    stages: dict[str, float | None]
    rtf: float | None
    reply_tokens: int
    prefill_tokens: int
    outcome: str

    @classmethod
    def from_result(cls, npc_id: str, line: str, result: TurnResult,
                    prebuffer_ms: int) -> TurnRecord:
        """Summarise a finished turn."""
        terminal = result.terminal
        done = terminal if isinstance(terminal, Done) else None
        timings = done.timings if done is not None else None
        return cls(
            npc_id=npc_id, line=line, ttfa_ms=result.ttfa_ms,
            last_block_ms=result.last_block_ms, audio_s=round(result.audio_s, 3),
            underruns=result.underruns(prebuffer_ms),
            stages={s: getattr(timings, s) if timings else None for s in STAGES},
            rtf=timings.rtf if timings else None,
            reply_tokens=timings.reply_tokens if timings else 0,
            prefill_tokens=timings.prefill_tokens if timings else 0,
            outcome=type(terminal).__name__.lower() if terminal else "none",
        )


def summarise(records: list[TurnRecord], prebuffer_ms: dict[str, int]) -> dict:
    """Aggregate figures of a run (what the table prints and the JSON holds)."""
    ok = [r for r in records if r.outcome == "done" and r.ttfa_ms is not None]
    ttfa = [r.ttfa_ms for r in ok]
    summary = {
        "turns": len(records),
        "turns_done": len(ok),
        "ttfa_ms": percentiles(ttfa),
        "time_to_playback_ms": percentiles(
            [r.ttfa_ms + prebuffer_ms.get(r.npc_id, 240) for r in ok]),
        "stages_ms": {s: percentiles([r.stages[s] for r in ok if r.stages[s] is not None])
                      for s in STAGES},
        "ipc_ms": percentiles([r.ttfa_ms - r.stages["first_block_ms"] for r in ok
                               if r.stages["first_block_ms"] is not None]),
        "rtf": percentiles([r.rtf for r in ok if r.rtf is not None]),
        "audio_s": percentiles([r.audio_s for r in ok]),
        "underruns_total": sum(r.underruns for r in ok),
        "turns_with_underruns": sum(1 for r in ok if r.underruns),
    }
    return summary


def format_summary(summary: dict, title: str) -> str:
    """The terminal table of one run."""
    def row(name: str, stats: dict[str, float | None], unit: str = "ms") -> str:
        cells = " ".join(f"{stats[k]:>8.1f}" if stats[k] is not None else f"{'-':>8}"
                         for k in ("p50", "p95", "p99", "mean"))
        return f"  {name:30} {cells}  {unit}"

    lines = [f"{title}: {summary['turns_done']}/{summary['turns']} turns done",
             f"  {'':30} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}",
             row("TTFA (client)", summary["ttfa_ms"]),
             row("time to playback", summary["time_to_playback_ms"])]
    for stage in STAGES:
        lines.append(row(f"  daemon: {stage.removesuffix('_ms')}", summary["stages_ms"][stage]))
    lines.append(row("  IPC (client - daemon)", summary["ipc_ms"]))
    lines.append(row("TTS RTF", summary["rtf"], unit=""))
    lines.append(row("reply audio", summary["audio_s"], unit="s"))
    lines.append(f"  underruns: {summary['underruns_total']} blocks in "
                 f"{summary['turns_with_underruns']} turns")
    return "\n".join(lines)


async def run_turns(endpoint: str, corpus: list[tuple[str, str]], turns: int, warmup: int,
                    progress: bool = True) -> tuple[list[TurnRecord], dict[str, int]]:
    """Run `warmup` unrecorded then `turns` recorded turns, one at a time."""
    from tqdm import tqdm  # noqa: PLC0415

    records = []
    async with BridgeClient(endpoint, client_name="npc-voice bench") as client:
        assert client.welcome is not None
        prebuffer = {npc.npc_id: npc.prebuffer_ms for npc in client.welcome.npcs}
        for index in range(warmup):
            npc_id, line = corpus[index % len(corpus)]
            await client.run_turn(npc_id, line)
        bar = tqdm(total=turns, desc="turns", unit="turn", disable=not progress,
                   file=sys.stderr)
        for index in range(turns):
            npc_id, line = corpus[(warmup + index) % len(corpus)]
            result = await client.run_turn(npc_id, line)
            records.append(TurnRecord.from_result(npc_id, line, result,
                                                  prebuffer.get(npc_id, 240)))
            bar.update()
        bar.close()
    return records, prebuffer


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """Options of `npc-voice bench`."""
    parser.add_argument("--turns", type=int, default=24,
                        help="recorded turns (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="unrecorded turns first (default: %(default)s)")
    parser.add_argument("--corpus", type=Path, help="TOML corpus (default: the packaged one)")
    parser.add_argument("--endpoint", help="use a running daemon instead of starting one")
    parser.add_argument("--config", type=Path, help="config for the daemon started here")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help="extra `serve` argument for the daemon started here (repeatable)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench.json"),
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def machine_description() -> str:
    """One line naming the machine the figures come from."""
    return (f"{platform.machine()} {psutil.cpu_count(logical=True)} logical cores, "
            f"{round(psutil.virtual_memory().total / 2**30)} GiB, {platform.system()}, "
            f"Python {platform.python_version()}")


def run_bench_command(args: argparse.Namespace) -> int:
    """`npc-voice bench`: returns the exit code."""
    from daemon.launcher import DaemonProcess  # noqa: PLC0415

    corpus = load_corpus(args.corpus)
    daemon = None
    if args.endpoint is None:
        daemon = DaemonProcess(args.config, extra_args=args.daemon_arg).start()
        endpoint = daemon.endpoint
    else:
        endpoint = args.endpoint
    started = time.perf_counter()
    try:
        records, prebuffer = asyncio.run(
            run_turns(endpoint, corpus, args.turns, args.warmup, not args.no_progress))
        rss = peak_rss_mb(daemon.process.pid) if daemon and daemon.process else None
    finally:
        if daemon is not None:
            daemon.stop()
    summary = summarise(records, prebuffer)
    summary["daemon_peak_rss_mb"] = rss
    report = {
        "command": " ".join(["npc-voice", *sys.argv[1:]]),
        "machine": machine_description(),
        "wall_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "turns": [msgspec.structs.asdict(r) if isinstance(r, msgspec.Struct) else r.__dict__
                  for r in records],
    }
    print(format_summary(summary, "streaming daemon"))
    if rss is not None:
        print(f"  daemon peak RSS: {rss} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0 if summary["turns_done"] == summary["turns"] else 1
