"""`npc-voice bench`: our streaming daemon side by side with the pipelines it replaces.

One run, same models, same lines, same sampling seed:
  * streaming: a real daemon process, measured as a client (TTFA includes IPC);
  * typing: the same, each line typed at `--typing-cps` with `typing` messages first
    (TTFA from Enter, one keystroke after the last character unless `--typing-enter-ms`);
  * naive: whole LLM reply, then TTS of the first chunk, then send (daemon/bench/naive.py);
  * realtimetts: the RealtimeTTS library fed by the same token stream
    (daemon/bench/peer_libraries.py, the optional `peers` extra; skipped with a one-line
    message when not installed);
then K simultaneous clients on one daemon (daemon/bench/load.py). Each mode runs its
warm-up turns unrecorded, then the same recorded lines. Output: tables on the terminal,
`bench.json` and PNG plots (daemon/bench/plots.py) in `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from daemon.bench.stats import (
    LoadSampler,
    TurnRecord,
    format_summary,
    machine_description,
    machine_load,
    peak_rss_mb,
    resident_mb,
    summarise,
    ttfa_ratios,
)

MODES = ("streaming", "typing", "naive", "realtimetts")
"""Every comparison mode, in the order they run."""

DEFAULT_SEED = 1234


def load_corpus(path: Path | None = None) -> list[tuple[str, str]]:
    """(npc_id, line) pairs, interleaving NPCs: a, b, c, a, b, c, ...

    Args:
      path: TOML file with a `[lines]` table of NPC id -> list of lines; None = the
        packaged corpus (31 lines over 3 NPCs).
    """
    if path is None:
        text = resources.files("daemon.bench").joinpath("corpus.toml").read_bytes()
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


def select_modes(requested: str | None) -> tuple[list[str], list[str]]:
    """The modes to run and one message per mode skipped.

    Args:
      requested: Comma-separated mode names; None = every mode available here.

    Raises:
      ValueError: an unknown mode name.
    """
    from daemon.bench.peer_libraries import realtimetts_unavailable  # noqa: PLC0415

    names = MODES if requested is None else [m.strip() for m in requested.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODES))
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    selected, skipped = [], []
    for mode in MODES:
        if mode not in names:
            continue
        reason = realtimetts_unavailable() if mode == "realtimetts" else None
        if reason:
            skipped.append(reason)
        else:
            selected.append(mode)
    return selected, skipped


def parse_clients(text: str) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8]; "" or "0" -> [] (no load test).

    Raises:
      ValueError: not a list of positive integers.
    """
    levels = [int(part) for part in text.split(",") if part.strip()]
    if levels == [0]:
        return []
    if any(level < 1 for level in levels):
        raise ValueError(f"--clients must be positive integers, got {text!r}")
    return sorted(set(levels))


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """Options of `npc-voice bench ttfa`."""
    parser.add_argument("--turns", type=int, default=24,
                        help="recorded turns per mode (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="unrecorded turns first, per mode (default: %(default)s)")
    parser.add_argument("--modes", metavar="LIST",
                        help=f"comma-separated, from {','.join(MODES)} "
                             "(default: every mode installed here)")
    parser.add_argument("--clients", default="1,2,4,8", metavar="LIST",
                        help="load levels: simultaneous clients on one daemon; '0' = no "
                             "load test (default: %(default)s)")
    parser.add_argument("--load-turns", type=int, default=4, metavar="N",
                        help="turns per client at each load level (default: %(default)s)")
    parser.add_argument("--typing-cps", type=float, default=5.0, metavar="N",
                        help="typing mode: characters per second (default: %(default)s)")
    parser.add_argument("--typing-enter-ms", type=float, metavar="MS",
                        help="typing mode: last character -> Enter (default: one more "
                             "keystroke, 1000 / --typing-cps; 0 = Enter with the last "
                             "character)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="sampling seed for every mode, so they speak the same replies; "
                             "-1 = random (default: %(default)s)")
    parser.add_argument("--corpus", type=Path, help="TOML corpus (default: the packaged one)")
    parser.add_argument("--address", help="measure a running daemon instead of starting one")
    parser.add_argument("--config", type=Path,
                        help="config for the daemon started here and the in-process modes")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help="extra `serve` argument for the daemon started here (repeatable; "
                             "the in-process modes read --config only)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR",
                        help="where bench.json and the PNG plots go (default: %(default)s)")
    parser.add_argument("--no-plots", action="store_true", help="JSON and tables only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _bar(args: argparse.Namespace, total: int, desc: str) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="turn", disable=args.no_progress,
                file=sys.stderr, leave=False)


def _mode_entry(records: list[TurnRecord], **extra: object) -> dict:
    return {"summary": summarise(records), **extra, "turns": [r.to_json() for r in records]}


