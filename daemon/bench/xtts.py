"""XTTS-v2 streaming benchmark: first-piece latency and RTF, FP16 vs FP32, chunk sizes.

Runs in the XTTS environment, on the engine code the daemon uses (`XttsModel`: real
`Xtts.load_checkpoint`, precision set-up, `inference_stream`, edge fades):

    .venv-xtts/bin/python -m daemon.bench.xtts --device cuda --out benchmarks/xtts.json

Without `--model` it writes a random-weight checkpoint with XTTS-v2's real dimensions
(`--size full`, 1.8 GB; timing depends on shapes, not weight values) and loads it like
the real one. Every run generates exactly `--tokens` GPT tokens (the stop token is
suppressed and the length capped), so runs are comparable whatever the weights say.

Measured per dtype:
  * first-piece latency per first `stream_chunk_size` in the sweep: from the text
    chunk's arrival at the model to its first audio piece (the issue's goal on an
    H100: <= 120 ms);
  * RTF = synthesis time / audio duration for `--tokens` tokens streamed in
    `--stream-chunk-size` pieces (goal <= 0.1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

TEXT = "Aye, the blade is chipped, but bring it to the forge at dawn and I will mend it."


def _synthesize(model, latents, tokens: int, chunk_size: int) -> tuple[float, float, float]:
    """One fixed-length synthesis: (first piece ms, total ms, audio ms)."""
    torch = model.torch
    model.model.gpt.max_gen_mel_tokens = tokens
    torch.manual_seed(0)
    started = time.perf_counter()
    first_ms = None
    samples = 0
    for piece in model.stream(TEXT, latents, "en", chunk_size, 1024, lambda: False,
                              min_new_tokens=tokens):
        if first_ms is None:
            if model.device.startswith("cuda"):
                torch.cuda.synchronize()
            first_ms = (time.perf_counter() - started) * 1000.0
        samples += piece.size
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    total_ms = (time.perf_counter() - started) * 1000.0
    return first_ms or total_ms, total_ms, samples * 1000.0 / model.sample_rate_hz


def bench_dtype(model_dir: Path, device: str, dtype: str, args: argparse.Namespace) -> dict:
    """Load the model in `dtype` and measure it (see the module docstring)."""
    from daemon.tts.xtts.model import Latents, XttsModel

    started = time.perf_counter()
    model = XttsModel(model_dir, device, dtype)
    load_s = time.perf_counter() - started
    torch = model.torch
    channels = int(model.config.model_args.gpt_n_model_channels)
    latents = Latents(torch.randn(1, 32, channels) * 0.1,
                      torch.nn.functional.normalize(torch.randn(1, 512, 1), dim=1))
    warm_up_ms = model.warm_up()
    first_piece = {}
    for chunk_size in args.first_chunk_sizes:
        runs = [_synthesize(model, latents, max(chunk_size, 1) + 1, chunk_size)[0]
                for _ in range(args.repeats)]
        first_piece[str(chunk_size)] = {"p50_ms": round(statistics.median(runs), 1),
                                        "min_ms": round(min(runs), 1)}
        print(f"  {dtype:8} first stream_chunk_size {chunk_size:3}: first piece p50 "
              f"{statistics.median(runs):7.1f} ms")
    rtfs = []
    audio_ms = 0.0
    for _ in range(args.repeats):
        _, total_ms, audio_ms = _synthesize(model, latents, args.tokens, args.stream_chunk_size)
        rtfs.append(total_ms / audio_ms)
    print(f"  {dtype:8} RTF ({args.tokens} tokens, chunk {args.stream_chunk_size}): p50 "
          f"{statistics.median(rtfs):.3f}")
    result = {"load_s": round(load_s, 2), "warm_up_ms": round(warm_up_ms, 1),
              "first_piece": first_piece, "rtf_audio_ms": round(audio_ms, 1),
              "rtf_p50": round(statistics.median(rtfs), 4), "rtf_runs": [round(r, 4) for r in rtfs]}
    if device.startswith("cuda"):
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        torch.cuda.reset_peak_memory_stats()
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict:
    """`npc-voice bench xtts`: time first audio and RTF; returns the report."""
    from daemon.testing.random_xtts import SIZES, write_random_xtts

    parser = argparse.ArgumentParser(prog="npc-voice bench xtts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path,
                        help="checkpoint folder (default: random weights)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="random model size when --model is not given (default: full)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--dtypes", default="float16,float32", help="GPT precisions to compare")
    parser.add_argument("--first-chunk-sizes", default="4,6,8,12,16,20",
                        type=lambda s: [int(v) for v in s.split(",")],
                        help="first stream_chunk_size values to sweep (GPT tokens)")
    parser.add_argument("--stream-chunk-size", type=int, default=20,
                        help="piece size for the RTF run (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=60,
                        help="GPT tokens per RTF run (60 = 2.8 s of audio)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="xtts-bench-") as scratch:
        model_dir = args.model
        if model_dir is None:
            print(f"writing a random {args.size} XTTS-v2 checkpoint ...")
            model_dir = write_random_xtts(Path(scratch) / args.size, SIZES[args.size])
        device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                       else "cpu")
        print(f"XTTS benchmark on {device_name}, torch {torch.__version__}")
        report = {"device": device_name, "torch": torch.__version__,
                  "model": str(args.model or f"random:{args.size}"),
                  "tokens": args.tokens, "stream_chunk_size": args.stream_chunk_size,
                  "repeats": args.repeats, "threads": args.threads, "dtypes": {}}
        for dtype in args.dtypes.split(","):
            report["dtypes"][dtype] = bench_dtype(model_dir, args.device, dtype, args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
