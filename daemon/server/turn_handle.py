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
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from bridge_protocol.messages import DaemonMessage
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
            send(message, pcm)

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
            send(message, pcm)
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
