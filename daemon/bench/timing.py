"""`npc-voice bench timing`: what word and viseme timing costs, and how well it holds.

Two measurements:

1. Cost on TTFA. One daemon (packaged config unless `--config`), two clients, one
   asking for timing in `hello` and one not; each line of the corpus goes to both, in
   alternating order, to the NPCs with Piper voices. Client-side TTFA p50/p95 of each,
   same run. (Goal: timing adds at most 5 ms at p50.)
2. Drift over a ~25 s reply. The real turn pipeline (chunker, Piper streaming inside each
   chunk, resampler, timing offsets; daemon.pipeline.turn) speaks a fixed reply (the LLM
   is replaced by the reply's text: it has no part in timing), at the voice's rate and
   at 48 kHz. The viseme track is then compared with the audio it describes:
     * lag: over 2 s windows (1 s apart), the shift of the audio's loudness envelope
       (5 ms frames, -60..-10 dBFS) that best correlates with a loudness predicted from
       the visemes (vowels loud, nasals and r less, fricatives less, stops and sil
       quiet), searched within +-150 ms; drift would show as a lag growing along the
       reply (goal: under 40 ms anywhere);
     * word onsets after pauses: for each word after a pause of >= 80 ms that starts
       with a vowel, nasal, r or sibilant, the first loud frame (> -45 dBFS) in the
       audio vs the word's `start_sample`.

Prints both and writes JSON (`--out`, default bench-results/timing.json).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bridge_protocol.messages import AudioBlock, Subtitle, Timing
from daemon.bench.stats import machine_description, machine_load, percentiles, write_report
from daemon.config import Tiers, VoiceConfig
from daemon.engines.thread import EngineThread
from daemon.llm.base import ChatMessage, ReplyDelta, ReplyItem, ReplyStarted, ReplyStats
from daemon.llm.conversation import Conversation
from daemon.models import bundled_piper_voice
from daemon.pipeline.turn import Turn, TurnSpec
from daemon.priorities import NORMAL
from daemon.profiles import BUILTIN_PROFILES
from daemon.tts.base import Voice
from daemon.tts.piper import PiperEngine

REPLY = (
    "Long ago, before the river changed its course, this village was a busy market town. "
    "Merchants came from the coast with salt and silver, and the smiths worked day and "
    "night to shoe their horses. Then the floods came, the bridge fell, and the traders "
    "found another road. Now only a few of us remain, mending tools for farmers and "
    "telling stories to travellers like you, who still wander in asking about the old days."
)
"""The ~25 s reply of the drift measurement."""

_LOUDNESS = {"sil": 0.0, "PP": 0.25, "DD": 0.25, "kk": 0.25, "FF": 0.45, "TH": 0.45,
             "SS": 0.45, "CH": 0.45, "nn": 0.7, "RR": 0.7, "aa": 1.0, "E": 1.0, "ih": 1.0,
             "oh": 1.0, "ou": 1.0}
_ONSET_VISEMES = {"aa", "E", "ih", "oh", "ou", "nn", "RR", "SS", "CH"}
FRAME_MS = 5
MAX_LAG_MS = 150


class ScriptedReply:
    """An LLM stage that writes a fixed reply, word by word (for the drift measurement).

    Args:
      text: The reply.
    """

    def __init__(self, text: str) -> None:
        self._text = text

    async def reply(self, key: str, messages: list[ChatMessage], stop: threading.Event,
                    persona_key: str | None = None, tiers: Tiers = "fast",
                    priority: int = NORMAL, language: str = "en"
                    ) -> AsyncGenerator[ReplyItem, None]:
        """Yield the reply's words as deltas (see `LlmStage.reply`)."""
        yield ReplyStarted()
        words = self._text.split(" ")
        for index, word in enumerate(words):
            yield ReplyDelta(word if index == 0 else f" {word}")
            await asyncio.sleep(0)
        yield ReplyStats(prompt_tokens=0, prefill_tokens=0, reply_tokens=len(words),
                         finish_reason="stop")

    async def prefill(self, personas: dict[str, list[ChatMessage]],
                      tiers: dict[str, Tiers] | None = None) -> None:
        """Nothing to prefill."""

    async def after_turn(self, key: str, messages: list[ChatMessage], tiers: Tiers,
                         history_cut: bool) -> None:
        """Nothing is cached."""

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None, tiers: Tiers) -> None:
        """Nothing to prefill."""

    def forget(self, keys: list[str]) -> None:
        """Nothing is cached."""

    def close(self) -> None:
        """Nothing to close."""


