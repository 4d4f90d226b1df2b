"""The ROUTER socket's send side.

A single writer drains every client's bounded outbox round-robin with non-blocking
sends: a client whose pipe is full (a slow client) is skipped, not waited for, and a
vanished client is reported, so no client ever stalls another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import zmq
import zmq.asyncio

from daemon.server.clients import Client

T = TypeVar("T")


def resolved(call: Awaitable[T]) -> asyncio.Future[T]:
    """The future a non-blocking (`zmq.NOBLOCK`) zmq.asyncio call returns, already done.

    Its result or error (`zmq.Again` when nothing was ready) is read without awaiting.
    """
    assert isinstance(call, asyncio.Future), "expected a zmq.asyncio NOBLOCK call"
    return call


class SocketWriter:
    """Sends queued messages of every client over one ROUTER socket.

    A ROUTER gives no per-client "writable again" signal (its POLLOUT is always set, and
    a full pipe to one client shows only as EAGAIN on a send to it), so while every client
    with output is at its high-water mark the writer waits with a growing back-off
    (1 ms doubling to 50 ms) instead of spinning; anything newly queued wakes it at once.

    Args:
      socket: The bound ROUTER (with ROUTER_MANDATORY set, so a vanished client raises).
      clients: The server's clients by routing id (read each round).
      on_client_gone: Called with a client whose connection is gone.
    """

    _BACKOFF_FIRST_S = 0.001
    _BACKOFF_MAX_S = 0.05

    def __init__(self, socket: zmq.asyncio.Socket, clients: dict[bytes, Client],
                 on_client_gone: Callable[[Client], None]) -> None:
        self._socket = socket
        self._clients = clients
        self._on_client_gone = on_client_gone
        self._ready = asyncio.Event()

    def wake(self) -> None:
        """Something was queued: run a round soon."""
        self._ready.set()

    async def run(self) -> None:
        """Send until cancelled; sleeps while every outbox is empty."""
        backoff_s = self._BACKOFF_FIRST_S
        while True:
            await self._ready.wait()
            if self.send_round():
                backoff_s = self._BACKOFF_FIRST_S
                await asyncio.sleep(0)  # let the reader and the turns run between rounds
            elif any(client.outbox for client in self._clients.values()):
                # Every client with output is at its HWM: wait, or until more is queued.
                self._ready.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), backoff_s)
                self._ready.set()
                backoff_s = min(backoff_s * 2, self._BACKOFF_MAX_S)
            else:
                self._ready.clear()

    async def flush(self, timeout_s: float) -> None:
        """Send what is queued, for at most `timeout_s` (used at shutdown)."""
        deadline = time.monotonic() + timeout_s
        while any(p.outbox for p in self._clients.values()) and time.monotonic() < deadline:
            if not self.send_round():
                await asyncio.sleep(0.01)

    def send_round(self) -> bool:
        """Send at most one message per client; return True if anything was sent."""
        sent = False
        for client in list(self._clients.values()):
            if not client.outbox:
                continue
            item = client.outbox[0]
            # A non-blocking send on a zmq.asyncio socket returns a future that is
            # already resolved: the error (if any) is in it, not raised here.
            error = resolved(self._socket.send_multipart(
                [client.identity, *item.frames], flags=zmq.NOBLOCK, copy=False
            )).exception()
            if isinstance(error, zmq.Again):
                continue  # this client's pipe is full: try the others
            if isinstance(error, zmq.ZMQError) and error.errno == zmq.EHOSTUNREACH:
                self._on_client_gone(client)
                continue
            if error is not None:
                raise error
            client.pop_sent()
            sent = True
        return sent
