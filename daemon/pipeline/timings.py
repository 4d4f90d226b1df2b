"""Where a turn's time goes: the stages of TTFA, derived from `TurnTimings` milestones.

Used by the telemetry (log line, Prometheus) and by `npc-voice bench`, so both report
the same stages.
"""

from __future__ import annotations

import time

from bridge_protocol.messages import TurnTimings

TTFA_STAGES = ("queue", "llm_first_token", "first_chunk", "tts_first_audio", "first_block")
"""The stages that add up to the daemon-side TTFA, in order.

Each lasts from the previous milestone of `TurnTimings` (the utterance, for `queue`)
to its own: `queue` = waiting for a free LLM context; `llm_first_token` = prompt
prefill and the first token; `first_chunk` = generation up to the first phrase
boundary; `tts_first_audio` = TTS of the first chunk up to its first audio;
`first_block` = resampling and cutting the first block.
"""

OTHER_STAGES = ("llm_reply", "tts_busy", "turn")
"""Stages that overlap the others: `llm_reply` = LLM context picked the turn up ->
last token; `tts_busy` = total time inside TTS synthesis; `turn` = utterance -> last
block handed to the socket."""

MILESTONES = ("queued_ms", "llm_first_token_ms", "first_chunk_ms", "tts_first_audio_ms",
              "first_block_ms")
"""The `TurnTimings` field that ends each of `TTFA_STAGES`."""


def ms_since(started: float) -> float:
    """Milliseconds from `started` (a `time.perf_counter()` value) to now."""
    return (time.perf_counter() - started) * 1000.0


def stage_durations_ms(timings: TurnTimings) -> dict[str, float]:
    """Per-stage durations of one turn, in ms (`TTFA_STAGES` + `OTHER_STAGES`).

    A stage is left out when one of its ends never happened (e.g. a turn cancelled
    before its first token). The `TTFA_STAGES` present add up to `first_block_ms`.
    """
    durations: dict[str, float] = {}
    previous: float | None = 0.0
    for stage, milestone in zip(TTFA_STAGES, MILESTONES, strict=True):
        at = getattr(timings, milestone)
        if at is not None and previous is not None:
            durations[stage] = round(max(at - previous, 0.0), 2)
        previous = at
    if timings.queued_ms is not None and timings.llm_done_ms is not None:
        durations["llm_reply"] = round(max(timings.llm_done_ms - timings.queued_ms, 0.0), 2)
    if timings.tts_busy_ms:
        durations["tts_busy"] = timings.tts_busy_ms
    if timings.last_block_ms is not None:
        durations["turn"] = timings.last_block_ms
    return durations