async def speak_reply(voice: Voice, out_rate_hz: int) -> tuple[list[Timing], np.ndarray]:
    """Run the turn pipeline on `REPLY`; return its timing messages and its audio (int16)."""
    timing: list[Timing] = []
    pcm: list[bytes] = []

    def send(message: AudioBlock | Subtitle | Timing, data: bytes | None) -> None:
        if isinstance(message, Timing):
            timing.append(message)
        elif data is not None:
            pcm.append(data)

    spec = TurnSpec(turn_id=1, npc_id="bench", utterance="Tell me about the village.",
                    profile_name="fast", profile=BUILTIN_PROFILES["fast"], voice=voice,
                    conversation=Conversation("You are a villager.", 4),
                    conversation_key="bench", out_rate_hz=out_rate_hz,
                    received_at=0.0, timing=True)
    await Turn(spec, ScriptedReply(REPLY), send).run()
    return timing, np.frombuffer(b"".join(pcm), dtype="<i2")


def _levels_db(audio: np.ndarray, frame: int) -> np.ndarray:
    frames = audio[: audio.size // frame * frame].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1.0) / 32768.0)


def _predicted(timing: list[Timing], frames: int, frame: int) -> np.ndarray:
    marks = [(v.start_sample, _LOUDNESS[v.viseme]) for t in timing for v in t.visemes]
    starts = np.array([m[0] for m in marks])
    values = np.array([m[1] for m in marks])
    centres = np.arange(frames) * frame + frame // 2
    index = np.searchsorted(starts, centres, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], 0.0)


