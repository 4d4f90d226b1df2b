"""A Piper voice split into a frontend graph and a decoder graph, cached on disk.

Piper exports VITS as one ONNX graph, phoneme ids -> waveform, so a sentence's audio
exists only when the whole graph has run. The graph has a seam (streaming-vits,
`streaming_vits.graph`): everything up to the prior sample `z_p` (text encoder, duration
predictor, alignment, both noise draws) sees the whole sentence and is cheap; everything
after it (flow + HiFi-GAN) is a stack of convolutions over the frame axis with a finite
receptive field, so it can run on overlapping frame windows (daemon.tts.piper_windows).

The frontend graph made here has one output more than streaming-vits' own split: the
duration tensor `w_ceil` (frames per phoneme id), found by piper's
`add_alignment_output`, which gives the word and viseme timing (daemon.tts.visemes).
streaming-vits' `ensure_split` is not used because it prints to stderr and caches next
to the model, and the bundled voice lives read-only inside a site-packages package:
the graphs go to `<user cache>/piper-split/<model stem>-<key>/` instead, keyed by the
model's path, size and modification time (a changed file gets a new split).

Sizes for en_US-joe-medium (63 MB): frontend 28 MB, decoder 35 MB; splitting takes
about 3 s once per machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.models import user_cache_dir

if TYPE_CHECKING:
    import onnx

_LOGGER = logging.getLogger(__name__)

SPLIT_VERSION = 1
"""Bumped when the split's files or metadata change, so old caches are not reused."""

_FRONTEND = "frontend.onnx"
_DECODER = "decoder.onnx"
_META = "split.json"


@dataclass(frozen=True, slots=True)
class SplitVoice:
    """Where a voice's split graphs are and how to feed them.

    Attributes:
      directory: Folder holding `frontend.onnx`, `decoder.onnx` and `split.json`.
      frontend_inputs: Input names of the frontend (Piper's: "input", "input_lengths",
        "scales", and "sid" for multi-speaker voices).
      z_p: Name of the prior sample tensor, float32 [1, channels, frames]: frontend
        output, decoder input.
      mask: Name of the frame mask tensor, float32 [1, 1, frames]: frontend output,
        decoder input.
      speaker: Name of the speaker embedding tensor, float32 [1, channels, 1], or None
        for a single-speaker voice.
      durations: Name of the frontend's duration output `w_ceil`, float32
        [1, 1, phoneme ids]: frames per phoneme id (integers stored as floats).
      hop_samples: Audio samples per frame (product of HiFi-GAN's upsample rates; 256).
      receptive_left_frames: Upper bound on the frames before a frame that its audio
        depends on, from the decoder's convolutions (`receptive_field_frames`).
      receptive_right_frames: The same after it.
      model_sha256: SHA-256 of the voice's .onnx file (names known voices).
    """

    directory: Path
    frontend_inputs: tuple[str, ...]
    z_p: str
    mask: str
    speaker: str | None
    durations: str
    hop_samples: int
    receptive_left_frames: int
    receptive_right_frames: int
    model_sha256: str

    @property
    def frontend_path(self) -> Path:
        """The frontend graph: phoneme ids -> (z_p, mask[, speaker], durations)."""
        return self.directory / _FRONTEND

    @property
    def decoder_path(self) -> Path:
        """The decoder graph: (z_p, mask[, speaker]) -> audio, float32 [1, 1, frames * hop]."""
        return self.directory / _DECODER


def split_cache_root() -> Path:
    """Folder of every cached split: <user cache>/piper-split (~/.cache/npc-voice/...)."""
    return user_cache_dir() / "piper-split"


def _cache_key(model_path: Path) -> str:
    stat = model_path.stat()
    identity = f"{SPLIT_VERSION}:{model_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_split(model_path: Path, cache_root: Path | None = None) -> SplitVoice:
    """The split graphs of `model_path`, made on first use and cached.

    Concurrent daemons may split the same voice at once: each writes a private folder
    and renames it into place; the loser's copy is deleted.

    Args:
      model_path: A Piper .onnx voice.
      cache_root: Where splits are cached (default: `split_cache_root()`).

    Returns:
      The split's description.

    Raises:
      ValueError: the graph is not a Piper/VITS export (no seam, no decoder, no
        duration tensor).
      OSError: the cache folder cannot be written.
    """
    root = cache_root or split_cache_root()
    folder = root / f"{model_path.stem}-{_cache_key(model_path)}"
    cached = _load_meta(folder)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".split-", dir=root))
    try:
        _split_into(model_path, work)
        try:
            os.replace(work, folder)
        except OSError:
            if _load_meta(folder) is None:  # not another process's finished split
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    split = _load_meta(folder)
    if split is None:
        raise OSError(f"the split of {model_path} in {folder} cannot be read back")
    _LOGGER.info("split %s into frontend and decoder graphs in %.1f s (cached in %s)",
                 model_path.name, time.perf_counter() - started, folder)
    return split


