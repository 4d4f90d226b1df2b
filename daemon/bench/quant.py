"""The bundled LLM's weight types: prefill, decoding and how far each drifts from Q4_1.

In process, no daemon. The shipped SmolLM2 Q4_1 GGUF is re-quantized by llama.cpp's
own quantizer (`daemon.llm.gguf.requantized`) into each type asked for, in a folder of
this run's own, and every copy is loaded the way the daemon loads the bundled model
(`LlamaContext` with the packaged `[llm]` settings: one thread, n_ctx 2048). Then:

  * speed: for each corpus line, alternating between the types, the NPC's persona is
    evaluated first (as the daemon prefills it at start-up), then the player's line is
    answered: "prefill + first token" is the time to the first reply token (the line
    and the chat markup are the new prompt tokens), "decode" the mean time per token
    over the next `--decode-tokens` tokens;
  * drift: the log-probabilities each type gives every next token of a fixed English
    text (the personas and corpus lines, ~1000 tokens) against those of an F16 copy
    of the same Q4_1 weights, which computes with Q4_1's values exactly: mean KL
    divergence per token (nats), top-1 agreement and perplexity.

    npc-voice bench quant --quants q4_1,q8_0 --json bench-results/quant.json

"q4_1" is the file as shipped; "q8_0" is what `llm.model = "smollm2"` loads.
`--cache-types-k f16,q8_0` runs each type with each type of KV-cache keys
(`llm.cache_type_k`), alternating too; the drift's reference keeps F16 keys.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import numpy as np

from daemon.bench.stats import machine_description, machine_load, percentiles, write_report
from daemon.bench.ttfa import load_corpus
from daemon.config_file import load_config
from daemon.llm.base import ReplyDelta
from daemon.llm.gguf import QUANT_FTYPES, kl_divergence, next_token_log_probs, requantized
from daemon.llm.llama import KV_CACHE_TYPES, KvStateStore, LlamaContext
from daemon.models import bundled_llm_path

DRIFT_TOKENS = 1024


def _copies(quants: list[str], folder: Path) -> dict[str, Path]:
    """Each type's GGUF: the shipped file for q4_1, else a copy written into `folder`."""
    shipped = bundled_llm_path()
    paths = {}
    for quant in [*quants, "f16"]:
        if quant == "q4_1":
            paths[quant] = shipped
            continue
        if quant not in QUANT_FTYPES:
            raise SystemExit(f"unknown type {quant!r}; known: q4_1, {', '.join(QUANT_FTYPES)}")
        paths[quant] = requantized(shipped, folder / f"smollm2.{quant}.gguf", quant)
    return paths


def _time_turn(context: LlamaContext, key: str, persona: str, line: str,
               decode_tokens: int) -> tuple[float, float]:
    """(prefill + first token ms, decode ms per token) of one answered line."""
    context.prefill(key, [{"role": "system", "content": persona}])
    stamps: list[float] = []
    stop = threading.Event()

    def emit(event: object) -> None:
        if isinstance(event, ReplyDelta) and event.text:
            stamps.append(time.perf_counter())
            if len(stamps) > decode_tokens:
                stop.set()

    started = time.perf_counter()
    context.reply(key, [{"role": "system", "content": persona},
                        {"role": "user", "content": line}], emit, stop,
                  max_tokens=decode_tokens + 1)
    first = (stamps[0] - started) * 1000
    decode = (stamps[-1] - stamps[0]) * 1000 / max(len(stamps) - 1, 1)
    return first, decode