def _run_daemon_modes(args: argparse.Namespace, corpus: list[tuple[str, str]],
                      modes: list[str], levels: list[int], report: dict) -> None:
    """The streaming mode and the load levels, on one daemon process."""
    from daemon.bench.load import Typist, run_load, run_streaming  # noqa: PLC0415
    from daemon.launcher import DaemonProcess  # noqa: PLC0415

    daemon = None
    if args.address is None:
        extra = [*args.daemon_arg, "--seed", str(args.seed)]
        daemon = DaemonProcess(args.config, extra_args=extra).start()
        address = daemon.address
    else:
        address = args.address

    def rss() -> float | None:
        return peak_rss_mb(daemon.process.pid) if daemon and daemon.process else None

    def resident(turns: int) -> dict[str, float | int | None]:
        """The daemon's RSS now, after `turns` turns of its life (issue 16's memory goal)."""
        now = resident_mb(daemon.process.pid) if daemon and daemon.process else None
        return {"rss_mb": now, "rss_after_turns": turns}

    turns_so_far = 0

    try:
        if "streaming" in modes:
            bar = _bar(args, args.turns, "streaming")
            records = asyncio.run(run_streaming(address, corpus, args.turns, args.warmup, bar))
            bar.close()
            turns_so_far += args.warmup + args.turns
            report["modes"]["streaming"] = _mode_entry(
                records, peak_rss_mb=rss(), rss_of="daemon process (VmHWM)",
                **resident(turns_so_far))
        if "typing" in modes:
            bar = _bar(args, args.turns, "typing")
            typist = Typist(args.typing_cps, enter_ms=args.typing_enter_ms)
            records = asyncio.run(run_streaming(address, corpus, args.turns, args.warmup, bar,
                                                typist, mode="typing"))
            bar.close()
            turns_so_far += args.warmup + args.turns
            report["modes"]["typing"] = _mode_entry(
                records, peak_rss_mb=rss(), rss_of="daemon process (VmHWM)",
                **resident(turns_so_far),
                chars_per_s=args.typing_cps,
                enter_ms=1000.0 / args.typing_cps if typist.enter_ms is None else typist.enter_ms)
        if levels:
            bar = _bar(args, sum(levels) * args.load_turns, "load")
            pid = daemon.process.pid if daemon and daemon.process else None
            load = asyncio.run(run_load(address, corpus, levels, args.load_turns,
                                        args.warmup + args.turns, bar, daemon_pid=pid))
            bar.close()
            load["daemon_peak_rss_mb"] = rss()
            report["load"] = load
    finally:
        if daemon is not None:
            daemon.stop()