def _load_meta(folder: Path) -> SplitVoice | None:
    meta_path = folder / _META
    if not (meta_path.is_file() and (folder / _FRONTEND).is_file()
            and (folder / _DECODER).is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.pop("split_version", None) != SPLIT_VERSION:
            return None
        meta["frontend_inputs"] = tuple(meta["frontend_inputs"])
        return SplitVoice(directory=folder, **meta)
    except (ValueError, TypeError, KeyError):
        return None  # a stale or damaged cache: split again


def _split_into(model_path: Path, folder: Path) -> None:
    # onnx (18 MB of RSS) and the graph tools load only for a split, once per voice.
    import onnx  # noqa: PLC0415
    import onnx.utils  # noqa: PLC0415
    from onnx import shape_inference  # noqa: PLC0415
    from piper.patch_voice_with_alignment import add_alignment_output  # noqa: PLC0415
    from streaming_vits.graph import describe_decoder, find_seam  # noqa: PLC0415

    model = onnx.load(str(model_path))
    seam = find_seam(model)
    hop = int(describe_decoder(model)["hop"])
    durations = add_alignment_output(model)  # marks w_ceil as an output; we need its name
    # piper exports duplicate metadata keys, which onnx.checker (run by extract_model)
    # rejects; the metadata is not needed by either half.
    del model.metadata_props[:]
    model = shape_inference.infer_shapes(model, data_prop=True)
    # add_alignment_output appends an untyped graph output; extract_model's checker wants
    # it typed, and shape inference has just found its type.
    inferred = {info.name: info for info in model.graph.value_info}
    for output in model.graph.output:
        if output.name == durations and durations in inferred:
            output.CopyFrom(inferred[durations])
    full_path = folder / "full.onnx"
    onnx.save(model, str(full_path))
    inputs = [graph_input.name for graph_input in model.graph.input]
    boundary = [seam.z_p, seam.mask] + ([seam.g] if seam.g else [])
    onnx.utils.extract_model(str(full_path), str(folder / _FRONTEND), input_names=inputs,
                             output_names=[*boundary, durations])
    onnx.utils.extract_model(str(full_path), str(folder / _DECODER), input_names=boundary,
                             output_names=[model.graph.output[0].name])
    full_path.unlink()
    left, right = receptive_field_frames(onnx.load(str(folder / _DECODER)))
    meta = {"split_version": SPLIT_VERSION, "frontend_inputs": inputs, "z_p": seam.z_p,
            "mask": seam.mask, "speaker": seam.g, "durations": durations,
            "hop_samples": hop, "receptive_left_frames": left,
            "receptive_right_frames": right, "model_sha256": _file_sha256(model_path)}
    (folder / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def receptive_field_frames(decoder: onnx.ModelProto) -> tuple[int, int]:
    """Frames before and after an output frame that can change its audio (upper bound).

    Walks the decoder graph in order, carrying for every tensor how far (in frames of
    z_p) its values reach back and ahead, and its time resolution (samples per frame).
    A Conv of kernel k, dilation d and left padding p at resolution u reaches p/u frames
    back and ((k-1)d - p)/u ahead; a ConvTranspose of stride s multiplies the
    resolution by s; every other op is taken as pointwise in time (Piper's flow and
    HiFi-GAN have no other op that mixes time steps), combining its inputs' reach by
    the maximum. Windows with at least these margins decode exactly the frames they keep
    (up to float rounding).

    For en_US-joe-medium this gives 44 frames back and 43 ahead (the flow's 16 kernel-5
    convolutions alone account for 32).

    Args:
      decoder: The decoder graph (z_p, mask[, speaker]) -> audio.

    Returns:
      (left, right) in frames, rounded up.
    """
    import onnx  # noqa: PLC0415 - see _split_into

    reach: dict[str, tuple[float, float, int]] = {
        graph_input.name: (0.0, 0.0, 1) for graph_input in decoder.graph.input}
    for node in decoder.graph.node:
        sources = [reach[name] for name in node.input if name in reach]
        if not sources:
            continue  # constants and weights: no time dependence
        left = max(source[0] for source in sources)
        right = max(source[1] for source in sources)
        resolution = max(source[2] for source in sources)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            kernel = attributes.get("kernel_shape", [1])[0]
            dilation = attributes.get("dilations", [1])[0]
            pad = attributes.get("pads", [0, 0])[0]
            left += pad / resolution
            right += ((kernel - 1) * dilation - pad) / resolution
        elif node.op_type == "ConvTranspose":
            kernel = attributes["kernel_shape"][0]
            stride = attributes.get("strides", [1])[0]
            pad = attributes.get("pads", [0, 0])[0]
            left += (kernel - 1 - pad) / stride / resolution
            right += pad / stride / resolution
            resolution *= stride
        for name in node.output:
            reach[name] = (left, right, resolution)
    left, right, _ = reach[decoder.graph.output[0].name]
    return -int(-left // 1), -int(-right // 1)


def split_description(split: SplitVoice) -> dict[str, object]:
    """The split's metadata as plain JSON values (for benchmark reports)."""
    description = asdict(split)
    description["directory"] = str(split.directory)
    return description
