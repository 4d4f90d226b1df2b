"""Which TCP connection each client is on, when it goes away, and how many there are.

A ROUTER hides its connections: it shows routing ids, not sockets, and says nothing
when a client goes. libzmq's own answer, `ZMQ_ROUTER_NOTIFY` (an empty message per
connect and disconnect), is a draft API that the locked pyzmq's libzmq is built
without (`zmq.has("draft")` is False; setting option 97 fails with EINVAL, checked
here). So the daemon combines two stable libzmq features instead:

  * every received message carries the descriptor of its connection (`ZMQ_SRCFD`,
    read with `Frame.get(zmq.SRCFD)`);
  * the socket monitor reports each accepted and each closed connection with that
    descriptor (`EVENT_ACCEPTED`, `EVENT_DISCONNECTED`): a client that closes, crashes
    (RST) or stops answering heartbeats shows up here within the heartbeat timeout.

A descriptor number is reused once closed, so a routing id is bound to its descriptor
only after every monitor event already queued has been read: the old connection's
`EVENT_DISCONNECTED` is always queued before a new connection on the same number can
deliver a message (it must be accepted and complete its handshake first).

Connections that never become ZMTP 3 are refused by libzmq itself: with a ZAP domain
set, libzmq rejects the unversioned ZMTP 1.0 and ZMTP 2.0 fallbacks at once (an HTTP
request or random bytes), which otherwise have no handshake timer; a ZMTP 3 peer that
stalls in its handshake is closed after `ZMQ_HANDSHAKE_IVL`. `ZapGate` answers the
ZAP requests and refuses connections beyond `max_connections`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from daemon.server.socket_io import resolved

_LOGGER = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
"""Where libzmq sends ZAP requests (RFC 27), in the ROUTER's own context."""

ZAP_DOMAIN = b"npc-voice"


class ConnectionTracker:
    """Binds routing ids to connections and reports the ids whose connection closed.

    Args:
      socket: The bound ROUTER.
      on_count: Called with the number of open connections whenever it changes.
    """

    def __init__(self, socket: zmq.asyncio.Socket,
                 on_count: Callable[[int], None] = lambda _count: None) -> None:
        self._socket = socket
        self.monitor: zmq.asyncio.Socket = socket.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED)
        self._on_count = on_count
        self._open: set[int] = set()
        self._identity_of: dict[int, bytes] = {}
        self._fd_of: dict[bytes, int] = {}
        self._closed: list[bytes] = []

    @property
    def open_count(self) -> int:
        """TCP connections accepted and not yet closed (handshaken or not)."""
        return len(self._open)

    def drain(self) -> None:
        """Read every queued monitor event (never blocks).

        Call it whenever the monitor socket is readable; `bind` calls it too. The
        routing ids whose connection closed wait in `take_closed`.
        """
        while True:
            try:
                frames = resolved(self.monitor.recv_multipart(flags=zmq.NOBLOCK)).result()
            except zmq.Again:
                break
            except zmq.ZMQError:  # the socket is closing
                break
            self._on_event(parse_monitor_message(frames))

    def take_closed(self) -> list[bytes]:
        """Routing ids whose connection closed since the last call."""
        closed, self._closed = self._closed, []
        return closed

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind, fd = event["event"], int(event["value"])
        if kind == zmq.EVENT_ACCEPTED:
            self._open.add(fd)
        elif kind == zmq.EVENT_DISCONNECTED:
            self._open.discard(fd)
            identity = self._identity_of.pop(fd, None)
            if identity is not None and self._fd_of.get(identity) == fd:
                del self._fd_of[identity]
                self._closed.append(identity)
        else:  # EVENT_ACCEPT_FAILED: out of descriptors, usually
            _LOGGER.warning("a connection could not be accepted (errno %d)", fd)
            return
        self._on_count(len(self._open))

    def bind(self, identity: bytes, fd: int) -> None:
        """Record that `identity` spoke on connection `fd`.

        The monitor is read first, so that a reused descriptor number is never
        mistaken for the old connection; see `take_closed` afterwards.
        """
        if self._fd_of.get(identity) == fd:
            return
        self.drain()
        old_fd = self._fd_of.get(identity)
        if old_fd is not None:  # the same id reconnected (ROUTER_HANDOVER)
            self._identity_of.pop(old_fd, None)
        previous = self._identity_of.get(fd)
        if previous is not None and previous != identity:
            # Defensive: the descriptor was reused without a disconnect event read.
            self._fd_of.pop(previous, None)
            self._closed.append(previous)
        self._identity_of[fd] = identity
        self._fd_of[identity] = fd

    def close(self) -> None:
        """Stop monitoring (before the ROUTER closes)."""
        if not self._socket.closed:
            self._socket.disable_monitor()
        self.monitor.close(linger=0)


class ZapGate:
    """Answers libzmq's ZAP requests: admits connections up to `max_connections`.

    Every ZMTP 3 connection is admitted while fewer than `max_connections` are open,
    and refused (status 400) beyond that.

    Setting a ZAP domain on the ROUTER is what makes libzmq refuse the ZMTP 1.0/2.0
    fallbacks; this handler then decides the rest. It must be bound (`bind`) before
    the ROUTER accepts connections, in the ROUTER's context.

    Args:
      context: The ROUTER's context.
      tracker: Source of the open-connection count.
      max_connections: Most connections admitted at once.
    """

    def __init__(self, context: zmq.asyncio.Context, tracker: ConnectionTracker,
                 max_connections: int) -> None:
        self._socket = context.socket(zmq.ROUTER)
        self._socket.linger = 0
        self._tracker = tracker
        self._max_connections = max_connections
        self.refused = 0

    def bind(self) -> None:
        """Bind the ZAP endpoint."""
        self._socket.bind(ZAP_ENDPOINT)

    async def run(self) -> None:
        """Answer requests until cancelled."""
        try:
            while True:
                frames = await self._socket.recv_multipart()
                reply = self._answer(frames)
                if reply is not None:
                    await self._socket.send_multipart(reply)
        finally:
            self._socket.close(linger=0)

    def _answer(self, frames: list[bytes]) -> list[bytes] | None:
        # [routing id, b"", version, request id, domain, address, identity, mechanism, ...]
        if len(frames) < 8:
            return None
        routing_id, _empty, version, request_id = frames[:4]
        address = frames[5]
        self._tracker.drain()  # the count must include connections accepted just now
        if self._tracker.open_count > self._max_connections:
            self.refused += 1
            _LOGGER.warning("refused a connection from %s: %d connections are open, the "
                            "limit is %d", address.decode("ascii", "replace"),
                            self._tracker.open_count - 1, self._max_connections)
            status, text = b"400", b"too many connections"
        else:
            status, text = b"200", b"OK"
        return [routing_id, b"", version, request_id, status, text, b"", b""]
