"""Voice-input benchmark: end of speech -> first audio, and what each lever saves.

Runs the same spoken player lines through one daemon per mode, in open-mic mode at
real-time pace, and reports TTFA measured from the end of speech, the stages (what
ended the utterance and when, ASR time) and the word error rate of the transcripts:
  * smart_turn: the packaged config (speculative start; Smart Turn judges each pause);
  * silence: the same without Smart Turn (the utterance ends after `end_silence_ms`);
  * endpoint_only: neither (ASR starts at the endpoint).
TTFA counts from the moment the client sent the block holding the last voiced sample (the
daemon's `speech_ended.at_ms`) to the first reply block. The player's lines are
spoken by Piper (deterministic), as a microphone would deliver them, at 16 kHz.

    npc-voice bench voice --lines 12 --json bench-results/voice.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from bridge_protocol.client import BridgeClient
from bridge_protocol.messages import Done, SpeechEnded, Transcript
from daemon.bench.configs import Overrides, parse_setting, write_config_with
from daemon.bench.stats import (
    machine_description,
    machine_load,
    percentiles,
    word_error_rate,
    write_report,
)
from daemon.bench.ttfa import load_corpus
from daemon.config import VoiceConfig
from daemon.launcher import DaemonProcess
from daemon.models import resolve_piper_voice
from daemon.tts.piper import PiperEngine

MIC_RATE_HZ = 16000
BLOCK_SAMPLES = 1600  # 100 ms, as the Godot addon sends
TRAILING_SILENCE_MS = 1500


def speak_lines(lines: list[str]) -> list[np.ndarray]:
    """Each line spoken by Piper without noise, int16 mono at 16 kHz."""
    engine = PiperEngine(*resolve_piper_voice("joe"))
    voice = VoiceConfig(noise_scale=0.0, noise_w_scale=0.0)
    spoken = []
    for line in lines:
        pieces: list[np.ndarray] = []
        engine.synthesize(line, voice, pieces.append, threading.Event())
        spoken.append(soxr.resample(np.concatenate(pieces), engine.sample_rate_hz, MIC_RATE_HZ))
    return spoken


async def one_utterance(client: BridgeClient, npc_id: str, audio: np.ndarray) -> dict:
    """Stream one utterance in real time; return its end-of-speech TTFA and timings."""
    padded = np.concatenate((np.zeros(MIC_RATE_HZ // 5, np.int16), audio,
                             np.zeros(MIC_RATE_HZ * TRAILING_SILENCE_MS // 1000, np.int16)))
    send_times: list[float] = []
    await client.listen_start(npc_id, mode="open_mic")
    started = time.perf_counter()
    for index, start in enumerate(range(0, padded.size, BLOCK_SAMPLES)):
        # Pace on the clock, not on sleeps, so the stream does not drift.
        await asyncio.sleep(max(0.0, started + index * BLOCK_SAMPLES / MIC_RATE_HZ
                                - time.perf_counter()))
        await client.send_mic(padded[start : start + BLOCK_SAMPLES].astype("<i2").tobytes())
        send_times.append(time.perf_counter())
    await client.listen_stop()
    ended: SpeechEnded | None = None
    transcript: Transcript | None = None
    while transcript is None:
        event = await asyncio.wait_for(client.speech_events.get(), 30)
        if isinstance(event, SpeechEnded):
            ended = event
            if event.turn_id is None:
                return {"recognised": False}
        elif isinstance(event, Transcript):
            transcript = event
    assert ended is not None
    end_block = min(int(ended.at_ms * MIC_RATE_HZ / 1000) // BLOCK_SAMPLES, len(send_times) - 1)
    result = await client.collect(transcript.turn_id, send_times[end_block])
    done = result.terminal if isinstance(result.terminal, Done) else None
    timings = done.timings if done else None
    return {
        "recognised": True,
        "transcript": transcript.text,
        "ttfa_from_end_of_speech_ms": result.ttfa_ms,
        "endpoint_ms": timings.endpoint_ms if timings else None,
        "asr_ms": timings.asr_ms if timings else None,
        "endpoint_by": timings.endpoint_by if timings else None,
        "turn_complete": timings.turn_complete if timings else None,
        "llm_first_token_ms": timings.llm_first_token_ms if timings else None,
        "tts_first_audio_ms": timings.tts_first_audio_ms if timings else None,
        "daemon_first_block_ms": timings.first_block_ms if timings else None,
        "speculative": timings.speculative if timings else None,
        "first_chunk_ms": timings.first_chunk_ms if timings else None,
        "first_subtitle": result.subtitles[0] if result.subtitles else None,  # the 1st chunk
        "reply": done.reply_text if done else None,
        "outcome": type(result.terminal).__name__.lower(),
    }


async def run_mode(address: str, utterances: list[tuple[str, np.ndarray]]) -> list[dict]:
    """All utterances through one daemon, one after the other."""
    records = []
    async with BridgeClient(address, client_name="npc-voice bench-voice") as client:
        for npc_id, audio in utterances:
            records.append(await one_utterance(client, npc_id, audio))
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return records


MODES: dict[str, Overrides] = {
    "smart_turn": {},
    "silence": {"asr": {"smart_turn": False}},
    "endpoint_only": {"asr": {"smart_turn": False, "speculative": False}},
}
"""Each mode's changes to the packaged config."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: `npc-voice bench voice`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench voice",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=12, help="utterances per mode")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated, from " + ",".join(MODES))
    parser.add_argument("--asr-threads", type=int, default=None,
                        help="Whisper threads ([asr] cpu_threads; default: the config's)")
    parser.add_argument("--encoder-window-s", type=float, default=None,
                        help="Whisper's encoder window ([asr] encoder_window_s, 10..30; "
                             "default: the config's)")
    parser.add_argument("--partial-transcript-ms", type=int, default=None,
                        help="[asr] partial_transcript_ms (0 = no partial transcripts; "
                             "default: the config's)")
    parser.add_argument("--llm-model", default=None,
                        help="[llm] model (e.g. smollm2:q4_1; default: the config's)")
    parser.add_argument("--llm-burst-threads", type=int, default=None,
                        help="[llm] burst_threads (0 = off; default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any other config value, as TOML (e.g. asr.pause_ms=120); "
                             "repeatable")
    parser.add_argument("--json", type=Path, default=Path("bench-results/voice.json"))
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(text) for text in args.set]
    except ValueError as exc:
        parser.error(str(exc))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}")
    corpus = load_corpus()[: args.lines]
    lines = [line for _, line in corpus]
    utterances = list(zip([npc for npc, _ in corpus], speak_lines(lines), strict=True))
    report: dict = {"machine": machine_description(), "machine_load_at_start": machine_load(),
                    "command": " ".join(["npc-voice bench voice", *(argv or sys.argv[2:])]),
                    "asr_threads": args.asr_threads,
                    "encoder_window_s": args.encoder_window_s,
                    "partial_transcript_ms": args.partial_transcript_ms,
                    "llm_model": args.llm_model,
                    "llm_burst_threads": args.llm_burst_threads, "modes": {}}
    for mode in modes:
        overrides: Overrides = {section: dict(values) for section, values in MODES[mode].items()}
        if args.asr_threads:
            overrides.setdefault("asr", {})["cpu_threads"] = args.asr_threads
        if args.encoder_window_s:
            overrides.setdefault("asr", {})["encoder_window_s"] = args.encoder_window_s
        if args.partial_transcript_ms is not None:
            overrides.setdefault("asr", {})["partial_transcript_ms"] = args.partial_transcript_ms
        if args.llm_model is not None:
            overrides.setdefault("llm", {})["model"] = args.llm_model
        if args.llm_burst_threads is not None:
            overrides.setdefault("llm", {})["burst_threads"] = args.llm_burst_threads
        for section, key, value in settings:
            overrides.setdefault(section, {})[key] = value
        # The mode's config lives only as long as its daemon; the JSON records the overrides.
        with tempfile.TemporaryDirectory(prefix="npc-voice-bench-") as scratch:
            config_path = write_config_with(Path(scratch) / f"voice-{mode}.toml", overrides)
            with DaemonProcess(config_path) as daemon:
                records = asyncio.run(run_mode(daemon.address, utterances))
                # Work begun on a silence and dropped when the player spoke on: the
                # CPU an earlier speculative start costs (daemon.server.mic logs each).
                dropped = daemon.log_text().count("speculative start dropped")
        ok = [r for r in records if r["recognised"] and r["ttfa_from_end_of_speech_ms"]]
        report["modes"][mode] = {
            "ttfa_from_end_of_speech_ms": percentiles([r["ttfa_from_end_of_speech_ms"]
                                                       for r in ok]),
            "endpoint_ms": percentiles([r["endpoint_ms"] for r in ok if r["endpoint_ms"]]),
            "asr_ms": percentiles([r["asr_ms"] for r in ok if r["asr_ms"]]),
            "config_overrides": overrides,
            "ended_by": {cause: sum(1 for r in ok if r["endpoint_by"] == cause)
                         for cause in sorted({str(r["endpoint_by"]) for r in ok})},
            "speculative_turns": sum(1 for r in ok if r["speculative"]),
            "speculative_starts_dropped": dropped,
            "wer": word_error_rate(lines, [r.get("transcript", "") for r in records]),
            "recognised": len(ok),
            "utterances": len(records),
            "records": records,
        }
    print(f"{'mode':14} {'TTFA p50':>9} {'p95':>8} {'endpoint p50':>13} {'ASR p50':>8} "
          f"{'WER':>6}  (ms from end of speech)")
    for mode, entry in report["modes"].items():
        ttfa = entry["ttfa_from_end_of_speech_ms"]
        print(f"{mode:14} {ttfa['p50']!s:>9} {ttfa['p95']!s:>8} "
              f"{entry['endpoint_ms']['p50']!s:>13} {entry['asr_ms']['p50']!s:>8} "
              f"{entry['wer']!s:>6}  ended by {entry['ended_by']}, "
              f"{entry['speculative_starts_dropped']} speculative starts dropped")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
