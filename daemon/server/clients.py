"""Connected clients: their handshake state, turns, conversations and bounded outbox.

Each client has its own queue of outgoing messages, bounded in bytes, so one slow or dead
client fills only its own queue; the server's single writer drains the queues
round-robin.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bridge_protocol.framing import to_frames
from bridge_protocol.messages import AudioBlock, DaemonMessage, is_terminal
from daemon.llm.conversation import Conversation
from daemon.server.turn_handle import TurnHandle


class ClientTooSlow(RuntimeError):
    """The client's outbox is full: it is not reading its audio."""


@dataclass(slots=True)
class Outgoing:
    """One queued message: its frames, size, turn (None = none), and whether it is audio."""

    frames: list[bytes]
    size_bytes: int
    turn_id: int | None
    is_audio: bool


@dataclass(eq=False)
class Client:
    """One connected client (a game), known by its connection's ZeroMQ routing id.

    Attributes:
      identity: ROUTER routing id of the connection.
      max_queued_bytes: Outbox size at which the client counts as not reading: audio
        is refused (`ClientTooSlow`), connection-level replies are dropped, and the
        server ignores the client's messages until the outbox drains (`stalled`).
        Terminal events are always queued: there are at most as many as turns.
      welcomed: The handshake succeeded.
      sample_rate_hz: Rate requested in `hello` (None = native voice rates).
      timing: The client asked for `timing` messages in `hello`.
      last_turn_id: Highest turn id seen (turn ids must increase).
      turns: Unfinished turns by id.
      conversations: Per-NPC conversation with this client.
      queued_bytes: Bytes in the outbox.
      dropped_replies: Replies dropped because the outbox was full.
    """

    identity: bytes
    max_queued_bytes: int
    welcomed: bool = False
    client_name: str = ""
    sample_rate_hz: int | None = None
    timing: bool = False
    last_turn_id: int = -1
    turns: dict[int, TurnHandle] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    outbox: deque[Outgoing] = field(default_factory=deque)
    queued_bytes: int = 0
    dropped_replies: int = 0
    gone: bool = False
    bad_token_logged: bool = False
    last_speculative_id: int = 0

    def speculative_turn_id(self) -> int:
        """A negative id for a speculative turn, unique on this connection.

        The client-visible id is assigned when the turn is released.
        """
        self.last_speculative_id -= 1
        return self.last_speculative_id

    @property
    def label(self) -> str:
        """Short printable name for logs; client-chosen text is escaped (repr)."""
        if self.client_name:
            return f"{self.identity.hex()} {self.client_name!r}"
        return self.identity.hex()

    @property
    def stalled(self) -> bool:
        """The outbox is full: the client is not reading what it is sent."""
        return self.queued_bytes >= self.max_queued_bytes

    def queue(self, message: DaemonMessage, pcm: bytes | None = None) -> bool:
        """Queue a message for sending; return False if it was dropped.

        Raises:
          ClientTooSlow: an audio block would take the outbox past `max_queued_bytes`.
        """
        frames = to_frames(message, pcm)
        size = sum(len(frame) for frame in frames)
        is_audio = isinstance(message, AudioBlock)
        if self.queued_bytes + size > self.max_queued_bytes and not is_terminal(message):
            if is_audio:
                raise ClientTooSlow(
                    f"{self.queued_bytes} bytes are waiting for {self.label}; it is not reading")
            self.dropped_replies += 1
            return False
        turn_id = getattr(message, "turn_id", None)
        self.outbox.append(Outgoing(frames, size, turn_id, is_audio))
        self.queued_bytes += size
        return True

    def pop_sent(self) -> None:
        """Forget the first queued message: it was handed to the socket."""
        self.queued_bytes -= self.outbox.popleft().size_bytes

    def clear_outbox(self) -> None:
        """Drop everything queued (the client is gone)."""
        self.outbox.clear()
        self.queued_bytes = 0

    def drop_queued(self, turn_id: int) -> int:
        """Remove every queued message of `turn_id`; return how many audio blocks went."""
        kept: deque[Outgoing] = deque()
        dropped_blocks = 0
        for item in self.outbox:
            if item.turn_id == turn_id:
                dropped_blocks += item.is_audio
                self.queued_bytes -= item.size_bytes
            else:
                kept.append(item)
        self.outbox = kept
        return dropped_blocks

    def active_turn_for(self, npc_id: str) -> TurnHandle | None:
        """The unfinished turn of this client with `npc_id`, if any."""
        for handle in self.turns.values():
            if handle.npc_id == npc_id:
                return handle
        return None
