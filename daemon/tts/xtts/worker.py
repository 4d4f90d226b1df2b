"""The XTTS worker process: `python -m daemon.tts.xtts.worker`, started by the daemon.

Reads framed requests on stdin, writes framed replies on stdout (daemon.tts.xtts.wire)
and logs to stderr, which the daemon inherits. Everything coqui-tts, transformers or
torch print goes to stderr too: the worker moves its stdout to a private descriptor
first, so nothing but frames can reach the pipe.

A reader thread takes requests off stdin as they arrive, so a `Cancel` is seen while
a synthesis is running (it is checked after every streamed piece); the main thread
runs the model. Failures to load are answered with `LoadFailed` and a reason
(`not_installed`, `no_cuda`, `out_of_memory`, `model_not_found`, `load_failed`), so
the daemon can fall back to CPU voices with one clear warning.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from daemon.tts.xtts import wire

if TYPE_CHECKING:  # torch lives only in this worker's environment: types only
    from daemon.tts.xtts.latents import LatentsCache
    from daemon.tts.xtts.model import Latents, XttsModel

_LOGGER = logging.getLogger(__name__)


class _Requests:
    """Requests read by a background thread; cancellations are recorded on arrival."""

    def __init__(self, stream: BinaryIO) -> None:
        self._queue: queue.Queue[wire.ToWorker] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), name="xtts-requests",
                         daemon=True).start()

    def _read(self, stream: BinaryIO) -> None:
        while True:
            try:
                request = wire.read_to_worker(stream)
            except (wire.WorkerGone, ValueError):
                self._queue.put(wire.Shutdown())
                return
            if isinstance(request, wire.Cancel):
                with self._lock:
                    self._cancelled.add(request.request_id)
            self._queue.put(request)

    def next(self) -> wire.ToWorker:
        return self._queue.get()

    def is_cancelled(self, request_id: int) -> bool:
        with self._lock:
            return request_id in self._cancelled

    def forget(self, request_id: int) -> None:
        with self._lock:
            self._cancelled.discard(request_id)


def _load(request: wire.Load) -> tuple[XttsModel | None, wire.Ready | wire.LoadFailed]:
    """Load the model as `request` says; returns (model, LoadFailed | Ready)."""
    started = time.perf_counter()
    try:
        from importlib.metadata import version

        import torch
        import torchaudio

        from daemon.tts.xtts.model import ModelFilesMissing, XttsModel
        versions = (f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
                    f"coqui-tts {version('coqui-tts')}")
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken torch/torchaudio pair
        return None, wire.LoadFailed(
            reason="not_installed",
            message=f"coqui-tts cannot be imported in {sys.executable} ({exc}); "
                    "install the xtts extra there (see README, 'XTTS v2')")
    torch.set_num_threads(request.torch_threads)
    if request.device.startswith("cuda") and not torch.cuda.is_available():
        return None, wire.LoadFailed(
            reason="no_cuda", message=f"XTTS is set to {request.device} but torch "
            f"{torch.__version__} sees no CUDA device")
    try:
        model = XttsModel(Path(request.model_dir), request.device, request.dtype)
        load_ms = (time.perf_counter() - started) * 1000.0
        warm_up_ms = model.warm_up() if request.warm_up else 0.0
    except ModelFilesMissing as exc:
        return None, wire.LoadFailed(reason="model_not_found", message=str(exc))
    except torch.cuda.OutOfMemoryError as exc:
        return None, wire.LoadFailed(
            reason="out_of_memory", message=f"XTTS does not fit on {request.device}: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported to the daemon, which falls back
        return None, wire.LoadFailed(reason="load_failed", message=f"{type(exc).__name__}: {exc}")
    return model, wire.Ready(
        sample_rate_hz=model.sample_rate_hz, device=request.device, dtype=request.dtype,
        model_id=model.model_id, load_ms=round(load_ms, 1), warm_up_ms=round(warm_up_ms, 1),
        versions=versions)


def _prepare_voice(model: XttsModel, cache: LatentsCache, voices: dict[str, Latents],
                   request: wire.PrepareVoice) -> wire.VoiceReady | wire.VoiceFailed:
    from daemon.tts.xtts.latents import ClipError, cache_key, read_clip

    started = time.perf_counter()
    paths = [Path(clip) for clip in request.clips]
    try:
        key = cache_key(model.model_id, paths)
        path = cache.path(key)
        latents = cache.load(key)
        state: Literal["hit", "miss", "rebuilt"] = "hit"
        if latents is None:
            state = "rebuilt" if path.exists() else "miss"
            latents = model.compute_latents([read_clip(p) for p in paths])
            cache.store(key, latents, paths)
    except (ClipError, RuntimeError) as exc:
        return wire.VoiceFailed(voice=request.voice, message=str(exc))
    voices[request.voice] = latents
    return wire.VoiceReady(voice=request.voice, cache=state, cache_path=str(path),
                           ms=round((time.perf_counter() - started) * 1000.0, 1))


def _synthesize(model: XttsModel, voices: dict[str, Latents], requests: _Requests,
                out: BinaryIO,
                request: wire.Synthesize) -> None:
    started = time.perf_counter()
    rid = request.request_id
    samples, first_piece_ms, error = 0, None, ""
    try:
        if request.seed >= 0:
            model.torch.manual_seed(request.seed)
        if request.voice not in voices:
            raise LookupError(f"voice {request.voice!r} was not prepared")
        pieces = model.stream(
            request.text, voices[request.voice], request.language,
            request.stream_chunk_size, request.overlap_samples,
            lambda: requests.is_cancelled(rid),
            temperature=request.temperature, top_k=request.top_k, top_p=request.top_p,
            repetition_penalty=request.repetition_penalty,
            length_penalty=request.length_penalty, speed=request.speed)
        for piece in pieces:
            if first_piece_ms is None:
                first_piece_ms = round((time.perf_counter() - started) * 1000.0, 2)
            samples += piece.size
            wire.write_frame(out, wire.Audio(request_id=rid, pcm=piece.astype("<i2").tobytes()))
    except (BrokenPipeError, wire.WorkerGone):
        raise
    except Exception as exc:
        _LOGGER.exception("synthesis of request %d failed", rid)
        error = f"{type(exc).__name__}: {exc}"
    wire.write_frame(out, wire.End(
        request_id=rid, cancelled=requests.is_cancelled(rid), error=error,
        first_piece_ms=first_piece_ms,
        audio_ms=round(samples * 1000.0 / model.sample_rate_hz, 2),
        busy_ms=round((time.perf_counter() - started) * 1000.0, 2)))
    requests.forget(rid)


def serve(requests: _Requests, out: BinaryIO) -> int:
    """Answer requests until `Shutdown` or end of input; returns the exit status."""
    from daemon.tts.xtts.latents import LatentsCache

    first = requests.next()
    if not isinstance(first, wire.Load):
        _LOGGER.error("expected a load request first, got %s", type(first).__name__)
        return 2
    model, answer = _load(first)
    wire.write_frame(out, answer)
    if model is None:
        return 0
    cache = LatentsCache(Path(first.latents_cache_dir))
    voices: dict = {}
    while True:
        request = requests.next()
        if isinstance(request, wire.Shutdown):
            return 0
        if isinstance(request, wire.PrepareVoice):
            wire.write_frame(out, _prepare_voice(model, cache, voices, request))
        elif isinstance(request, wire.Synthesize):
            _synthesize(model, voices, requests, out, request)
        elif isinstance(request, wire.Cancel):
            requests.forget(request.request_id)  # arrived after its End: nothing to stop
        # A second Load is ignored: one model per worker.


def main() -> int:
    """Serve the daemon's requests on stdin/stdout until stdin closes; the exit code."""
    # Only frames may reach the daemon's pipe: keep the real stdout for them and
    # point descriptor 1 (what print() and C libraries use) at stderr.
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=os.environ.get("NPC_VOICE_XTTS_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s xtts-worker: %(message)s")
    requests = _Requests(sys.stdin.buffer)
    try:
        return serve(requests, frames_out)
    except (BrokenPipeError, wire.WorkerGone):
        return 0  # the daemon went away


if __name__ == "__main__":
    status = main()
    # The request reader may be blocked in a read of stdin; a normal interpreter exit
    # would wait on that stream's lock and abort. Nothing is left to flush or close.
    os._exit(status)
