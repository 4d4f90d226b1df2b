"""`npc-voice`: serve | say | demo | bench | config | models | voices.

Parsing and dispatch only; each command's work lives in its own module (`say`,
`models`, `voices`, `daemon.app`, `daemon.bench`). Every command documents its options
in `--help`; the process-wide settings (logging, the Windows event loop policy) are made
here, in `main`, never at import.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from daemon.allocator import limit_malloc_arenas
from daemon.cli.models import add_models_parser, models_command
from daemon.config import DEFAULT_PORT
from daemon.config_file import (
    ConfigError,
    config_warnings,
    default_config_text,
    load_config,
    with_overrides,
)
from daemon.models import ModelNotFoundError

_LOGGER = logging.getLogger("daemon.cli")

DEMO_LINE = "Hello! Can you repair my sword before nightfall?"


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="daemon host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="daemon TCP port (default: %(default)s)")
    parser.add_argument("--token", default="", help="shared token, if the daemon requires one")


def _add_serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML config (default: the packaged one; see `npc-voice config`)")
    parser.add_argument("--host",
                        help="bind address; non-loopback needs --allow-remote and --token")
    parser.add_argument("--port", type=int,
                        help=f"TCP port (config default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--token", help="require this shared token in every client's hello")
    parser.add_argument("--allow-remote", action="store_true", default=None,
                        help="allow binding a non-loopback address (needs --token)")
    parser.add_argument("--llm-model", metavar="NAME_OR_GGUF",
                        help="LLM: 'smollm2' (bundled, run as Q8_0; 'smollm2:q4_1' as shipped), a "
                             "fetched model name or a .gguf path")
    parser.add_argument("--llm-instances", type=int, metavar="N",
                        help="llama.cpp contexts, i.e. turns generating at once")
    parser.add_argument("--llm-threads", type=int, metavar="N", help="LLM generation threads")
    parser.add_argument("--llm-gpu-layers", type=int, metavar="N",
                        help="layers offloaded to the GPU (-1 = all; needs a CUDA build)")
    parser.add_argument("--llm-url", metavar="URL",
                        help="stream replies from an OpenAI-compatible server instead "
                             "(llama-server, vLLM, Ollama...), e.g. http://gpu-box:8080/v1; "
                             "the API key, if any, from $NPC_VOICE_LLM_API_KEY")
    parser.add_argument("--seed", type=int, help="fixed sampling seed (-1 = random)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics "
                             "(0 = off; needs the metrics extra)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `npc-voice`."""
    parser = argparse.ArgumentParser(
        prog="npc-voice",
        description="Local voice daemon for game NPCs: a player's line goes in over ZeroMQ, "
                    "the NPC's reply comes back as streamed PCM (llama.cpp + Piper, or "
                    "XTTS-v2 voice cloning on a GPU).",
        epilog="Start with `npc-voice demo`, then `npc-voice serve` beside your game.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the daemon", description="Load and warm the models, then serve "
        "clients until SIGINT/SIGTERM. Logs 'ready on tcp://...' when it accepts turns.")
    _add_serve_args(serve)
    _add_say_parsers(commands)
    _add_bench_parser(commands)
    commands.add_parser("config", help="print the default config (commented TOML)",
                        description="Print the packaged configuration; redirect it to a file "
                                    "to start your own: npc-voice config > game.toml")
    add_models_parser(commands)
    _add_voices_parser(commands)
    return parser


