"""Whisper in process: what the encoder window costs and what it changes in the words.

Whisper's encoder reads a fixed window of log-mel frames (30 s as trained); the
daemon encodes short lines in a shorter one (`[asr] encoder_window_s`,
`daemon.asr.transcriber`). This benchmark transcribes the same utterances in each
window asked for and reports the time per line and the word error rate:
  * english: the packaged corpus's 31 lines, spoken by Piper (no noise), 1.2-2.6 s,
    heard by the English model (`--model`, default tiny.en, greedy);
  * english_long: the same lines three at a time with 250 ms between them (5-8 s);
  * pt-BR, es: eight lines each spoken by espeak-ng (`daemon.bench.languages`), heard
    by the multilingual model (`--multilingual-model`, default base) forced to the
    language, beam 5 (the daemon's default for it).
A window of 30 goes through faster-whisper's own `transcribe` (what the daemon did before
the short window); shorter ones through the daemon's short-window path, falling back
to 30 s as the daemon does.

    npc-voice bench asr --windows 30,15,10 --json bench-results/asr.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import soxr

from daemon.asr.transcriber import (
    SAMPLE_RATE_HZ,
    WHISPER_WINDOW_S,
    DecodeOptions,
    Transcriber,
    resolve_whisper,
)
from daemon.bench.languages import ESPEAK_RATE_WPM, SPOKEN
from daemon.bench.stats import (
    machine_description,
    machine_load,
    percentiles,
    word_error_rate,
    write_report,
)
from daemon.bench.ttfa import load_corpus
from daemon.bench.voice import speak_lines
from daemon.testing.espeak_speech import speak

LINE_GAP_S = 0.25
"""Silence between the lines of a long utterance."""


def _utterance_sets(line_count: int, multilingual: bool
                    ) -> dict[str, tuple[list[str], list[np.ndarray], bool, DecodeOptions]]:
    """Each set's reference lines, float32 16 kHz audio, model and decoding options."""
    lines = [line for _, line in load_corpus()][:line_count]
    english = [audio.astype(np.float32) / 32768.0 for audio in speak_lines(lines)]
    gap = np.zeros(int(LINE_GAP_S * SAMPLE_RATE_HZ), dtype=np.float32)
    long_lines, long_audio = [], []
    for first in range(0, len(lines) - 2, 3):
        long_lines.append(" ".join(lines[first:first + 3]))
        long_audio.append(np.concatenate([english[first], gap, english[first + 1], gap,
                                          english[first + 2]]))
    sets = {"english": (lines, english, False, DecodeOptions()),
            "english_long": (long_lines, long_audio, False, DecodeOptions())}
    if multilingual:
        for language, (voice, spoken_lines) in SPOKEN.items():
            utterances, rate_hz = speak(spoken_lines, voice, ESPEAK_RATE_WPM)
            audio = [soxr.resample(u, rate_hz, SAMPLE_RATE_HZ).astype(np.float32) / 32768.0
                     for u in utterances]
            sets[language] = (spoken_lines, audio, True,
                              DecodeOptions(beam_size=5, language=language.split("-")[0]))
    return sets


def main(argv: list[str] | None = None) -> int:
    """Entry point: `npc-voice bench asr`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench asr",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="30,15,10",
                        help="comma-separated encoder windows in seconds (10..30)")
    parser.add_argument("--model", default="tiny.en", help="English model ([asr] model)")
    parser.add_argument("--multilingual-model", default="base",
                        help="model of the Portuguese and Spanish lines ('' = skip them)")
    parser.add_argument("--lines", type=int, default=31,
                        help="corpus lines of the English sets (at most 31)")
    parser.add_argument("--threads", type=int, default=2, help="Whisper threads")
    parser.add_argument("--json", type=Path, default=Path("bench-results/asr.json"))
    args = parser.parse_args(argv)
    windows = [float(w) for w in args.windows.split(",") if w.strip()]
    if any(not 10.0 <= w <= WHISPER_WINDOW_S for w in windows):
        parser.error("every window must be 10..30 s")
    models = {False: Transcriber(resolve_whisper(args.model), cpu_threads=args.threads)}
    if args.multilingual_model:
        models[True] = Transcriber(resolve_whisper(args.multilingual_model),
                                   cpu_threads=args.threads)
    for model in models.values():
        for window_s in windows:
            model.warm_up(window_s)
    report: dict = {"machine": machine_description(), "machine_load_at_start": machine_load(),
                    "command": " ".join(["npc-voice bench asr", *(argv or sys.argv[2:])]),
                    "sets": {}}
    print(f"{'set':13} {'window':>6} {'ASR p50':>8} {'p95':>6} {'WER':>7}  (ms per utterance)")
    sets = _utterance_sets(args.lines, multilingual=True in models)
    for name, (lines, audio, multilingual, options) in sets.items():
        by_window: dict[str, dict] = {}
        report["sets"][name] = {
            "utterances": len(lines),
            "duration_s": [round(min(a.size for a in audio) / SAMPLE_RATE_HZ, 2),
                           round(max(a.size for a in audio) / SAMPLE_RATE_HZ, 2)],
            "windows": by_window}
        for window_s in windows:
            texts, times = [], []
            window_options = dataclasses.replace(options, encoder_window_s=window_s)
            for samples in audio:
                started = time.perf_counter()
                texts.append(models[multilingual].transcribe(samples, window_options))
                times.append((time.perf_counter() - started) * 1000.0)
            wer = word_error_rate(lines, texts)
            by_window[str(window_s)] = {"asr_ms": percentiles(times), "wer": wer,
                                        "transcripts": texts}
            print(f"{name:13} {window_s:6.0f} {percentiles(times)['p50']!s:>8} "
                  f"{percentiles(times)['p95']!s:>6} {wer!s:>7}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
