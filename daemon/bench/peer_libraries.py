"""A peer library users pick for this job, run beside us: RealtimeTTS, in-process.

RealtimeTTS (PyPI `realtimetts`, the `peers` extra, never a daemon dependency) is fed
the same llama.cpp token stream as the naive mode (same model, personas, sampling,
history) and speaks with its own `PiperEngine` on the same Piper voice file, with the
voice's speed and noise settings written into a copy of its .onnx.json. It runs
offline with `tokenizer="rule-based"` (its default NLTK splitter downloads data at
run time) and everything else at its defaults. TTFA is utterance -> its first audio
chunk (`play(muted=True, on_audio_chunk=...)`).

Its PiperEngine runs the `piper` command-line program once per sentence, so every
sentence pays the voice's load time: that is the library as users get it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bridge_protocol.client import TurnResult
from bridge_protocol.messages import TurnTimings
from daemon.bench.naive import Conversations, InProcessModels, TurnClock
from daemon.llm.base import ReplyDelta, ReplyEvent
from daemon.models import resolve_piper_voice
from daemon.pipeline.blocks import samples_per_block
from daemon.pipeline.text import speakable

_END = object()


def piper_program() -> str | None:
    """Path of the `piper` command-line program (piper-tts) RealtimeTTS runs, or None."""
    beside_python = Path(sys.executable).with_name("piper")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("piper")


def realtimetts_unavailable() -> str | None:
    """Why the RealtimeTTS mode cannot run here (one line), or None if it can."""
    missing = [name for name in ("RealtimeTTS", "pyaudio")
               if importlib.util.find_spec(name) is None]
    if missing:
        return (f"realtimetts mode skipped: {' and '.join(missing)} not installed "
                "(pip install -e '.[peers]'; PyAudio needs Debian's portaudio19-dev)")
    if piper_program() is None:
        return "realtimetts mode skipped: the `piper` program (piper-tts) is not on PATH"
    return None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment.

    PortAudio probes ALSA and JACK when PyAudio starts and prints pages of warnings
    from C.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class RealtimeTtsRunner:
    """One `TextToAudioStream` per configured voice, muted, reused across turns.

    Args:
      models: The in-process LLM and voices (their settings are copied).
      work_dir: Where the per-voice .onnx.json copies are written.
    """

    def __init__(self, models: InProcessModels, work_dir: Path) -> None:
        with _native_stderr_silenced():
            from RealtimeTTS import PiperEngine, PiperVoice, TextToAudioStream  # noqa: PLC0415

            self._models = models
            self._streams: dict[str, Any] = {}
            self.sample_rates_hz: dict[str, int] = {}
            program = piper_program()
            for npc in models.config.npcs.values():
                if npc.voice in self._streams:
                    continue
                # RealtimeTTS has no hibari engine: a hibari NPC speaks with the
                # bundled Piper voice there (its figures say which voice was used).
                voice = models.config.voices[npc.voice]
                model_path, json_path = resolve_piper_voice(
                    voice.model if voice.engine == "piper" else "joe")
                voice_json = work_dir / f"{npc.voice}.onnx.json"
                self.sample_rates_hz[npc.voice] = self._write_voice_json(
                    json_path, voice_json, npc.voice)
                engine = PiperEngine(piper_path=program, voice=PiperVoice(
                    model_file=str(model_path), config_file=str(voice_json)))
                self._streams[npc.voice] = TextToAudioStream(
                    engine, tokenizer="rule-based", muted=True)

    def _write_voice_json(self, source: Path, target: Path, voice_name: str) -> int:
        """Copy a voice's .onnx.json with the configured speed/noise; return its rate."""
        data = json.loads(source.read_text("utf-8"))
        settings = self._models.config.voices[voice_name]
        inference = data.setdefault("inference", {})
        for ours, theirs in (("length_scale", "length_scale"), ("noise_scale", "noise_scale"),
                             ("noise_w_scale", "noise_w")):
            value = getattr(settings, ours)
            if value is not None:
                inference[theirs] = value
        target.write_text(json.dumps(data), "utf-8")
        return int(data["audio"]["sample_rate"])

    def turn(self, conversations: Conversations, npc_id: str,
             line: str) -> tuple[TurnResult, TurnTimings, str]:
        """One turn: LLM tokens -> RealtimeTTS; returns (chunks as blocks, timings, reply)."""
        voice_name = self._models.config.npcs[npc_id].voice
        stream = self._streams[voice_name]
        rate_hz = self.sample_rates_hz[voice_name]
        block_samples = samples_per_block(rate_hz, self._models.profile_of(npc_id).block_ms)
        messages = conversations.messages_for(npc_id, line)
        clock = TurnClock()
        result = TurnResult(turn_id=0, sent_at=clock.started, sample_rate_hz=rate_hz)
        tokens: queue.Queue[object] = queue.Queue()

        def on_reply(item: ReplyEvent) -> None:
            clock.on_reply(item)
            if isinstance(item, ReplyDelta):
                tokens.put(speakable(item.text))

        def token_stream() -> Iterator[str]:
            while (text := tokens.get()) is not _END:
                yield text  # type: ignore[misc]

        synth_started: list[float] = []

        def before_sentence(_sentence: str) -> None:
            synth_started.append(time.perf_counter())
            if clock.timings.first_chunk_ms is None:
                clock.timings.first_chunk_ms = clock.ms()

        def after_sentence(_sentence: str) -> None:
            busy_ms = (time.perf_counter() - synth_started[-1]) * 1000.0
            clock.timings.tts_busy_ms = round(clock.timings.tts_busy_ms + busy_ms, 2)

        def on_audio_chunk(chunk: bytes) -> None:
            audio = np.frombuffer(chunk, dtype="<i2")
            clock.audio_ready(result, audio, max(block_samples, audio.size),
                              time.perf_counter())

        reply = self._models.start_reply(conversations.key(npc_id), npc_id, messages, on_reply)
        reply.add_done_callback(lambda _: tokens.put(_END))
        stream.feed(token_stream())
        stream.play(muted=True, tokenizer="rule-based", on_audio_chunk=on_audio_chunk,
                    before_sentence_synthesized=before_sentence,
                    on_sentence_synthesized=after_sentence)
        reply.result()  # an LLM failure is raised here
        clock.finish(result)
        spoken = " ".join(speakable("".join(clock.reply_parts)).split())
        conversations.record(npc_id, line, spoken)
        return result, clock.timings, spoken


def make_work_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for the per-voice config copies (the caller cleans it up)."""
    return tempfile.TemporaryDirectory(prefix="npc-voice-bench-rtts-")
