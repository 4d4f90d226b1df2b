"""Voice-input benchmark: how much TTFA the speculative start saves.

Runs the same spoken player lines through two daemons, speculative start on and off,
in open-mic mode at real-time pace, and reports TTFA measured from the end of speech:
from the moment the client sent the block holding the last voiced sample (the
daemon's `speech_ended.at_ms`) to the first reply block. The player's lines are
spoken by Piper (deterministic), as a microphone would deliver them, at 16 kHz.

    python -m daemon.bench.voice --lines 10 --json bench-results/voice.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from bridge_protocol.client import BridgeClient
from bridge_protocol.messages import Done, SpeechEnded, Transcript
from daemon.bench.stats import machine_description, percentiles
from daemon.bench.ttfa import load_corpus
from daemon.config import VoiceConfig
from daemon.config_file import default_config_text
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
        "daemon_first_block_ms": timings.first_block_ms if timings else None,
        "speculative": timings.speculative if timings else None,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m daemon.bench.voice`."""
    parser = argparse.ArgumentParser(prog="npc-voice bench voice",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10, help="utterances per mode")
    parser.add_argument("--json", type=Path, default=Path("bench-results/voice.json"))
    args = parser.parse_args(argv)
    corpus = load_corpus()[: args.lines]
    utterances = list(zip([npc for npc, _ in corpus], speak_lines([line for _, line in corpus]),
                          strict=True))
    report: dict = {"machine": machine_description(),
                    "command": " ".join(["python -m daemon.bench.voice", *(argv or sys.argv[1:])]),
                    "modes": {}}
    for mode, speculative in (("speculative", "true"), ("endpoint_only", "false")):
        config_path = args.json.parent / f"voice-{mode}.toml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(default_config_text().replace(
            "speculative = true", f"speculative = {speculative}"))
        with DaemonProcess(config_path) as daemon:
            records = asyncio.run(run_mode(daemon.address, utterances))
        ok = [r for r in records if r["recognised"] and r["ttfa_from_end_of_speech_ms"]]
        report["modes"][mode] = {
            "ttfa_from_end_of_speech_ms": percentiles([r["ttfa_from_end_of_speech_ms"]
                                                       for r in ok]),
            "endpoint_ms": percentiles([r["endpoint_ms"] for r in ok if r["endpoint_ms"]]),
            "asr_ms": percentiles([r["asr_ms"] for r in ok if r["asr_ms"]]),
            "speculative_turns": sum(1 for r in ok if r["speculative"]),
            "recognised": len(ok),
            "utterances": len(records),
            "records": records,
        }
    spec = report["modes"]["speculative"]["ttfa_from_end_of_speech_ms"]
    base = report["modes"]["endpoint_only"]["ttfa_from_end_of_speech_ms"]
    print(f"{'mode':16} {'TTFA p50':>9} {'p95':>8}  (ms from end of speech)")
    for mode, stats in (("speculative", spec), ("endpoint only", base)):
        print(f"{mode:16} {stats['p50']:>9} {stats['p95']:>8}")
    if spec["p50"] and base["p50"]:
        report["saved_p50_ms"] = round(base["p50"] - spec["p50"], 1)
        print(f"speculative start saves {report['saved_p50_ms']} ms at p50")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
