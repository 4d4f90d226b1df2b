"""A minimal ZMTP 3.1 DEALER on a raw asyncio TCP stream, for testing the daemon's side.

libzmq (pyzmq) hides the wire and always behaves: it cannot send a malformed greeting,
declare a 256 MB frame, stream two million empty frames, or reset a connection in the
middle of a turn. This client can, so the reliability suite uses it for hostile and
vanishing clients. It implements PROTOCOL.md section 2 (greeting, READY, frames,
PING/PONG) and nothing more; it is not a general ZMTP library.
"""

from __future__ import annotations

import asyncio
import socket
import struct

GREETING = (b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\x00")
            + bytes(32))
"""Our 64-byte greeting: signature, version 3.1, NULL mechanism, as-server 0."""

_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


def encode_frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    """One ZMTP frame: flags, size (u8, or u64 big-endian over 255 bytes), body."""
    flags = (_MORE if more else 0) | (_COMMAND if command else 0)
    if len(body) > 255:
        return bytes([flags | _LONG]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def encode_message(frames: list[bytes]) -> bytes:
    """A message: its frames, MORE set on all but the last."""
    return b"".join(encode_frame(body, more=index < len(frames) - 1)
                    for index, body in enumerate(frames))


def ready_command(socket_type: bytes = b"DEALER") -> bytes:
    """READY with the Socket-Type property."""
    body = (b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type))
            + socket_type)
    return encode_frame(body, command=True)


class ZmtpError(RuntimeError):
    """The daemon refused the connection (an ERROR command) or broke the protocol."""


class RawZmtpClient:
    """One raw connection. Use `connect()`, then `send()` / `recv()`; `reset()` or `close()`.

    Args:
      host, port: The daemon's address.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open_tcp(self) -> None:
        """Open the TCP connection only (for tests that then send anything at all)."""
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def connect(self, timeout_s: float = 10.0) -> None:
        """TCP connect, greeting and READY both ways.

        Raises:
          ZmtpError: the daemon answered with an ERROR command (e.g. too many connections).
        """
        await self.open_tcp()
        self.write_raw(GREETING + ready_command())
        assert self._reader is not None
        greeting = await asyncio.wait_for(self._reader.readexactly(64), timeout_s)
        if greeting[0] != 0xFF or greeting[10] < 3:
            raise ZmtpError(f"not a ZMTP 3 greeting: {greeting[:12].hex()}")
        flags, body = await asyncio.wait_for(self._read_frame(), timeout_s)
        if not flags & _COMMAND:
            raise ZmtpError("expected READY")
        if body[1:1 + body[0]] == b"ERROR":
            reason = body[1 + body[0] + 1:].decode("utf-8", "replace")
            raise ZmtpError(f"the daemon refused the connection: {reason!r}")

    def write_raw(self, data: bytes) -> None:
        """Queue bytes as they are (anything: garbage, half frames, a bad greeting)."""
        assert self._writer is not None
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait until the queued bytes are handed to the kernel."""
        assert self._writer is not None
        await self._writer.drain()

    async def send(self, frames: list[bytes]) -> None:
        """Send one message."""
        self.write_raw(encode_message(frames))
        await self.drain()

    async def _read_frame(self) -> tuple[int, bytes]:
        assert self._reader is not None
        flags = (await self._reader.readexactly(1))[0]
        if flags & _LONG:
            size = struct.unpack(">Q", await self._reader.readexactly(8))[0]
        else:
            size = (await self._reader.readexactly(1))[0]
        return flags, await self._reader.readexactly(size)

    async def recv(self, timeout_s: float = 30.0) -> list[bytes]:
        """The next message; PINGs are answered and other commands skipped.

        Raises:
          asyncio.TimeoutError: nothing within `timeout_s`.
          asyncio.IncompleteReadError: the daemon closed the connection.
        """
        frames: list[bytes] = []
        while True:
            flags, body = await asyncio.wait_for(self._read_frame(), timeout_s)
            if flags & _COMMAND:
                if body[:5] == b"\x04PING":
                    context = body[7:]
                    self.write_raw(encode_frame(b"\x04PONG" + context, command=True))
                continue
            frames.append(body)
            if not flags & _MORE:
                return frames

    async def is_closed_by_peer(self, timeout_s: float) -> bool:
        """True if the daemon closes the connection within `timeout_s`.

        Data that arrives meanwhile is read and dropped.
        """
        reader = self._reader
        assert reader is not None

        async def until_eof() -> None:
            while await reader.read(65536):
                pass

        try:
            await asyncio.wait_for(until_eof(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed game would."""
        if self._writer is None:
            return
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass  # already closed by the daemon
        self._writer.transport.abort()
        self._writer = None

    async def close(self) -> None:
        """Close the connection politely (FIN)."""
        if self._writer is None:
            return
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass
        self._writer = None
