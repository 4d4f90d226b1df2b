"""Sending to clients: queueing messages, connection-level error replies, and telemetry.

One small room for "put this on the wire for that client", so the server, the turn
manager and microphone input all send the same way: a gone client is skipped, a client
that is not reading has its replies dropped (with a warning now and then), and the
writer is woken.
"""

from __future__ import annotations

import logging

from bridge_protocol.messages import DaemonMessage, Error
from daemon.metrics import Telemetry
from daemon.server.clients import Client
from daemon.server.socket_io import SocketWriter

_LOGGER = logging.getLogger(__name__)


class Sender:
    """Queues messages for clients and wakes the socket writer.

    Args:
      telemetry: Counts refused input.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self.writer: SocketWriter | None = None
        """Set by the server once it serves; until then messages only queue."""

    def send(self, client: Client, message: DaemonMessage, pcm: bytes | None = None) -> None:
        """Queue `message` (and its PCM) for `client`; dropped if the client is gone.

        Raises:
          ClientTooSlow: an audio block would overflow the client's outbox.
        """
        if client.gone:
            return
        if not client.queue(message, pcm):
            if client.dropped_replies in (1, 100, 10_000):
                _LOGGER.warning("client %s is not reading: %d repl(ies) dropped, %d bytes "
                                "waiting", client.label, client.dropped_replies,
                                client.queued_bytes)
            return
        if self.writer is not None:
            self.writer.wake()

    def reject(self, client: Client, code: str, message: str,
               rejected_turn_id: int | None = None) -> None:
        """Send a connection-level error (one that ends no turn) to `client`."""
        self._telemetry.input_rejected(code)
        self.send(client, Error(code=code, message=message, rejected_turn_id=rejected_turn_id))