def _add_say_parsers(commands: argparse._SubParsersAction) -> None:
    say = commands.add_parser(
        "say", help="send one player line to a running daemon",
        description="Send a line, print the subtitles as they arrive, write the reply as a "
                    "WAV and print TTFA, time to last block, audio length, RTF and underruns. "
                    "Exits non-zero on an error event or a timeout.")
    say.add_argument("text", help="the player's line")
    say.add_argument("--npc", required=True, help="NPC id (see the daemon's config)")
    say.add_argument("--out", type=Path, metavar="WAV", help="write the reply here")
    say.add_argument("--timing", type=Path, metavar="JSON",
                     help="ask for word and viseme timing and write it here (JSON: words and "
                          "visemes with sample offsets into the reply's audio)")
    say.add_argument("--prebuffer-ms", type=int,
                     help="client pre-buffer for the underrun count (default: the NPC profile's)")
    say.add_argument("--profile", help="speech profile for this turn (fast, cinematic, ...)")
    say.add_argument("--sample-rate-hz", type=int,
                     help="ask for PCM at this rate (default: the voice's native rate)")
    say.add_argument("--timeout-s", type=float, default=60.0,
                     help="give up after this long without a message (default: %(default)s)")
    _add_connection_args(say)
    demo = commands.add_parser(
        "demo", help="start a daemon, speak one line, write a WAV, stop",
        description="The whole product in one command: starts `npc-voice serve` on the "
                    "embedded default models, sends a player line, prints subtitles and "
                    "timings, writes the NPC's reply as a WAV and stops the daemon.")
    demo.add_argument("text", nargs="?", default=DEMO_LINE,
                      help="player line (default: %(default)r)")
    demo.add_argument("--npc", default="blacksmith", help="NPC id (default: %(default)s)")
    demo.add_argument("--out", type=Path, default=Path("reply.wav"),
                      help="WAV to write (default: %(default)s)")
    demo.add_argument("--config", type=Path, metavar="FILE", help="daemon config")


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    from daemon.bench.command import usage  # noqa: PLC0415 - keeps `serve` start-up lean

    bench = commands.add_parser(
        "bench", help="benchmarks: TTFA, two tiers, voice input, XTTS, reliability",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="npc-voice bench [SUITE] [options]   (npc-voice bench SUITE --help)",
        description="Run a benchmark suite; each prints its figures and writes JSON.\n\n"
                    + usage() + "\n\nWithout SUITE: ttfa.")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _add_voices_parser(commands: argparse._SubParsersAction) -> None:
    voices = commands.add_parser(
        "voices", help="prepare cloned (XTTS) voices: conditioning latents, cached",
        description="`voices prepare`: start XTTS as the config says, compute the "
                    "conditioning latents of every XTTS voice its NPCs use and store them "
                    "in the latents cache (a hit when the clips and model are unchanged), "
                    "so the daemon starts without that work. Exit status 1 if a voice "
                    "cannot be prepared.")
    voices_commands = voices.add_subparsers(dest="voices_command", metavar="ACTION",
                                            required=True)
    prepare = voices_commands.add_parser("prepare", help="compute and cache every XTTS voice")
    prepare.add_argument("--config", type=Path, metavar="FILE",
                         help="TOML config (default: the packaged one)")


def _serve(args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # before numpy and the engines start threads (daemon.allocator)
    from daemon.app import run_daemon  # noqa: PLC0415 - heavy imports only when serving

    try:
        config = with_overrides(
            load_config(args.config),
            server_host=args.host, server_port=args.port, server_token=args.token,
            server_allow_remote=args.allow_remote, llm_model=args.llm_model,
            llm_instances=args.llm_instances, llm_n_threads=args.llm_threads,
            llm_n_gpu_layers=args.llm_gpu_layers, llm_seed=args.seed,
            server_metrics_port=args.metrics_port,
            **({"llm_backend": "openai", "llm_url": args.llm_url,
                "llm_api_key_env": "NPC_VOICE_LLM_API_KEY"} if args.llm_url else {}))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    for warning in config_warnings(config):
        _LOGGER.warning("config: %s", warning)
    try:
        asyncio.run(run_daemon(config))
    except ModelNotFoundError as exc:
        print(f"model error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one clear line for the user; the traceback in the log
        _LOGGER.debug("daemon failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _voices(args: argparse.Namespace) -> int:
    from daemon.cli.voices import prepare_voices  # noqa: PLC0415 - starts XTTS

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return prepare_voices(config)


def _split_bench(parser: argparse.ArgumentParser, argv: list[str]
                 ) -> tuple[argparse.Namespace, list[str] | None]:
    """(parsed global options and command, the arguments after `bench` or None).

    Everything after `bench` belongs to the suite's own parser, so it is passed on
    untouched (`npc-voice bench --help` alone shows the suites).
    """
    if "bench" in argv:
        index = argv.index("bench")
        rest = argv[index + 1:]
        if rest[:1] not in (["-h"], ["--help"]):
            args = parser.parse_args([*argv[:index], "bench"])
            return args, rest
    return parser.parse_args(argv), None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `npc-voice`; returns the exit code."""
    parser = build_parser()
    args, bench_args = _split_bench(parser, list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if sys.platform == "win32":  # pyzmq's asyncio needs a selector loop on Windows
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    match args.command:
        case "serve":
            return _serve(args)
        case "say":
            from daemon.cli.say import say_command  # noqa: PLC0415

            return say_command(args)
        case "demo":
            from daemon.cli.say import demo_command  # noqa: PLC0415

            return demo_command(args)
        case "bench":
            from daemon.bench.command import run  # noqa: PLC0415

            return run(bench_args or [])
        case "config":
            print(default_config_text(), end="")
            return 0
        case "models":
            return models_command(args)
        case "voices":
            return _voices(args)
    return 2