def _run_in_process(args: argparse.Namespace, mode: str, corpus: list[tuple[str, str]],
                    prebuffer_ms: dict[str, int],
                    turn: Callable[[str, str], tuple]) -> list[TurnRecord]:
    """Warm-up, then the recorded turns of an in-process mode; failures are recorded."""
    from bridge_protocol.client import TurnResult  # noqa: PLC0415

    records = []
    for index in range(args.warmup):
        turn(*corpus[index % len(corpus)])
    bar = _bar(args, args.turns, mode)
    for index in range(args.turns):
        npc_id, line = corpus[(args.warmup + index) % len(corpus)]
        try:
            result, timings, reply = turn(npc_id, line)
            outcome = "done"
        except Exception as exc:  # noqa: BLE001 - one failed turn is a figure, not a crash
            print(f"{mode}: turn failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            result, timings, reply, outcome = TurnResult(0, time.perf_counter()), None, "", "error"
        records.append(TurnRecord.build(mode, npc_id, line, result, timings, outcome,
                                        prebuffer_ms[npc_id], reply))
        bar.update()
    bar.close()
    return records


def _run_in_process_modes(args: argparse.Namespace, corpus: list[tuple[str, str]],
                          modes: list[str], report: dict) -> None:
    """The naive and RealtimeTTS modes, on the daemon's models loaded in this process."""
    from daemon.bench.naive import Conversations, InProcessModels, naive_turn  # noqa: PLC0415
    from daemon.config_file import load_config, with_overrides  # noqa: PLC0415

    config = with_overrides(load_config(args.config), llm_seed=args.seed)
    prebuffer_ms = {npc_id: config.profile(npc.profile).prebuffer_ms
                         for npc_id, npc in config.npcs.items()}
    models = InProcessModels(config)
    rss_of = "bench process (in-process engines; cumulative over the in-process modes)"
    try:
        if "naive" in modes:
            conversations = Conversations(models, "naive")
            records = _run_in_process(
                args, "naive", corpus, prebuffer_ms,
                lambda npc, line: naive_turn(models, conversations, npc, line))
            report["modes"]["naive"] = _mode_entry(
                records, peak_rss_mb=peak_rss_mb(os.getpid()), rss_of=rss_of)
        if "realtimetts" in modes:
            from daemon.bench.peer_libraries import RealtimeTtsRunner, make_work_dir  # noqa: PLC0415

            conversations = Conversations(models, "realtimetts")
            with make_work_dir() as work_dir:
                runner = RealtimeTtsRunner(models, Path(work_dir))
                records = _run_in_process(
                    args, "realtimetts", corpus, prebuffer_ms,
                    lambda npc, line: runner.turn(conversations, npc, line))
            report["modes"]["realtimetts"] = _mode_entry(
                records, peak_rss_mb=peak_rss_mb(os.getpid()),
                rss_of=rss_of + "; its piper subprocesses not included")
    finally:
        models.close()


def _print_report(report: dict) -> None:
    from daemon.bench.load import format_load  # noqa: PLC0415

    for name, mode in report["modes"].items():
        print(format_summary(mode["summary"], name))
        if mode.get("peak_rss_mb") is not None:
            print(f"  peak RSS: {mode['peak_rss_mb']} MiB ({mode['rss_of']})")
        if mode.get("rss_mb") is not None:
            print(f"  daemon RSS after its first {mode['rss_after_turns']} turns: "
                  f"{mode['rss_mb']} MiB = {mode['rss_mb'] * 2**20 / 1e6:.0f} MB")
    quiet = report["machine_load_during_run"]
    print(f"other processes during the run: CPU mean "
          f"{quiet['other_processes_cpu_percent_mean']}%, max "
          f"{quiet['other_processes_cpu_percent_max']}% of the machine; "
          f"1-min load average up to {quiet['loadavg_1m_max']}")
    for pair, ratio in report["ratios"].items():
        print(f"TTFA ratio {pair}: p50 x{ratio['p50']}, p95 x{ratio['p95']}")
    if report.get("load"):
        print(format_load(report["load"]))
        print(f"  daemon peak RSS: {report['load']['daemon_peak_rss_mb']} MiB")


def main(argv: list[str] | None = None) -> int:
    """`npc-voice bench [ttfa] ...`; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="npc-voice bench ttfa",
        description="Run the same player lines through the streaming daemon (started here, "
                    "or --address), the naive whole-reply-then-TTS pipeline and RealtimeTTS "
                    "(if the peers extra is installed), then K simultaneous clients; print "
                    "TTFA p50/p95/p99, time to playback, per-stage split, RTF, underruns, "
                    "peak RSS and TTFA ratios; write bench.json and PNG plots.")
    add_bench_args(parser)
    return run_bench_command(parser.parse_args(argv))


def run_bench_command(args: argparse.Namespace) -> int:
    """`npc-voice bench`: returns the exit code (1 if any recorded turn failed)."""
    try:
        modes, skipped = select_modes(args.modes)
        levels = parse_clients(args.clients)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in skipped:
        print(message)
    corpus = load_corpus(args.corpus)
    report: dict[str, Any] = {
        "command": " ".join(["npc-voice", *sys.argv[1:]]),
        "machine": machine_description(),
        "machine_load_at_start": machine_load(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"turns": args.turns, "warmup": args.warmup, "seed": args.seed,
                     "modes": modes, "skipped": skipped, "clients": levels,
                     "load_turns_per_client": args.load_turns,
                     "corpus_lines": len(corpus), "config": str(args.config or "(packaged)"),
                     "daemon_args": args.daemon_arg},
        "modes": {},
    }
    print(f"machine: {report['machine']}")
    print(f"load at start: {report['machine_load_at_start']}")
    started = time.perf_counter()
    with LoadSampler() as sampler:
        if {"streaming", "typing"} & set(modes) or levels:
            _run_daemon_modes(args, corpus, modes, levels, report)
        if {"naive", "realtimetts"} & set(modes):
            _run_in_process_modes(args, corpus, modes, report)
    report["machine_load_during_run"] = sampler.summary()
    report["modes"] = {m: report["modes"][m] for m in MODES if m in report["modes"]}
    report["ratios"] = ttfa_ratios(report["modes"])
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["machine_load_at_end"] = machine_load()
    _print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bench.json"
    report["plots"] = []
    json_path.write_text(json.dumps(report, indent=2))  # first: a plotting failure loses nothing
    if not args.no_plots:
        try:
            from daemon.bench.plots import write_plots  # noqa: PLC0415

            report["plots"] = [p.name for p in write_plots(report, args.out)]
        except ImportError:
            print("plots skipped: matplotlib not installed (pip install -e '.[bench]')")
        json_path.write_text(json.dumps(report, indent=2))
    print(f"wrote {json_path}" + "".join(f", {args.out / p}" for p in report["plots"]))
    failed = sum(m["summary"]["turns"] - m["summary"]["turns_done"]
                 for m in report["modes"].values())
    if report.get("load"):
        failed += sum(level["summary"]["turns"] - level["summary"]["turns_done"]
                      for level in report["load"]["levels"])
    return 0 if failed == 0 else 1
