"""A running turn as the server tracks it: its state, and what it may send when.

A turn is *live* (what it produces goes to the client as it comes), *speculative*
(started before the end of the player's utterance was certain: everything it produces,
terminal event included, is held back until it is released or dropped) or *finished*
(it sent its one terminal event, or was dropped; nothing of it is sent any more). The
handle owns these transitions, so the rules "exactly one terminal event" and "nothing
after it" live in one place.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from bridge_protocol.messages import AudioBlock, DaemonMessage
from daemon.pipeline.playback import PlaybackClock
from daemon.pipeline.turn import Turn

SendFn = Callable[[DaemonMessage, "bytes | None"], None]
"""Queues a message (and its PCM) for the turn's client."""


class TurnState(enum.Enum):
    """Where a turn is in its life (see the module docstring)."""

    SPECULATIVE = "speculative"
    LIVE = "live"
    FINISHED = "finished"


@dataclass(eq=False)
class TurnHandle:
    """A running turn, its state and its task.

    Attributes:
      turn: The turn itself.
      state: Live, speculative or finished.
      task: The task that runs the turn (set once started).
    """

    turn: Turn
    state: TurnState = TurnState.LIVE
    task: asyncio.Task[None] | None = None
    on_end: list[Callable[[DaemonMessage], None]] = field(default_factory=list)
    """Called with the terminal event once it is sent (a scene waits for its lines)."""
    _held_back: list[tuple[DaemonMessage, bytes | None]] = field(default_factory=list)
    _pending_terminal: DaemonMessage | None = None
    _playback: PlaybackClock | None = None
    _chunk_played_at: dict[int, float] = field(default_factory=dict)
    _cut_after_chunk: int | None = None

    def played_at(self) -> tuple[float, float] | None:
        """`time.perf_counter()` when the client will have played every block sent so far.

        By the two playback rules (`PlaybackClock`): (the addon's, DESIGN's), from the
        times the blocks actually left (a held-back turn's at its release). A cut turn
        (`cut_after`) ends at its cut, by the later rule for both. None before any block.
        """
        if self._cut_after_chunk is not None:
            ends = [end for index, end in self._chunk_played_at.items()
                    if index <= self._cut_after_chunk]
            end = max(ends, default=time.perf_counter())
            return end, end
        clock = self._playback
        if clock is None or clock.end_s is None or clock.design_end_s is None:
            return None
        return clock.end_s, clock.design_end_s

    def chunk_playing(self, now: float) -> int | None:
        """Index of the chunk the client is playing (or will play first) at `now`.

        None when every chunk sent so far has been played, or nothing was sent yet.
        """
        playing = [index for index, end in self._chunk_played_at.items() if end > now]
        return min(playing) if playing else None

    def cut_after(self, chunk_index: int) -> None:
        """From now on, drop the turn's blocks and subtitles of chunks after `chunk_index`.

        The client is told separately (`scene_cut`) to drop those it already has.
        """
        self._cut_after_chunk = chunk_index

    def _send(self, message: DaemonMessage, pcm: bytes | None, send: SendFn) -> None:
        cut = self._cut_after_chunk
        if cut is not None and getattr(message, "chunk_index", -1) > cut:
            return  # a block, subtitle or timing of a chunk after the cut
        send(message, pcm)
        if isinstance(message, AudioBlock):
            if self._playback is None:
                self._playback = PlaybackClock(self.turn.spec.profile.prebuffer_ms / 1000.0)
            self._playback.block(time.perf_counter(), message.sample_count,
                                 message.sample_rate_hz)
            end_s = self._playback.latest_end_s
            assert end_s is not None
            if message.sample_count:  # an empty final block marks the end, not a chunk
                self._chunk_played_at[message.chunk_index] = end_s

    @property
    def turn_id(self) -> int:
        """The id the turn's messages carry now (negative while speculative)."""
        return self.turn.turn_id

    @property
    def npc_id(self) -> str:
        """The NPC speaking."""
        return self.turn.spec.npc_id

    @property
    def finished(self) -> bool:
        """It sent its terminal event, or was dropped."""
        return self.state is TurnState.FINISHED

    @property
    def speculative(self) -> bool:
        """It is held back until its utterance is confirmed."""
        return self.state is TurnState.SPECULATIVE

    def deliver(self, message: DaemonMessage, pcm: bytes | None, send: SendFn) -> None:
        """Route a subtitle or block the turn produced: sent, held back, or dropped.

        It is dropped when the turn was stopped: nothing of it may follow its terminal
        event.
        """
        if self.finished or self.turn.stop.is_set():
            return
        if self.speculative:
            self._held_back.append((message, pcm))
        else:
            self._send(message, pcm, send)

    def end(self, terminal: DaemonMessage, send: SendFn) -> bool:
        """Send the turn's terminal event; returns True if the turn is now finished.

        A speculative turn keeps it until `release` (False); a finished one ignores it.
        """
        if self.finished:
            return False
        if self.speculative:
            self._pending_terminal = terminal
            return False
        self.state = TurnState.FINISHED
        send(terminal, None)
        return True

    def assign_id(self, turn_id: int) -> None:
        """Give a speculative turn its client-visible id (re-stamping what it holds)."""
        self.turn.turn_id = turn_id
        self._held_back = [(msgspec.structs.replace(message, turn_id=turn_id), pcm)
                           for message, pcm in self._held_back]
        if self._pending_terminal is not None:
            self._pending_terminal = msgspec.structs.replace(self._pending_terminal,
                                                             turn_id=turn_id)

    def release(self, send: SendFn) -> DaemonMessage | None:
        """The utterance is confirmed: send what was held back and go live.

        Returns:
          The terminal event the turn produced meanwhile (the caller ends the turn with
          it), or None while it runs on.
        """
        if not self.speculative:
            return None
        self.state = TurnState.LIVE
        self.turn.released()
        held, self._held_back = self._held_back, []
        for message, pcm in held:
            self._send(message, pcm, send)
        terminal, self._pending_terminal = self._pending_terminal, None
        return terminal

    def drop(self) -> None:
        """Stop the turn without a word to the client.

        For a speculative turn whose player went on speaking.
        """
        self.state = TurnState.FINISHED
        self._held_back = []
        self._pending_terminal = None
        self.stop()

    def stop(self) -> None:
        """Stop the turn's engines and cancel its task (no event is sent here)."""
        self.turn.stop.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
