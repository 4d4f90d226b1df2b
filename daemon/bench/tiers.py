"""Two-tier benchmarks: `python -m daemon.bench.tiers turns | llm | vram`.

turns: real daemon processes, real turns to a two-tier NPC, measured as a client: TTFA
  (the opener's first audio), the continuation's first audio, and the hand-off gap
  (how late the continuation's first block is for playback started at the first block
  plus the pre-buffer; 0 = seamless), with the underruns after the hand-off. Modes:
  "two-tier" (narrative prefill during the opener), "two-tier-late" (narrative starts
  at the hand-off) and "single" (the fast tier alone: the TTFA baseline), one daemon
  each, the same lines sent to each in turn. Without --config the embedded SmolLM2 plays
  both tiers on the CPU.
llm: the GPU micro-benchmark on full-size random Qwen2.5 GGUFs (daemon.bench.llm);
  --small for a CPU smoke run.
vram: the VRAM budget of both tiers per quantisation (8/16/24 GiB cards).

Every mode prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Done
from daemon.bench.stats import machine_description, machine_load, percentiles, write_report
from daemon.config_file import default_config_text
from daemon.launcher import DaemonProcess

SEED = 1234
NARRATIVE_SECTION = """
[llm_narrative]
model = "{model}"
instances = 1
n_ctx = 2048
n_threads = 1
n_threads_batch = 1
max_reply_tokens = 64
seed = {seed}
narrative_early_start = {early}
"""
MODES = ("two-tier", "two-tier-late", "single")


def bench_config_text(mode: str, narrative_model: str = "smollm2") -> str:
    """The packaged config with a fixed seed, plus a narrative tier unless `mode` is single."""
    text = default_config_text().replace("seed = -1", f"seed = {SEED}")
    if mode == "single":
        return text
    section = NARRATIVE_SECTION.format(model=narrative_model, seed=SEED + 1,
                                       early="true" if mode == "two-tier" else "false")
    head, npcs = text.split("[npcs.blacksmith]", 1)
    return head + section + "\n[npcs.blacksmith]" + npcs


def corpus_lines(npc_id: str) -> list[str]:
    """The packaged benchmark lines for `npc_id`."""
    data = resources.files("daemon.bench").joinpath("corpus.toml").read_bytes()
    return msgspec.toml.decode(data, type=dict[str, dict[str, list[str]]])["lines"][npc_id]


def turn_figures(result: TurnResult, blocks: list[tuple[float, int, int]],
                 prebuffer_ms: int) -> dict[str, Any]:
    """The figures of one turn.

    Args:
      result: The turn as the client saw it.
      blocks: (arrival perf_counter s, chunk_index, sample_count) per block, in order.
      prebuffer_ms: Client pre-buffer: playback starts at the first block plus this.
    """
    done = result.terminal if isinstance(result.terminal, Done) else None
    timings = done.timings if done is not None else None
    handoff = timings.handoff_chunk_index if timings is not None else None
    figures: dict[str, Any] = {
        "outcome": type(result.terminal).__name__.lower(), "ttfa_ms": result.ttfa_ms,
        "audio_s": round(result.audio_s, 2), "underruns": result.underruns(prebuffer_ms),
        "handoff_chunk_index": handoff, "continuation_first_audio_ms": None,
        "handoff_gap_ms": None, "underruns_after_handoff": None,
        "daemon_handoff_gap_ms": timings.handoff_gap_ms if timings else None,
        "llm_first_token_ms": timings.llm_first_token_ms if timings else None,
        "narrative_first_token_ms": timings.narrative_first_token_ms if timings else None,
        "opener": " ".join(result.subtitles[:handoff]) if handoff else None,
        "reply": done.reply_text if done else None,
    }
    if not blocks or not result.sample_rate_hz:
        return figures
    start = blocks[0][0] + prebuffer_ms / 1000.0
    played = 0
    late_after = 0
    for arrival, chunk, samples in blocks:
        due = start + played / result.sample_rate_hz
        if handoff is not None and chunk >= handoff:
            if figures["handoff_gap_ms"] is None:
                figures["handoff_gap_ms"] = round(max(0.0, arrival - due) * 1000.0, 1)
                figures["continuation_first_audio_ms"] = round(
                    (arrival - result.sent_at) * 1000.0, 1)
            late_after += arrival > due
        played += samples
    if handoff is not None and figures["handoff_gap_ms"] is not None:
        figures["underruns_after_handoff"] = late_after
    return figures


async def run_turns(addresses: dict[str, str], npc_id: str, lines: list[str], warmup: int
                    ) -> dict[str, list[dict[str, Any]]]:
    """Send `lines` to every daemon, interleaved (line 1 to each, then line 2...).

    One turn runs at a time; interleaving spreads any change of the machine's load over
    all modes alike. Each mode keeps one connection: a growing conversation.
    """
    records: dict[str, list[dict[str, Any]]] = {mode: [] for mode in addresses}
    async with contextlib.AsyncExitStack() as stack:
        clients, prebuffers = {}, {}
        for mode, address in addresses.items():
            client = await stack.enter_async_context(
                BridgeClient(address, client_name=f"bench-tiers-{mode}"))
            assert client.welcome is not None
            clients[mode] = client
            prebuffers[mode] = next(npc.prebuffer_ms for npc in client.welcome.npcs
                                    if npc.npc_id == npc_id)
        for index, line in enumerate(lines[:warmup] + lines):
            for mode, client in clients.items():
                blocks: list[tuple[float, int, int]] = []

                def on_event(event: object, _result: TurnResult, blocks=blocks) -> None:
                    if isinstance(event, DecodedAudio):
                        blocks.append((time.perf_counter(), event.header.chunk_index,
                                       event.header.sample_count))

                result = await client.run_turn(npc_id, line, on_event=on_event,
                                               timeout_s=120.0)
                if index >= warmup:
                    records[mode].append({"line": line, "prebuffer_ms": prebuffers[mode]}
                                         | turn_figures(result, blocks, prebuffers[mode]))
    return records


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of the figures that matter, over the recorded turns of one mode."""
    def values(key: str) -> list[float]:
        return [r[key] for r in records if r.get(key) is not None]

    handoffs = values("handoff_gap_ms")
    return {
        "turns": len(records), "done": sum(r["outcome"] == "done" for r in records),
        "ttfa_ms": percentiles(values("ttfa_ms")),
        "continuation_first_audio_ms": percentiles(values("continuation_first_audio_ms")),
        "handoff_gap_ms": percentiles(handoffs),
        "turns_with_handoff": len(handoffs),
        "turns_with_a_gap": sum(gap > 0 for gap in handoffs),
        "underruns_after_handoff": sum(values("underruns_after_handoff")),
        "underruns": sum(values("underruns")),
        "audio_s": percentiles(values("audio_s")),
    }


