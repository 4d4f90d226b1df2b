"""`npc-voice say` and `npc-voice demo`: one player line, subtitles, timings, a WAV.

`say --timing reply.json` also asks for word and viseme timing and writes it beside the
WAV (`timing_report`), for cutscenes baked offline and for checking.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from bridge_protocol.client import BridgeClient, TurnEvent, TurnResult
from bridge_protocol.messages import Cancelled, Done, Error, Subtitle
from daemon.metrics import TURN_LOGGER


@dataclass(frozen=True)
class SayOptions:
    """Options of one `say` run (see `npc-voice say --help`)."""

    address: str
    npc_id: str
    text: str
    out_path: Path | None = None
    prebuffer_ms: int | None = None
    profile: str | None = None
    token: str = ""
    sample_rate_hz: int | None = None
    timeout_s: float = 60.0
    timing_path: Path | None = None


def write_wav(path: Path, pcm: bytes, sample_rate_hz: int) -> None:
    """Write s16le mono PCM as a WAV file (stdlib `wave`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz or 22050)
        wav.writeframes(pcm)


def timing_report(result: TurnResult) -> dict[str, object]:
    """The turn's word and viseme timing as JSON-ready data (what `--timing` writes).

    Returns:
      {"sample_rate_hz", "sample_count", "chunks": [{"chunk_index", "text"}],
      "words": [{"text", "start_sample", "end_sample", "chunk_index"}],
      "visemes": [{"viseme", "start_sample", "weight"}], "mouth": [{"start_sample",
      "open"}]}: offsets count samples of the reply's audio (the WAV) from its start;
      "mouth" is filled instead of words and visemes for voices without alignment.
    """
    words: list[dict[str, object]] = []
    visemes: list[dict[str, object]] = []
    mouth: list[dict[str, object]] = []
    for message in result.timing:
        words.extend({"text": w.text, "start_sample": w.start_sample,
                      "end_sample": w.end_sample, "chunk_index": message.chunk_index}
                     for w in message.words)
        visemes.extend({"viseme": v.viseme, "start_sample": v.start_sample, "weight": v.weight}
                       for v in message.visemes)
        mouth.extend({"start_sample": m.start_sample, "open": m.open} for m in message.mouth)
    return {"sample_rate_hz": result.sample_rate_hz, "sample_count": len(result.pcm) // 2,
            "chunks": [{"chunk_index": i, "text": t} for i, t in enumerate(result.subtitles)],
            "words": words, "visemes": visemes, "mouth": mouth}


def _print_subtitle(event: TurnEvent, _result: TurnResult) -> None:
    if isinstance(event, Subtitle):
        print(f"  NPC: {event.text}", flush=True)


def format_report(result: TurnResult, prebuffer_ms: int) -> str:
    """Human-readable timings of a finished turn."""
    lines = []
    ttfa = result.ttfa_ms
    lines.append(f"  TTFA (client, incl. IPC)   {ttfa:8.1f} ms" if ttfa is not None
                 else "  TTFA                       no audio")
    if ttfa is not None:
        lines.append(f"  time to playback           {ttfa + prebuffer_ms:8.1f} ms"
                     f"  (pre-buffer {prebuffer_ms} ms)")
    if result.last_block_ms is not None:
        lines.append(f"  time to last block         {result.last_block_ms:8.1f} ms")
    lines.append(f"  audio                      {result.audio_s:8.2f} s"
                 f"  ({len(result.block_arrivals)} blocks, {result.sample_rate_hz} Hz)")
    if isinstance(result.terminal, Done):
        t = result.terminal.timings
        if t.rtf is not None:
            lines.append(f"  TTS RTF                    {t.rtf:8.3f}")
        lines.append(f"  underruns                  {result.underruns(prebuffer_ms):8d}"
                     f"  (at {prebuffer_ms} ms pre-buffer)")
        stages = [("LLM first token", t.llm_first_token_ms), ("first chunk", t.first_chunk_ms),
                  ("TTS first audio", t.tts_first_audio_ms), ("first block sent", t.first_block_ms)]
        lines.append("  daemon stages: " + ", ".join(
            f"{name} {value:.0f} ms" for name, value in stages if value is not None))
        lines.append(f"  LLM: {t.prompt_tokens} prompt tokens ({t.prefill_tokens} prefilled), "
                     f"{t.reply_tokens} reply tokens")
    return "\n".join(lines)


async def say(options: SayOptions) -> int:
    """Run one turn; return the process exit code (0 = done, 1 = error/timeout)."""
    client = BridgeClient(options.address, client_name="npc-voice say", token=options.token,
                          sample_rate_hz=options.sample_rate_hz,
                          timing=options.timing_path is not None)
    try:
        welcome = await client.connect(timeout_s=options.timeout_s)
    except (TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        npc = next((n for n in welcome.npcs if n.npc_id == options.npc_id), None)
        prebuffer_ms = options.prebuffer_ms
        if prebuffer_ms is None:
            prebuffer_ms = npc.prebuffer_ms if npc is not None else 240
        name = npc.display_name if npc is not None else options.npc_id
        print(f"Player -> {name}: {options.text}", flush=True)
        try:
            result = await client.run_turn(options.npc_id, options.text, options.profile,
                                           options.timeout_s, on_event=_print_subtitle)
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    finally:
        await client.close()
    if options.out_path is not None and result.pcm:
        write_wav(options.out_path, bytes(result.pcm), result.sample_rate_hz)
        print(f"  wrote {options.out_path}")
    if options.timing_path is not None:
        options.timing_path.parent.mkdir(parents=True, exist_ok=True)
        options.timing_path.write_text(json.dumps(timing_report(result), indent=1) + "\n",
                                       encoding="utf-8")
        print(f"  wrote {options.timing_path} ({len(result.timing)} timing messages)")
    print(format_report(result, prebuffer_ms))
    terminal = result.terminal
    if isinstance(terminal, Error):
        print(f"error: {terminal.code}: {terminal.message}", file=sys.stderr)
        return 1
    if isinstance(terminal, Cancelled):
        print(f"turn cancelled ({terminal.reason})", file=sys.stderr)
        return 1
    return 0


def say_command(args: argparse.Namespace) -> int:
    """`npc-voice say`: one turn against a running daemon; returns the exit code."""
    options = SayOptions(
        address=f"tcp://{args.host}:{args.port}", npc_id=args.npc, text=args.text,
        out_path=args.out, prebuffer_ms=args.prebuffer_ms, profile=args.profile,
        token=args.token, sample_rate_hz=args.sample_rate_hz, timeout_s=args.timeout_s,
        timing_path=args.timing)
    return asyncio.run(say(options))


def demo_command(args: argparse.Namespace) -> int:
    """`npc-voice demo`: start a daemon, run one turn, stop it; returns the exit code."""
    from daemon.launcher import DaemonProcess  # noqa: PLC0415

    print("starting the daemon on the embedded default models (SmolLM2-135M + Piper joe)...")
    try:
        daemon = DaemonProcess(args.config).start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        ready = [line for line in daemon.log_text().splitlines() if "ready on" in line]
        print(ready[-1] if ready else "daemon ready")
        options = SayOptions(address=daemon.address, npc_id=args.npc, text=args.text,
                             out_path=args.out)
        code = asyncio.run(say(options))
    finally:
        daemon.stop()
    turn_lines = [line for line in daemon.log_text().splitlines() if TURN_LOGGER in line]
    if turn_lines:
        print("daemon log:", turn_lines[-1].split(f"{TURN_LOGGER}: ", 1)[-1])
    return code
