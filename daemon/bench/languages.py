"""Voices and speech recognition per language: hibari beside Piper, Whisper base beside tiny.en.

TTS: the bundled Piper voice (joe, 22.05 kHz) and the hibari voice (heart, 24 kHz) speak
the same chunks on one thread each, as the daemon runs them: first audio (the engine's
first piece of a chunk) for the FAST profile's first chunks of the corpus lines, and
RTF (synthesis wall time / audio duration) over the whole lines.

ASR: the English voice-input set (the corpus lines spoken by Piper, as `bench voice`
does) through Whisper tiny.en and the multilingual Whisper base, greedy as the daemon's
"balanced" profile, 1 thread: WER and ASR time per utterance. Then Portuguese and
Spanish lines spoken by espeak-ng through Whisper base, forced to the language and
detected, greedy and beam 5. The policy of issue 18: if base costs more than 150 ms of
ASR time at p50, English NPCs keep tiny.en and base serves the other languages only.

    python -m daemon.bench.languages --json bench-results/languages.json
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from daemon.asr.transcriber import DecodeOptions, Transcriber, resolve_whisper
from daemon.bench.stats import machine_description, percentiles, word_error_rate, write_report
from daemon.bench.ttfa import load_corpus
from daemon.bench.voice import MIC_RATE_HZ, speak_lines
from daemon.config import VoiceConfig
from daemon.models import resolve_piper_voice
from daemon.pipeline.chunker import PhraseChunker
from daemon.profiles import BUILTIN_PROFILES
from daemon.testing.espeak_speech import speak
from daemon.tts.base import TtsEngine
from daemon.tts.hibari import HibariEngine
from daemon.tts.piper import PiperEngine

ASR_BUDGET_MS = 150.0
"""Issue 18: more ASR time than this at p50 keeps tiny.en for English NPCs."""

SPOKEN: dict[str, tuple[str, list[str]]] = {
    # language -> (espeak-ng voice, player lines); tests/test_multilingual_asr.py speaks them too.
    "pt-BR": ("pt-BR", [
        "Bom dia, eu gostaria de comprar uma espada nova.",
        "Você sabe onde fica a casa do prefeito?",
        "Eu preciso de um quarto para passar a noite.",
        "Quanto custa um prato de comida e uma cerveja?",
        "Obrigado pela ajuda, até amanhã.",
        "A estrada para o norte é perigosa?",
        "Eu perdi o meu cavalo perto do rio.",
        "Você pode me contar uma história?"]),
    "es": ("es", [
        "Buenos días, quiero comprar una espada nueva.",
        "¿Sabes dónde está la casa del alcalde?",
        "Necesito una habitación para pasar la noche.",
        "¿Cuánto cuesta un plato de comida y una cerveza?",
        "Gracias por la ayuda, hasta mañana.",
        "¿El camino hacia el norte es peligroso?",
        "Perdí mi caballo cerca del río.",
        "¿Puedes contarme una historia?"]),
}
ESPEAK_RATE_WPM = 130


def _time_tts(engine: TtsEngine, texts: list[str]) -> tuple[list[float], list[float]]:
    """(first-piece latency in ms, RTF) of each text, after one warm-up."""
    voice = VoiceConfig()
    engine.synthesize("Warm up, traveller.", voice, lambda _: None, threading.Event())
    first_ms, rtfs = [], []
    for text in texts:
        pieces: list[np.ndarray] = []
        started = time.perf_counter()
        first: list[float] = []

        def emit(piece: np.ndarray, first: list[float] = first,
                 pieces: list[np.ndarray] = pieces, started: float = started) -> None:
            if not first:
                first.append((time.perf_counter() - started) * 1000.0)
            pieces.append(piece)

        engine.synthesize(text, voice, emit, threading.Event(), turn_start=True)
        wall_s = time.perf_counter() - started
        audio_s = sum(p.size for p in pieces) / engine.sample_rate_hz
        first_ms.append(first[0])
        rtfs.append(wall_s / audio_s)
    return first_ms, rtfs


def bench_voices(lines: list[str]) -> dict:
    """Piper joe and hibari heart on the same first chunks and lines."""
    chunker_profile = BUILTIN_PROFILES["fast"]
    first_chunks = []
    for line in lines:
        chunker = PhraseChunker(chunker_profile)
        chunks = chunker.feed(line) + chunker.flush()
        first_chunks.append(chunks[0].text)
    engines: dict[str, TtsEngine] = {
        "piper:joe": PiperEngine(*resolve_piper_voice("joe")),
        "hibari:heart": HibariEngine(),
    }
    report = {}
    for name, engine in engines.items():
        first_ms, _ = _time_tts(engine, first_chunks)
        _, rtfs = _time_tts(engine, lines)
        report[name] = {"sample_rate_hz": engine.sample_rate_hz,
                        "first_audio_ms": percentiles(first_ms),
                        "rtf": {"p50": round(float(np.percentile(rtfs, 50)), 4),
                                "p95": round(float(np.percentile(rtfs, 95)), 4),
                                "mean": round(float(np.mean(rtfs)), 4)}}
    return report


def _transcribe_all(model: Transcriber, audio: list[np.ndarray], options: DecodeOptions
                    ) -> tuple[list[str], list[float]]:
    texts, times = [], []
    for samples in audio:
        started = time.perf_counter()
        texts.append(model.transcribe(samples.astype(np.float32) / 32768.0, options))
        times.append((time.perf_counter() - started) * 1000.0)
    return texts, times


def bench_asr(lines: list[str]) -> dict:
    """Whisper tiny.en vs base on English; base on Portuguese and Spanish."""
    english = speak_lines(lines)
    models = {name: Transcriber(resolve_whisper(name), cpu_threads=1)
              for name in ("tiny.en", "base")}
    for model in models.values():
        model.warm_up()
    report: dict = {"english": {}, "other_languages": {}}
    for name, model in models.items():
        texts, times = _transcribe_all(model, english, DecodeOptions(language="en"))
        report["english"][name] = {"wer": word_error_rate(lines, texts),
                                   "asr_ms": percentiles(times), "utterances": len(lines)}
    extra = (report["english"]["base"]["asr_ms"]["p50"]
             - report["english"]["tiny.en"]["asr_ms"]["p50"])
    report["base_extra_p50_ms"] = round(extra, 1)
    report["english_npcs_keep_tiny_en"] = extra > ASR_BUDGET_MS
    for language, (voice, spoken_lines) in SPOKEN.items():
        utterances, rate_hz = speak(spoken_lines, voice, ESPEAK_RATE_WPM)
        audio = [soxr.resample(u, rate_hz, MIC_RATE_HZ) for u in utterances]
        code = language.split("-")[0]
        runs = {}
        for label, options in (("forced_greedy", DecodeOptions(language=code)),
                               ("forced_beam5", DecodeOptions(beam_size=5, language=code)),
                               ("detected_greedy", DecodeOptions(language=None))):
            texts, times = _transcribe_all(models["base"], audio, options)
            runs[label] = {"wer": word_error_rate(spoken_lines, texts),
                           "asr_ms": percentiles(times), "transcripts": texts}
        report["other_languages"][language] = {"speech": f"espeak-ng {voice}, "
                                                         f"{ESPEAK_RATE_WPM} wpm",
                                               "model": "base", **runs}
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m daemon.bench.languages`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench languages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=31, help="corpus lines (English set)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/languages.json"))
    parser.add_argument("--skip-asr", action="store_true", help="voices only")
    args = parser.parse_args(argv)
    lines = [line for _, line in load_corpus()[: args.lines]]
    report: dict = {"machine": machine_description(),
                    "command": " ".join(["python -m daemon.bench.languages",
                                         *(argv if argv is not None else sys.argv[1:])])}
    report["voices"] = bench_voices(lines)
    print(f"{'voice':14} {'rate':>6} {'first audio p50':>16} {'p95':>7} {'RTF p50':>8}")
    for name, figures in report["voices"].items():
        first = figures["first_audio_ms"]
        print(f"{name:14} {figures['sample_rate_hz']:>6} {first['p50']:>13} ms "
              f"{first['p95']:>7} {figures['rtf']['p50']:>8}")
    if not args.skip_asr:
        report["asr"] = asr = bench_asr(lines)
        print(f"\n{'whisper (en set)':18} {'WER':>6} {'ASR p50':>9} {'p95':>7}")
        for name, figures in asr["english"].items():
            print(f"{name:18} {figures['wer']:>6.1%} {figures['asr_ms']['p50']:>6} ms "
                  f"{figures['asr_ms']['p95']:>7}")
        verdict = ("keep tiny.en for English NPCs" if asr["english_npcs_keep_tiny_en"]
                   else "base could serve every NPC")
        print(f"base costs {asr['base_extra_p50_ms']} ms more at p50: {verdict}")
        for language, runs in asr["other_languages"].items():
            figures = ", ".join(f"{label} WER {runs[label]['wer']:.1%} "
                                f"(p50 {runs[label]['asr_ms']['p50']} ms)"
                                for label in ("forced_greedy", "forced_beam5",
                                              "detected_greedy"))
            print(f"{language} ({runs['speech']}): {figures}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