def bench_turns(args: argparse.Namespace) -> dict[str, Any]:
    """Start one daemon per mode, run the interleaved turns; return the report."""
    lines = (corpus_lines(args.npc) * 4)[: args.turns]
    modes = ["custom"] if args.config else args.modes.split(",")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        addresses = {}
        for mode in modes:
            config_path = args.config or args.out_dir / f"bench_tiers_{mode}.toml"
            if not args.config:
                config_path.write_text(bench_config_text(mode))
            print(f"{mode}: starting a daemon ({config_path})...", file=sys.stderr)
            daemon = stack.enter_context(DaemonProcess(
                config_path, log_path=args.out_dir / f"bench_tiers_{mode}.log",
                ready_timeout_s=600.0))
            addresses[mode] = daemon.address
        report: dict[str, Any] = {"machine": machine_description(),
                                  "load_before": machine_load(), "npc": args.npc, "modes": {}}
        records = asyncio.run(run_turns(addresses, args.npc, lines, args.warmup))
        report["load_after"] = machine_load()
    for mode in modes:
        report["modes"][mode] = {"summary": summary(records[mode]), "turns": records[mode]}
    return report


def print_turns(report: dict[str, Any]) -> None:
    """Print the `turns` report as a table."""
    print(f"machine: {report['machine']}")
    print(f"load before: {report['load_before']}  after: {report['load_after']}")
    print(f"{'mode':14} {'turns':>5} {'TTFA p50':>9} {'p95':>7} {'cont. audio p50':>16} "
          f"{'gap p50':>8} {'gap max':>8} {'gaps':>5} {'late after':>10}")
    for mode, data in report["modes"].items():
        s = data["summary"]

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        print(f"{mode:14} {s['turns']:>5} {fmt(s['ttfa_ms']['p50']):>9} "
              f"{fmt(s['ttfa_ms']['p95']):>7} {fmt(s['continuation_first_audio_ms']['p50']):>16} "
              f"{fmt(s['handoff_gap_ms']['p50']):>8} {fmt(s['handoff_gap_ms']['max']):>8} "
              f"{s['turns_with_a_gap']:>5} {s['underruns_after_handoff']:>10}")
    print("(ms; gap = how late the continuation's first block was for playback started at "
          "the first block + pre-buffer; late after = blocks late after the hand-off)")