def drift(timing: list[Timing], audio: np.ndarray, rate_hz: int) -> dict[str, Any]:
    """Lag of the audio behind the viseme track per 2 s window, and word-onset errors."""
    frame = rate_hz * FRAME_MS // 1000
    levels = _levels_db(audio, frame)
    actual = np.clip((levels + 60.0) / 50.0, 0.0, 1.0)
    predicted = _predicted(timing, actual.size, frame)
    max_lag = MAX_LAG_MS // FRAME_MS
    window, hop = 2000 // FRAME_MS, 1000 // FRAME_MS
    lags: list[dict[str, Any]] = []
    for start in range(max_lag, actual.size - window - max_lag, hop):
        target = predicted[start:start + window]
        if target.std() == 0:
            continue
        scores = [float(np.corrcoef(target, actual[start + lag:start + lag + window])[0, 1])
                  for lag in range(-max_lag, max_lag + 1)]
        best = int(np.argmax(scores))
        lags.append({"at_s": round(start * FRAME_MS / 1000.0, 1),
                     "lag_ms": (best - max_lag) * FRAME_MS,
                     "correlation": round(scores[best], 3)})
    onsets: list[dict[str, Any]] = []
    words = [w for t in timing for w in t.words]
    marks = [v for t in timing for v in t.visemes]
    for previous, word in zip(words, words[1:], strict=False):
        pause = word.start_sample - previous.end_sample
        first = next((v.viseme for v in marks if v.start_sample >= word.start_sample), "sil")
        if pause < rate_hz * 80 // 1000 or first not in _ONSET_VISEMES:
            continue
        low = (previous.end_sample + pause // 2) // frame
        high = min(levels.size, (word.start_sample + rate_hz * MAX_LAG_MS // 1000) // frame)
        loud = np.flatnonzero(levels[low:high] > -45.0)
        if loud.size:
            observed = (low + int(loud[0])) * frame
            onsets.append({"word": word.text, "at_s": round(word.start_sample / rate_hz, 2),
                           "error_ms": round((observed - word.start_sample) * 1000 / rate_hz,
                                             1)})
    lag_values = [abs(row["lag_ms"]) for row in lags]
    onset_errors = [abs(row["error_ms"]) for row in onsets]
    return {"audio_s": round(audio.size / rate_hz, 2), "windows": lags,
            "max_abs_lag_ms": max(lag_values) if lag_values else None,
            "mean_lag_ms": round(float(np.mean([r["lag_ms"] for r in lags])), 1)
            if lags else None,
            "word_onsets_after_pauses": onsets,
            "max_abs_onset_error_ms": max(onset_errors) if onset_errors else None,
            "last_timing_end_vs_audio_samples": (timing[-1].end_sample - audio.size)
            if timing else None}


async def measure_drift(threads: int) -> dict[str, Any]:
    """`drift` of the pipeline's reply at the voice's rate and at 48 kHz."""
    model, config = bundled_piper_voice()
    thread: EngineThread = EngineThread("piper-bench")
    try:
        engine = await thread.call(PiperEngine, model, config, threads)
        voice = Voice(engine, thread, VoiceConfig())
        result = {}
        for rate in (engine.sample_rate_hz, 48000):
            timing, audio = await speak_reply(voice, rate)
            result[f"{rate}_hz"] = drift(timing, audio, rate)
        return result
    finally:
        thread.shutdown()


async def measure_ttfa_cost(address: str, turns: int, warmup: int) -> dict[str, Any]:
    """Client TTFA with and without timing, same daemon, alternating per line."""
    from bridge_protocol.client import BridgeClient  # noqa: PLC0415
    from daemon.bench.ttfa import load_corpus  # noqa: PLC0415

    ttfa: dict[str, list[float]] = {"timing": [], "no_timing": []}
    async with BridgeClient(address, client_name="bench timing", timing=True) as timed, \
            BridgeClient(address, client_name="bench no timing") as plain:
        assert timed.welcome is not None
        piper_npcs = {n.npc_id for n in timed.welcome.npcs if n.lip_sync == "visemes"}
        lines = [(npc, line) for npc, line in load_corpus() if npc in piper_npcs]
        for index in range(warmup + turns):
            npc_id, line = lines[index % len(lines)]
            clients = [("timing", timed), ("no_timing", plain)]
            for name, client in clients if index % 2 == 0 else clients[::-1]:
                result = await client.run_turn(npc_id, line)
                if index >= warmup and result.ttfa_ms is not None:
                    ttfa[name].append(result.ttfa_ms)
                if name == "timing" and index >= warmup:
                    assert result.timing, "no timing messages arrived"
    timed_p50 = percentiles(ttfa["timing"])["p50"] or 0.0
    plain_p50 = percentiles(ttfa["no_timing"])["p50"] or 0.0
    return {"timing": percentiles(ttfa["timing"]), "no_timing": percentiles(ttfa["no_timing"]),
            "p50_difference_ms": round(timed_p50 - plain_p50, 1), "turns_each": turns}


def main(argv: list[str] | None = None) -> int:
    """`npc-voice bench timing`; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="npc-voice bench timing",
        description="Cost of word and viseme timing on TTFA (two clients, same daemon, same "
                    "run) and drift of the viseme track over a ~25 s reply.")
    parser.add_argument("--turns", type=int, default=20,
                        help="recorded turns per client (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="unrecorded turns first (default: %(default)s)")
    parser.add_argument("--config", type=Path, help="config of the daemon started here")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX threads of the drift run's voice (default: 1)")
    parser.add_argument("--skip-ttfa", action="store_true", help="drift only")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR",
                        help="where timing.json goes (default: %(default)s)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "command": " ".join(["npc-voice", "bench", "timing", *(argv or sys.argv[3:])]),
        "machine": machine_description(), "machine_load_at_start": machine_load(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print("drift...", file=sys.stderr, flush=True)
    report["drift"] = asyncio.run(measure_drift(args.threads))
    if not args.skip_ttfa:
        from daemon.launcher import DaemonProcess  # noqa: PLC0415

        print("TTFA with and without timing...", file=sys.stderr, flush=True)
        daemon = DaemonProcess(args.config).start()
        try:
            report["ttfa_ms"] = asyncio.run(
                measure_ttfa_cost(daemon.address, args.turns, args.warmup))
        finally:
            daemon.stop()
    report["machine_load_at_end"] = machine_load()
    print(f"machine: {report['machine']}")
    for rate, figures in report["drift"].items():
        lags = [w["lag_ms"] for w in figures["windows"]]
        print(f"drift at {rate} over {figures['audio_s']} s: lag per 2 s window {lags} ms "
              f"(max |lag| {figures['max_abs_lag_ms']} ms); word onsets after pauses: max "
              f"|error| {figures['max_abs_onset_error_ms']} ms over "
              f"{len(figures['word_onsets_after_pauses'])} words; timing end - audio end "
              f"{figures['last_timing_end_vs_audio_samples']} samples")
    if "ttfa_ms" in report:
        ttfa = report["ttfa_ms"]
        print(f"TTFA p50/p95 ms, {ttfa['turns_each']} turns each: with timing "
              f"{ttfa['timing']['p50']}/{ttfa['timing']['p95']}, without "
              f"{ttfa['no_timing']['p50']}/{ttfa['no_timing']['p95']} "
              f"(p50 difference {ttfa['p50_difference_ms']} ms)")
    write_report(args.out / "timing.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
