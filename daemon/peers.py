"""Connected clients: their handshake state, their turns and their bounded outbox.

Each peer has its own queue of outgoing messages, so one slow or dead client fills
only its own queue; the server's single writer drains the queues round-robin.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from bridge_protocol.framing import to_frames
from bridge_protocol.messages import AudioBlock, DaemonMessage
from daemon.llm.conversation import Conversation
from daemon.turn import Turn


class ClientTooSlow(RuntimeError):
    """The client's outbox is full: it is not reading its audio."""


@dataclass(slots=True)
class Outgoing:
    """One queued message: its frames, its turn (None = none), and whether it is audio."""

    frames: list[bytes]
    turn_id: int | None
    is_audio: bool


@dataclass(eq=False)
class TurnHandle:
    """A running turn as the server tracks it."""

    turn: Turn
    held: list[tuple[DaemonMessage, bytes | None]] | None = None
    """Messages kept back while a speculative turn waits for its endpoint; None = live."""
    task: asyncio.Task[None] | None = None
    finished: bool = False
    pending_terminal: DaemonMessage | None = None
    """Terminal event of a held turn that ended before its release."""


@dataclass(eq=False)
class Peer:
    """One client connection, known by its ZeroMQ routing id.

    Attributes:
      identity: ROUTER routing id of the connection.
      max_queued: Outbox size beyond which audio is refused (`ClientTooSlow`);
        control messages and terminal events are always accepted.
      welcomed: The handshake succeeded.
      sample_rate_hz: Rate requested in `hello` (None = native voice rates).
      last_turn_id: Highest turn id seen (turn ids must increase).
      turns: Unfinished turns by id.
      conversations: Per-NPC conversation with this client.
    """

    identity: bytes
    max_queued: int
    welcomed: bool = False
    client_name: str = ""
    sample_rate_hz: int | None = None
    last_turn_id: int = -1
    turns: dict[int, TurnHandle] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    outbox: deque[Outgoing] = field(default_factory=deque)
    gone: bool = False
    last_provisional_id: int = 0

    def provisional_turn_id(self) -> int:
        """A negative id for a held (speculative) turn, unique on this connection."""
        self.last_provisional_id -= 1
        return self.last_provisional_id

    @property
    def label(self) -> str:
        """Short printable name for logs."""
        return self.client_name or self.identity.hex()

    def queue(self, message: DaemonMessage, pcm: bytes | None = None) -> None:
        """Queue a message for sending.

        Raises:
          ClientTooSlow: an audio block would exceed `max_queued`.
        """
        if isinstance(message, AudioBlock) and len(self.outbox) >= self.max_queued:
            raise ClientTooSlow(
                f"{len(self.outbox)} messages are waiting for {self.label}; it is not reading"
            )
        turn_id = getattr(message, "turn_id", None)
        is_audio = isinstance(message, AudioBlock)
        self.outbox.append(Outgoing(to_frames(message, pcm), turn_id, is_audio))

    def drop_queued(self, turn_id: int) -> int:
        """Remove every queued message of `turn_id`; return how many audio blocks went."""
        kept: deque[Outgoing] = deque()
        dropped_blocks = 0
        for item in self.outbox:
            if item.turn_id == turn_id:
                dropped_blocks += item.is_audio
            else:
                kept.append(item)
        self.outbox = kept
        return dropped_blocks

    def active_turn_for(self, npc_id: str) -> TurnHandle | None:
        """The unfinished turn of this client with `npc_id`, if any."""
        for handle in self.turns.values():
            if handle.turn.spec.npc_id == npc_id:
                return handle
        return None
