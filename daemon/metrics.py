"""Telemetry: what the server reports as it runs (turns, connections, bad input).

`Telemetry` is the interface the server calls; the base class writes one structured
log line per finished turn: `key=value` pairs after the `daemon.turns` logger name,
readable by a person and trivially parsed. Times are milliseconds since the daemon had
the complete utterance; `ttfa_ms` is the daemon-side time to the first block.

`PrometheusTelemetry` adds an optional `/metrics` page (the `metrics` extra,
prometheus-client) on its own registry: TTFA, per-stage durations, turns by outcome,
cancellations by reason, errors by code and connected clients (names in README.md,
"Telemetry"). The stages are defined in `daemon.pipeline.timings`.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

from bridge_protocol.messages import (
    Cancelled,
    CancelReason,
    DaemonMessage,
    Done,
    Error,
    ErrorCode,
)
from daemon.pipeline.timings import OTHER_STAGES, TTFA_STAGES, stage_durations_ms
from daemon.pipeline.turn import TurnProgress, TurnSpec

TURN_LOGGER = "daemon.turns"
"""Logger of the one line per finished turn (`npc-voice demo` prints it)."""

_LOGGER = logging.getLogger(TURN_LOGGER)
_SERVICE_LOGGER = logging.getLogger(__name__)

_TTFA_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
                   10.0)
_STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0,
                    5.0, 10.0, 30.0)
_RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def turn_outcome(terminal: DaemonMessage) -> tuple[str, str | None]:
    """("done" | "cancelled" | "error", reason or error code or None) of a terminal event."""
    if isinstance(terminal, Done):
        return "done", None
    if isinstance(terminal, Cancelled):
        return "cancelled", terminal.reason
    if isinstance(terminal, Error):
        return "error", terminal.code
    return type(terminal).__name__.lower(), None


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

    def close(self) -> None:
        """Release what the telemetry holds (an HTTP server); called at shutdown."""

    def turn_finished(
        self, client: str, spec: TurnSpec, progress: TurnProgress, terminal: DaemonMessage
    ) -> None:
        """Log one finished turn with its outcome and timings."""
        kind, detail = turn_outcome(terminal)
        outcome = f"{kind}:{detail}" if detail else kind
        t = progress.timings
        fields = {
            "client": client,
            "turn": getattr(terminal, "turn_id", spec.turn_id),
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


class PrometheusTelemetry(Telemetry):
    """Telemetry as Prometheus metrics on a private registry, plus the per-turn log line.

    Metrics (seconds, as Prometheus wants; stages as in `stage_durations_ms`):
      npc_voice_ttfa_seconds: histogram of the daemon-side TTFA of turns that sent audio.
      npc_voice_stage_seconds{stage}: histogram of per-stage durations.
      npc_voice_tts_rtf_ratio: histogram of TTS real-time factor per turn.
      npc_voice_audio_seconds_total: audio sent to clients.
      npc_voice_turns_total{outcome}: finished turns by outcome (done, cancelled, error).
      npc_voice_cancellations_total{reason}: cancelled turns (cancel, barge_in, shutdown).
      npc_voice_errors_total{code}: error events sent, ending a turn or refusing input.
      npc_voice_connected_clients: open TCP connections to the daemon's socket.

    Args:
      registry: Registry to register on (default: a new private one, so that several
        instances, e.g. in tests, never collide in prometheus-client's global one).

    Raises:
      ImportError: prometheus-client is not installed (the `metrics` extra).
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import (  # noqa: PLC0415 - optional dependency
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
        )

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._http: Any = None
        self._http_thread: Any = None
        reg = self.registry
        self._ttfa = Histogram(
            "npc_voice_ttfa_seconds", "Daemon-side TTFA: utterance complete -> first PCM block",
            buckets=_TTFA_BUCKETS_S, registry=reg)
        self._stages = Histogram(
            "npc_voice_stage_seconds", "Duration of each stage of a turn",
            ["stage"], buckets=_STAGE_BUCKETS_S, registry=reg)
        self._rtf = Histogram(
            "npc_voice_tts_rtf_ratio", "TTS real-time factor: synthesis time / audio duration",
            buckets=_RTF_BUCKETS, registry=reg)
        self._audio = Counter(
            "npc_voice_audio_seconds", "Seconds of audio sent to clients", registry=reg)
        self._turns = Counter(
            "npc_voice_turns", "Finished turns by outcome", ["outcome"], registry=reg)
        self._cancellations = Counter(
            "npc_voice_cancellations", "Cancelled turns by reason", ["reason"], registry=reg)
        self._errors = Counter(
            "npc_voice_errors", "Error events sent, by code", ["code"], registry=reg)
        self._clients = Gauge(
            "npc_voice_connected_clients", "Open TCP connections to the daemon", registry=reg)
        # Every label value exists from the start, so dashboards see zeros, not gaps.
        for stage in (*TTFA_STAGES, *OTHER_STAGES):
            self._stages.labels(stage=stage)
        for outcome in ("done", "cancelled", "error"):
            self._turns.labels(outcome=outcome)
        for reason in typing.get_args(CancelReason):
            self._cancellations.labels(reason=reason)
        for name, code in vars(ErrorCode).items():
            if not name.startswith("_") and isinstance(code, str):
                self._errors.labels(code=code)

    def start_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve `/metrics` on `host:port` from a background thread; return the port.

        Args:
          port: TCP port; 0 = any free port.
          host: Address to bind; loopback by default, like the daemon's socket.

        Raises:
          OSError: the port cannot be bound.
        """
        from prometheus_client import start_http_server  # noqa: PLC0415

        self._http, self._http_thread = start_http_server(port, addr=host,
                                                          registry=self.registry)
        bound = int(self._http.server_address[1])
        _SERVICE_LOGGER.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP server, if started."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def render(self) -> bytes:
        """The metrics in Prometheus text format (what `/metrics` serves)."""
        from prometheus_client import generate_latest  # noqa: PLC0415

        return generate_latest(self.registry)

    def connections_changed(self, delta: int) -> None:
        """Track open connections."""
        self._clients.inc(delta)

    def input_rejected(self, code: str) -> None:
        """Count a refused message under its error code."""
        self._errors.labels(code=code).inc()

    def turn_finished(
        self, client: str, spec: TurnSpec, progress: TurnProgress, terminal: DaemonMessage
    ) -> None:
        """Log the turn (base class), then record its outcome and timings."""
        super().turn_finished(client, spec, progress, terminal)
        outcome, detail = turn_outcome(terminal)
        self._turns.labels(outcome=outcome).inc()
        if outcome == "cancelled" and detail:
            self._cancellations.labels(reason=detail).inc()
        elif outcome == "error" and detail:
            self._errors.labels(code=detail).inc()
        timings = progress.timings
        if timings.first_block_ms is not None and progress.sample_count:
            self._ttfa.observe(timings.first_block_ms / 1000.0)
        for stage, duration_ms in stage_durations_ms(timings).items():
            self._stages.labels(stage=stage).observe(duration_ms / 1000.0)
        if timings.rtf is not None:
            self._rtf.observe(timings.rtf)
        if timings.audio_ms:
            self._audio.inc(timings.audio_ms / 1000.0)


def make_telemetry(metrics_port: int) -> Telemetry:
    """The daemon's telemetry: the log line, plus Prometheus when `metrics_port` is set.

    Args:
      metrics_port: Port of `/metrics` on 127.0.0.1; 0 = none.

    Raises:
      RuntimeError: a port is set but prometheus-client is not installed, or the port
        cannot be bound.
    """
    if not metrics_port:
        return Telemetry()
    try:
        telemetry = PrometheusTelemetry()
    except ImportError:
        raise RuntimeError(
            "metrics_port needs prometheus-client: pip install 'npc-voice-bridge[metrics]'"
        ) from None
    try:
        telemetry.start_http(metrics_port)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc.strerror or exc}"
        ) from None
    return telemetry