def print_llm(report: dict[str, Any]) -> None:
    """Print the `llm` report as a table."""
    print(f"gpu offload: {report['gpu_offload']}, n_ctx {report['n_ctx']}, n_gpu_layers "
          f"{report['n_gpu_layers']}, flash_attn {report['flash_attn']}")
    print(f"{'model':6} {'quant':6} {'file GB':>8} {'load s':>7} {'prompt':>7} "
          f"{'TTFT ms':>8} {'tok/s':>7} {'VRAM MiB':>9}")
    for t in report["timings"]:
        print(f"{t['model']:6} {t['quant']:6} {t['file_gb']:>8} {t['load_s']:>7} "
              f"{t['prompt_tokens']:>7} {t['ttft_ms']:>8} {t['tokens_per_s']:>7} "
              f"{t['vram_mib'] if t['vram_mib'] is not None else '-':>9}")


def print_vram(table: dict[str, Any]) -> None:
    """Print the VRAM budget of each model and tier pair."""
    print(f"n_ctx {table['n_ctx']}; {table['units']}")
    for name, quants in table["models"].items():
        for quant, gb in quants.items():
            print(f"  {name:5} {quant:7} weights {gb['weights']:6.2f}  KV {gb['kv']:5.2f}  "
                  f"compute {gb['compute']:4.2f}  = {gb['total']:6.2f}")
    print(f"pairs (+ {table['cuda_context_gb']} CUDA context; XTTS-v2 adds {table['xtts_gb']}):")
    for pair in table["pairs"]:
        fits = ", ".join(card for card, ok in pair["fits"].items() if ok) or "none"
        with_xtts = ", ".join(card for card, ok in pair["fits_with_xtts"].items() if ok) or "none"
        print(f"  1.5b {pair['fast']:7} + 14b {pair['narrative']:7} = {pair['total_gb']:6.2f} "
              f"GB  fits: {fits:9} | with XTTS {pair['with_xtts_gb']:6.2f}  fits: {with_xtts}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `npc-voice bench tiers`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench tiers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the report here")
    commands = parser.add_subparsers(dest="command", required=True)
    turns = commands.add_parser("turns", help="two-tier turns through real daemons")
    turns.add_argument("--turns", type=int, default=8, help="recorded turns per mode")
    turns.add_argument("--warmup", type=int, default=1, help="unrecorded turns first")
    turns.add_argument("--npc", default="blacksmith", help="NPC addressed (default: %(default)s)")
    turns.add_argument("--modes", default=",".join(MODES), help="comma-separated: " +
                       ", ".join(MODES))
    turns.add_argument("--config", type=Path, help="your own two-tier config (e.g. Qwen on a "
                       "GPU) instead of the generated ones")
    turns.add_argument("--out-dir", type=Path, default=Path("bench-results"),
                       help="configs and daemon logs (default: %(default)s)")
    llm = commands.add_parser("llm", help="LLM micro-benchmark on random full-size Qwen2.5")
    llm.add_argument("--models", default="1.5b,14b", help="1.5b and/or 14b")
    llm.add_argument("--quant", default="q4_k", choices=["f16", "q8_0", "q4_k"])
    llm.add_argument("--small", action="store_true", help="tiny body, real vocabulary: CPU smoke")
    llm.add_argument("--dir", type=Path, default=Path.home() / ".cache/npc-voice/random-gguf",
                     help="where the random GGUFs are written once (default: %(default)s)")
    llm.add_argument("--n-ctx", type=int, default=4096)
    llm.add_argument("--gpu-layers", type=int, default=-1, help="-1 = all")
    llm.add_argument("--no-flash-attn", action="store_true")
    llm.add_argument("--threads", type=int, default=4)
    llm.add_argument("--prompt-tokens", type=int, default=256)
    llm.add_argument("--tokens", type=int, default=128, help="generated tokens per repeat")
    llm.add_argument("--repeats", type=int, default=3)
    vram = commands.add_parser("vram", help="VRAM budget of both tiers per quantisation")
    vram.add_argument("--n-ctx", type=int, default=4096)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark named on the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report: dict[str, Any]
    if args.command == "turns":
        report = bench_turns(args)
        print_turns(report)
    elif args.command == "llm":
        from daemon.bench.llm import run_llm_bench  # noqa: PLC0415

        report = run_llm_bench(
            args.dir, models=args.models.split(","), quant=args.quant, small=args.small,
            n_ctx=args.n_ctx, n_gpu_layers=args.gpu_layers, flash_attn=not args.no_flash_attn,
            n_threads=args.threads, prompt_tokens=args.prompt_tokens,
            generated_tokens=args.tokens, repeats=args.repeats)
        report |= {"machine": machine_description(), "load": machine_load()}
        print_llm(report)
    else:
        from daemon.bench.llm import vram_table  # noqa: PLC0415

        report = vram_table(args.n_ctx)
        print_vram(report)
    if args.json:
        report["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