def _drift(paths: dict[str, Path], variants: dict[str, tuple[str, str]], text: str
           ) -> dict[str, dict]:
    """Each variant's drift from the F16 copy: KL, top-1 agreement, perplexity of `text`.

    Args:
      paths: GGUF by weight type ("f16" included: the reference, read with F16 keys).
      variants: (weight type, key type) by variant name.
      text: What is read.
    """
    tokens, reference = next_token_log_probs(paths["f16"], text, DRIFT_TOKENS)
    following = np.array(tokens[1:])
    out = {}
    for name, (quant, cache_type_k) in variants.items():
        _, log_probs = next_token_log_probs(paths[quant], text, DRIFT_TOKENS, cache_type_k)
        nll = -log_probs[np.arange(len(following)), following].mean()
        out[name] = {"kl_nats_per_token": round(kl_divergence(reference, log_probs), 5),
                      "top1_agreement": round(float((log_probs.argmax(-1)
                                                     == reference.argmax(-1)).mean()), 4),
                      "perplexity": round(float(np.exp(nll)), 3), "tokens": len(tokens)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: `npc-voice bench quant`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench quant",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quants", default="q4_1,q8_0",
                        help="comma-separated weight types: q4_1 (as shipped), q8_0 (what "
                             "the daemon loads), also q4_0, iq4_nl, q5_0, q5_1, f16")
    parser.add_argument("--lines", type=int, default=31, help="corpus lines (at most 31)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the lines")
    parser.add_argument("--decode-tokens", type=int, default=7,
                        help="tokens timed after the first one")
    parser.add_argument("--cache-types-k", default="",
                        help="comma-separated KV-cache key types (f16, q8_0) to run each "
                             "weight type with (default: the packaged config's)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/quant.json"))
    args = parser.parse_args(argv)
    quants = [q.strip() for q in args.quants.split(",") if q.strip()]
    config = load_config(None)
    key_types = [k.strip() for k in args.cache_types_k.split(",") if k.strip()] or [
        config.llm.cache_type_k]
    if unknown := sorted(set(key_types) - set(KV_CACHE_TYPES)):
        raise SystemExit(f"unknown key type(s) {', '.join(unknown)}; known: "
                         f"{', '.join(KV_CACHE_TYPES)}")
    variants = {(q if len(key_types) == 1 else f"{q}+k_{k}"): (q, k)
                for q in quants for k in key_types}
    corpus = load_corpus()[:args.lines]
    report: dict = {"machine": machine_description(), "machine_load_at_start": machine_load(),
                    "command": " ".join(["npc-voice bench quant", *(argv or sys.argv[2:])]),
                    "llm": {"n_threads": config.llm.n_threads,
                            "n_threads_batch": config.llm.n_threads_batch,
                            "n_ctx": config.llm.n_ctx, "cache_types_k": key_types}}
    with tempfile.TemporaryDirectory(prefix="npc-voice-quant-") as folder:
        paths = _copies(quants, Path(folder))
        report["file_mb"] = {q: round(paths[q].stat().st_size / 1e6, 1) for q in quants}
        llm = config.llm
        contexts = {name: LlamaContext(paths[q], msgspec.structs.replace(llm, cache_type_k=k),
                                       KvStateStore(llm.state_cache_bytes), name)
                    for name, (q, k) in variants.items()}
        timings: dict[str, tuple[list[float], list[float]]] = {name: ([], [])
                                                              for name in variants}
        for repeat in range(args.repeats):
            for index, (npc_id, line) in enumerate(corpus):
                persona = config.npcs[npc_id].persona
                for name, context in contexts.items():
                    first, decode = _time_turn(context, f"{npc_id}/{repeat}/{index}",
                                               persona, line, args.decode_tokens)
                    timings[name][0].append(first)
                    timings[name][1].append(decode)
        del contexts
        text = "\n".join([*(npc.persona for npc in config.npcs.values()),
                          *(line for _, line in load_corpus())] * 4)
        drift = _drift(paths, variants, text)
    report["quants"] = {
        name: {"prefill_first_token_ms": percentiles(timings[name][0]),
               "decode_ms_per_token_p50": round(statistics.median(timings[name][1]), 2),
               "file_mb": report["file_mb"][q], "cache_type_k": k, **drift[name]}
        for name, (q, k) in variants.items()}
    report["machine_load_at_end"] = machine_load()
    print(f"{'type':12} {'file':>7} {'prefill+1st p50':>15} {'p95':>6} {'decode/tok':>10} "
          f"{'KL vs F16 of Q4_1':>17} {'top-1':>6} {'ppl':>7}")
    for quant, row in report["quants"].items():
        first = row["prefill_first_token_ms"]
        print(f"{quant:12} {row['file_mb']:5.0f}MB {first['p50']:13.1f}ms {first['p95']:5.0f} "
              f"{row['decode_ms_per_token_p50']:8.1f}ms {row['kl_nats_per_token']:17.4f} "
              f"{row['top1_agreement'] * 100:5.1f}% {row['perplexity']:7.2f}")
    write_report(args.json, report)
    return 0
