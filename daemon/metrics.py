"""Telemetry: what the server reports as it runs (turns, connections, bad input).

`Telemetry` is the interface the server calls; the base class writes one structured
log line per finished turn: `key=value` pairs after the `npc_voice.turn` logger name,
readable by a person and trivially parsed. Times are milliseconds since the daemon had
the complete utterance; `ttfa_ms` is the daemon-side time to the first block.
"""

from __future__ import annotations

import logging

from bridge_protocol.messages import Cancelled, DaemonMessage, Done, Error
from daemon.turn import TurnProgress, TurnSpec

_LOGGER = logging.getLogger("npc_voice.turn")


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


class Telemetry:
    """Receives the server's events. The base class logs finished turns only."""

    def connections_changed(self, delta: int) -> None:
        """A TCP connection was accepted (+1) or closed (-1)."""

    def input_rejected(self, code: str) -> None:
        """A client message was refused with error `code` (no turn involved)."""

    def turn_finished(
        self, client: str, spec: TurnSpec, progress: TurnProgress, terminal: DaemonMessage
    ) -> None:
        """Log one finished turn with its outcome and timings."""
        if isinstance(terminal, Done):
            outcome = "done"
        elif isinstance(terminal, Cancelled):
            outcome = f"cancelled:{terminal.reason}"
        elif isinstance(terminal, Error):
            outcome = f"error:{terminal.code}"
        else:
            outcome = type(terminal).__name__
        t = progress.timings
        fields = {
            "client": client,
            "turn": spec.turn_id,
            "npc": spec.npc_id,
            "profile": spec.profile_name,
            "outcome": outcome,
            "ttfa_ms": t.first_block_ms,
            "llm_first_token_ms": t.llm_first_token_ms,
            "first_chunk_ms": t.first_chunk_ms,
            "tts_first_audio_ms": t.tts_first_audio_ms,
            "llm_done_ms": t.llm_done_ms,
            "last_block_ms": t.last_block_ms,
            "prompt_tokens": t.prompt_tokens,
            "prefill_tokens": t.prefill_tokens,
            "reply_tokens": t.reply_tokens,
            "audio_ms": t.audio_ms,
            "rtf": t.rtf,
            "blocks": progress.block_count,
        }
        _LOGGER.info(" ".join(f"{key}={_fmt(value)}" for key, value in fields.items()))
