"""Messages between the daemon and its XTTS worker process, and their framing.

XTTS runs in a process of its own (`daemon.tts.xtts.worker`), usually in its own
Python environment: coqui-tts needs a torch/torchaudio pair that import together
(the `xtts` extra pins them), PyTorch and llama.cpp CUDA contexts in one process are
reported to crash (llama.cpp#3960), and the GPT's Python-level generation loop would
otherwise hold the daemon's GIL. The worker reads requests on stdin and writes
replies on stdout, each a frame: a 4-byte little-endian length, then msgpack.

This module imports only msgspec, so both sides can use it whatever else is installed.
"""

from __future__ import annotations

import re
import struct
from typing import IO, Literal

import msgspec

_LENGTH = struct.Struct("<I")
MAX_FRAME_BYTES = 64 * 1024 * 1024

Dtype = Literal["float16", "bfloat16", "float32"]
LoadFailure = Literal["not_installed", "no_cuda", "out_of_memory", "model_not_found",
                      "load_failed"]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Message(msgspec.Struct, tag_field="type", tag=_snake_case, kw_only=True, frozen=True):
    """Base of the wire messages; `type` is the snake_case class name (as on the socket)."""


# ---- daemon -> worker -------------------------------------------------------------

class Load(_Message, frozen=True):
    """First request: load the model, warm it up, answer `Ready` or `LoadFailed`.

    Attributes:
      model_dir: Folder with config.json, model.pth, vocab.json.
      device: "cuda", "cuda:N" or "cpu".
      dtype: Precision of the GPT ("float16" on CUDA); the vocoder, the speaker
        encoder and the conditioning encoder always run in float32.
      torch_threads: torch intra-op threads (CPU work).
      latents_cache_dir: Folder of cached conditioning latents.
      warm_up: Run one short synthesis before answering `Ready`.
    """

    model_dir: str
    device: str
    dtype: Dtype
    torch_threads: int
    latents_cache_dir: str
    warm_up: bool = True


class PrepareVoice(_Message, frozen=True):
    """Compute (or load from the cache) one voice's conditioning latents."""

    voice: str
    clips: list[str]


class Synthesize(_Message, frozen=True):
    """Stream one text chunk as `Audio` frames, then `End`.

    Attributes:
      request_id: Echoed in every reply of this request.
      voice: A voice prepared with `PrepareVoice`.
      text: One phrase chunk.
      language: XTTS language code ("en").
      stream_chunk_size: GPT tokens per streamed piece (1 token is about 46 ms).
      overlap_samples: Cross-fade between re-decoded pieces (coqui's overlap_wav_len).
      temperature, top_k, top_p, repetition_penalty, length_penalty: GPT sampling.
      speed: Speaking rate (1.0 = the model's own).
      seed: torch seed for this request; -1 = not reseeded.
    """

    request_id: int
    voice: str
    text: str
    language: str
    stream_chunk_size: int
    overlap_samples: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    length_penalty: float = 1.0
    speed: float = 1.0
    seed: int = -1


class Cancel(_Message, frozen=True):
    """Stop request `request_id` at the next piece boundary (an `End` still follows)."""

    request_id: int


class Shutdown(_Message, frozen=True):
    """Exit once the current request is done."""


# ---- worker -> daemon -------------------------------------------------------------

class Ready(_Message, frozen=True):
    """The model is loaded (and warm).

    Attributes:
      sample_rate_hz: Output rate (24000 for XTTS-v2).
      device, dtype: What the model actually runs on.
      model_id: Short identity of the checkpoint (part of every latents cache key).
      load_ms, warm_up_ms: How long loading and the warm-up took.
      versions: torch, torchaudio and coqui-tts versions, for the log.
    """

    sample_rate_hz: int
    device: str
    dtype: str
    model_id: str
    load_ms: float
    warm_up_ms: float
    versions: str


class LoadFailed(_Message, frozen=True):
    """The model could not be loaded; the daemon falls back to CPU voices."""

    reason: LoadFailure
    message: str


class VoiceReady(_Message, frozen=True):
    """A voice's latents are available.

    Attributes:
      cache: "hit" (read from the cache), "miss" (computed and stored) or "rebuilt"
        (the cached entry was unreadable and was computed again).
      cache_path: The cache file.
      ms: Time taken.
    """

    voice: str
    cache: Literal["hit", "miss", "rebuilt"]
    cache_path: str
    ms: float


class VoiceFailed(_Message, frozen=True):
    """A voice's reference clips could not be used (missing, unreadable, too short)."""

    voice: str
    message: str


class Audio(_Message, frozen=True):
    """One streamed piece: s16le mono PCM at `Ready.sample_rate_hz`."""

    request_id: int
    pcm: bytes


class End(_Message, frozen=True):
    """The last reply of a `Synthesize`.

    Attributes:
      cancelled: Stopped by `Cancel` before the end of the text.
      error: Why synthesis failed ("" = it did not).
      first_piece_ms: From the request's arrival to its first piece (None = no audio).
      audio_ms: Audio produced.
      busy_ms: Time spent synthesising.
    """

    request_id: int
    cancelled: bool = False
    error: str = ""
    first_piece_ms: float | None = None
    audio_ms: float = 0.0
    busy_ms: float = 0.0


ToWorker = Load | PrepareVoice | Synthesize | Cancel | Shutdown
FromWorker = Ready | LoadFailed | VoiceReady | VoiceFailed | Audio | End

_ENCODER = msgspec.msgpack.Encoder()
_TO_WORKER = msgspec.msgpack.Decoder(ToWorker)
_FROM_WORKER = msgspec.msgpack.Decoder(FromWorker)


class WorkerGone(EOFError):
    """The other end closed the pipe (the worker exited or the daemon went away)."""


def write_frame(stream: IO[bytes], message: ToWorker | FromWorker) -> None:
    """Write one framed message and flush."""
    payload = _ENCODER.encode(message)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            raise WorkerGone("pipe closed")
        data += piece
    return data


def _read_payload(stream: IO[bytes]) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME_BYTES}")
    return _read_exactly(stream, size)


def read_to_worker(stream: IO[bytes]) -> ToWorker:
    """Read one request (worker side). Raises WorkerGone at end of input."""
    return _TO_WORKER.decode(_read_payload(stream))


def read_from_worker(stream: IO[bytes]) -> FromWorker:
    """Read one reply (daemon side). Raises WorkerGone when the worker has exited."""
    return _FROM_WORKER.decode(_read_payload(stream))
