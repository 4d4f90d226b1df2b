"""`npc-voice bench [SUITE] ...`: one entry point for every benchmark.

Each suite is a module of this package with `main(argv) -> int`; it prints its figures
and writes JSON. Without a suite name (or with only options), `ttfa` runs, so
`npc-voice bench --turns 24` keeps meaning the TTFA comparison.
"""

from __future__ import annotations

import importlib

SUITES: dict[str, str] = {
    "ttfa": "streaming daemon vs naive pipeline vs RealtimeTTS, then K clients (TTFA, "
            "stages, RTF, underruns, RSS)",
    "tiers": "two-tier replies: turns, random full-size Qwen GGUFs on the GPU, VRAM budget",
    "voice": "voice input: end of speech -> first audio, WER; Smart Turn, silence, endpoint",
    "asr": "Whisper in process: encoder windows (ASR time, WER) on short, long, "
           "Portuguese and Spanish lines",
    "xtts": "XTTS-v2 first audio and RTF, FP16 vs FP32 (run it in .venv-xtts; GPU)",
    "reliability": "hostile, vanishing and greedy clients against a live daemon (soak)",
    "languages": "hibari vs Piper (first audio, RTF); Whisper base vs tiny.en (WER, ASR "
                 "time); Portuguese and Spanish WER",
    "quant": "the bundled LLM's weight types (Q4_1 as shipped, Q8_0 as loaded): prefill, "
             "decoding, drift from the shipped weights",
    "piper": "Piper streaming inside a chunk vs whole sentences: first audio, RTF, seams",
    "timing": "word and viseme timing: its cost on TTFA, and drift over a 20 s reply",
    "scenes": "scenes: gap between speakers at the client, overlaps, player interjections",
}


def usage() -> str:
    """The suites, one line each, for `--help`."""
    width = max(map(len, SUITES))
    return "suites:\n" + "\n".join(f"  {name:{width}}  {text}" for name, text in SUITES.items())


def run(argv: list[str]) -> int:
    """Run `npc-voice bench` with the arguments after `bench`; returns the exit code."""
    if argv and argv[0] in SUITES:
        suite, rest = argv[0], argv[1:]
    else:
        suite, rest = "ttfa", argv
    module = importlib.import_module(f"daemon.bench.{suite}")
    result = module.main(rest)
    return result if isinstance(result, int) else 0
