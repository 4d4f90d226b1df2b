"""A ZMTP 3.1 DEALER and npc-voice client on raw sockets, written from PROTOCOL.md alone.

This is the Python twin of the Godot addon's GDScript, function by function and under the same
names, so that the byte-level logic the addon ships is exercised against the real daemon (no
Godot binary exists in CI):

- module functions                = godot_addon/addons/npc_voice/zmtp_codec.gd
- `StreamPeerTCP`                  = the part of Godot's StreamPeerTCP the addon uses (non-blocking,
                                     EOF reported once the received data has been read)
- `ZmtpConnection`                 = zmtp_connection.gd (greeting, READY, frames, PING/PONG,
                                     timeouts, reconnect with backoff)
- `NpcVoiceClient`                 = npc_voice_client.gd, protocol side (hello/welcome, say,
                                     cancel, turn bookkeeping); audio is collected, not played

Only the standard library is used (`socket`, no pyzmq). Signals become callback lists.
Test-only instrumentation (recorded frames, `answer_pings`) is marked as such.
"""

from __future__ import annotations

import errno
import json
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

OK = 0
FAILED = 1

# ------------------------------------------------------------------ zmtp_codec.gd

GREETING_SIZE = 64
FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04
SHORT_BODY_MAX = 255
MECHANISM = "NULL"


def greeting() -> bytes:
    """zmtp_codec.gd greeting(): FF, 8 x 00, 7F, 03 01, "NULL" padded to 20, as-server 0."""
    data = bytearray(GREETING_SIZE)
    data[0] = 0xFF
    data[9] = 0x7F
    data[10] = 3
    data[11] = 1
    mechanism = MECHANISM.encode("ascii")
    data[12:12 + len(mechanism)] = mechanism
    return bytes(data)


def check_greeting(data: bytes) -> str:
    """zmtp_codec.gd check_greeting(): "" while the bytes so far are a ZMTP 3 NULL greeting."""
    size = len(data)
    if size >= 1 and data[0] != 0xFF:
        return f"the peer is not a ZeroMQ socket (first byte 0x{data[0]:02x}, expected 0xff)"
    if size >= 10 and (data[9] & 0x01) == 0:
        return "the peer speaks ZMTP 1.0, not ZMTP 3"
    if size >= 11 and data[10] < 3:
        return f"the peer speaks ZMTP {data[10]}, not ZMTP 3"
    if size >= 32:
        expected = MECHANISM.encode("ascii").ljust(20, b"\0")
        if data[12:32] != expected:
            name = data[12:32].rstrip(b"\0").decode("ascii", "replace")
            return f"the peer uses security mechanism {name}, expected NULL"
    return ""


def encode_u64_be(value: int) -> bytes:
    """zmtp_codec.gd encode_u64_be()."""
    data = bytearray(8)
    for i in range(8):
        data[7 - i] = (value >> (8 * i)) & 0xFF
    return bytes(data)


def decode_uint_be(data: bytes, offset: int, count: int) -> int:
    """zmtp_codec.gd decode_uint_be()."""
    value = 0
    for i in range(count):
        value = (value << 8) | data[offset + i]
    return value


def encode_frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    """zmtp_codec.gd encode_frame(): flags, u8 or u64 BE size (> 255 bytes), body."""
    flags = (FLAG_MORE if more else 0) | (FLAG_COMMAND if command else 0)
    data = bytearray()
    if len(body) > SHORT_BODY_MAX:
        data.append(flags | FLAG_LONG)
        data += encode_u64_be(len(body))
    else:
        data.append(flags)
        data.append(len(body))
    data += body
    return bytes(data)


def encode_message(frames: list[bytes]) -> bytes:
    """zmtp_codec.gd encode_message(): MORE on every frame but the last."""
    return b"".join(encode_frame(f, i < len(frames) - 1) for i, f in enumerate(frames))


def encode_command(name: str, payload: bytes) -> bytes:
    """zmtp_codec.gd encode_command(): name-len(1), name, data, as a command frame."""
    name_bytes = name.encode("ascii")
    return encode_frame(bytes([len(name_bytes)]) + name_bytes + payload, False, True)


def ready_command(socket_type: str) -> bytes:
    """zmtp_codec.gd ready_command(): READY with the Socket-Type property."""
    name = b"Socket-Type"
    value = socket_type.encode("ascii")
    payload = bytes([len(name)]) + name + encode_u64_be(len(value))[4:8] + value
    return encode_command("READY", payload)


def ping_command(ttl_ds: int, context: bytes) -> bytes:
    """zmtp_codec.gd ping_command()."""
    return encode_command("PING", bytes([(ttl_ds >> 8) & 0xFF, ttl_ds & 0xFF]) + context)


def pong_for_ping(ping_data: bytes) -> bytes:
    """zmtp_codec.gd pong_for_ping(): echo the context after the 2-byte TTL."""
    context = ping_data[2:] if len(ping_data) > 2 else b""
    return encode_command("PONG", context)


@dataclass
class Frame:
    """zmtp_codec.gd Frame."""

    flags: int = 0
    body: bytes = b""
    wire_size: int = 0
    error: str = ""

    def is_command(self) -> bool:
        return (self.flags & 0x04) != 0

    def has_more(self) -> bool:
        return (self.flags & 0x01) != 0


def decode_frame(buffer: bytes | bytearray, offset: int, max_body_bytes: int) -> Frame | None:
    """zmtp_codec.gd decode_frame(): None while incomplete; `error` set on a violation."""
    available = len(buffer) - offset
    if available < 2:
        return None
    frame = Frame(flags=buffer[offset])
    if frame.flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND):
        frame.error = f"reserved frame flag bits set (0x{frame.flags:02x})"
        return frame
    header = 2
    body_size = buffer[offset + 1]
    if frame.flags & FLAG_LONG:
        header = 9
        if available < header:
            return None
        if buffer[offset + 1] & 0x80:
            frame.error = "frame size does not fit in 63 bits"
            return frame
        body_size = decode_uint_be(buffer, offset + 1, 8)
    if body_size > max_body_bytes:
        frame.error = f"frame of {body_size} bytes exceeds the {max_body_bytes}-byte limit"
        return frame
    if available < header + body_size:
        return None
    frame.body = bytes(buffer[offset + header:offset + header + body_size])
    frame.wire_size = header + body_size
    return frame


@dataclass
class Command:
    """zmtp_codec.gd Command."""

    name: str = ""
    data: bytes = b""
    error: str = ""


def parse_command(body: bytes) -> Command:
    """zmtp_codec.gd parse_command()."""
    command = Command()
    if not body or body[0] + 1 > len(body):
        command.error = "malformed command frame"
        return command
    name_size = body[0]
    command.name = body[1:1 + name_size].decode("ascii", "replace")
    command.data = body[1 + name_size:]
    return command


def parse_properties(data: bytes) -> dict[str, bytes]:
    """zmtp_codec.gd parse_properties(): {} when malformed."""
    properties: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        name_size = data[pos]
        if pos + 1 + name_size + 4 > len(data):
            return {}
        name = data[pos + 1:pos + 1 + name_size].decode("ascii", "replace")
        pos += 1 + name_size
        value_size = decode_uint_be(data, pos, 4)
        pos += 4
        if pos + value_size > len(data):
            return {}
        properties[name] = data[pos:pos + value_size]
        pos += value_size
    return properties


def error_reason(data: bytes) -> str:
    """zmtp_codec.gd error_reason()."""
    if not data:
        return ""
    return data[1:1 + data[0]].decode("utf-8", "replace")


# ------------------------------------------------------------------ Godot's StreamPeerTCP


def get_ticks_msec() -> int:
    """Godot's Time.get_ticks_msec(): a monotonic millisecond clock."""
    return int(time.monotonic() * 1000)


class StreamPeerTCP:
    """The subset of Godot 4's StreamPeerTCP the addon uses, with its non-blocking semantics:
    poll() advances a connect and notices EOF only once the received bytes have been read."""

    STATUS_NONE, STATUS_CONNECTING, STATUS_CONNECTED, STATUS_ERROR = range(4)

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._status = self.STATUS_NONE
        self._inbox = bytearray()
        self._eof = False

    def connect_to_host(self, host: str, port: int) -> int:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        code = self._sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._status = self.STATUS_ERROR
            return FAILED
        self._status = self.STATUS_CONNECTING
        return OK

    def poll(self) -> int:
        if self._sock is None:
            return OK
        if self._status == self.STATUS_CONNECTING:
            code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self._status = self.STATUS_ERROR
            else:
                try:
                    self._sock.getpeername()
                    self._status = self.STATUS_CONNECTED
                except OSError:
                    pass  # still connecting
        if self._status == self.STATUS_CONNECTED:
            self._read_available()
            if self._eof and not self._inbox:
                self.disconnect_from_host()
        return OK

    def _read_available(self) -> None:
        assert self._sock is not None
        while not self._eof:
            try:
                chunk = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._eof = True
                return
            if not chunk:
                self._eof = True
                return
            self._inbox += chunk

    def get_status(self) -> int:
        return self._status

    def set_no_delay(self, enabled: bool) -> None:
        assert self._sock is not None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(enabled))

    def get_available_bytes(self) -> int:
        return len(self._inbox)

    def get_partial_data(self, count: int) -> tuple[int, bytes]:
        data = bytes(self._inbox[:count])
        del self._inbox[:count]
        return OK, data

    def put_partial_data(self, data: bytes) -> tuple[int, int]:
        if self._sock is None or self._status != self.STATUS_CONNECTED:
            return FAILED, 0
        try:
            return OK, self._sock.send(data)
        except BlockingIOError:
            return OK, 0
        except OSError:
            return FAILED, 0

    def disconnect_from_host(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._status = self.STATUS_NONE
        self._inbox.clear()
        self._eof = False


# ------------------------------------------------------------------ zmtp_connection.gd


class State(IntEnum):
    IDLE = 0
    CONNECTING = 1
    HANDSHAKING = 2
    OPEN = 3
    WAITING = 4
    FAILED = 5


SOCKET_TYPE = "DEALER"
PEER_SOCKET_TYPE = "ROUTER"


class ZmtpConnection:
    """zmtp_connection.gd: a non-blocking DEALER advanced by poll()."""

    def __init__(self) -> None:
        self.connect_timeout_ms = 3000
        self.heartbeat_ivl_ms = 2000
        self.heartbeat_timeout_ms = 10000
        self.backoff_min_ms = 100
        self.backoff_max_ms = 2000
        self.auto_reconnect = True
        self.max_frame_bytes = 4 * 1024 * 1024
        self.state = State.IDLE
        self.attempt = 0
        # signals
        self.opened: list[Callable[[], None]] = []
        self.closed: list[Callable[[str], None]] = []
        self.protocol_failed: list[Callable[[str, bool], None]] = []
        self.message_received: list[Callable[[list[bytes]], None]] = []
        # private state, as in the GDScript
        self._tcp: StreamPeerTCP | None = None
        self._host = ""
        self._port = 0
        self._rx = bytearray()
        self._rx_pos = 0
        self._tx = bytearray()
        self._greeting_received = False
        self._parts: list[bytes] = []
        self._deadline_ms = 0
        self._retry_at_ms = 0
        self._last_rx_ms = 0
        self._last_ping_ms = 0
        self._error_reported = False
        self._rng = random.Random()
        # test-only instrumentation
        self.answer_pings = True
        self.peer_greeting = b""
        self.peer_ready: dict[str, bytes] = {}
        self.frames_received: list[tuple[int, int]] = []  # (flags, body size)
        self.frames_sent: list[int] = []  # first byte of each frame we sent
        self.commands_received: list[Command] = []
        self.retry_delays_ms: list[int] = []

    # -- public functions

    def connect_to(self, host: str, port: int) -> None:
        self._close_socket()
        self._host = host
        self._port = port
        self.attempt = 0
        self._error_reported = False
        self._start_connect()

    def close(self) -> None:
        self._close_socket()
        self.state = State.IDLE

    def is_open(self) -> bool:
        return self.state == State.OPEN

    def poll(self) -> None:
        now = get_ticks_msec()
        if self.state == State.WAITING:
            if now >= self._retry_at_ms:
                self._start_connect()
        elif self.state == State.CONNECTING:
            self._advance_connecting(now)
        elif self.state in (State.HANDSHAKING, State.OPEN):
            self._advance_stream(now)

    def send_message(self, frames: list[bytes]) -> bool:
        if self.state != State.OPEN:
            return False
        self._queue_tx(encode_message(frames))
        self._flush_tx()
        return True

    def send_ping(self, context: bytes = b"") -> None:
        if self.state == State.OPEN:
            ttl_ds = max(0, min(int(self.heartbeat_timeout_ms / 100.0), 0xFFFF))
            self._queue_tx(ping_command(ttl_ds, context))
            self._flush_tx()

    # -- private functions

    def _queue_tx(self, data: bytes) -> None:
        """Appends to the send buffer (the GDScript appends directly; this records flags)."""
        pos = 0
        while pos < len(data):  # test-only: remember each frame's flag byte
            frame = decode_frame(data, pos, 1 << 62)
            assert frame is not None and not frame.error
            self.frames_sent.append(data[pos])
            pos += frame.wire_size
        self._tx += data

    def _start_connect(self) -> None:
        self._close_socket()
        self._tcp = StreamPeerTCP()
        self._deadline_ms = get_ticks_msec() + self.connect_timeout_ms
        self.state = State.CONNECTING
        error = self._tcp.connect_to_host(self._host, self._port)
        if error != OK:
            self._drop(f"cannot connect to {self._host}:{self._port}")

    def _advance_connecting(self, now: int) -> None:
        assert self._tcp is not None
        self._tcp.poll()
        status = self._tcp.get_status()
        if status == StreamPeerTCP.STATUS_CONNECTED:
            self._tcp.set_no_delay(True)
            self._rx = bytearray()
            self._rx_pos = 0
            self._parts.clear()
            self._greeting_received = False
            self._last_rx_ms = now
            self._last_ping_ms = now
            self._tx = bytearray(greeting())
            self._queue_tx(ready_command(SOCKET_TYPE))
            self.state = State.HANDSHAKING
            self._advance_stream(now)
        elif status != StreamPeerTCP.STATUS_CONNECTING:
            self._drop(f"cannot connect to {self._host}:{self._port}")
        elif now >= self._deadline_ms:
            self._drop(f"connecting to {self._host}:{self._port} timed out")

    def _advance_stream(self, now: int) -> None:
        assert self._tcp is not None
        self._tcp.poll()
        if self._tcp.get_status() != StreamPeerTCP.STATUS_CONNECTED:
            self._drop("the daemon closed the connection")
            return
        self._flush_tx()
        if self.state in (State.IDLE, State.WAITING):
            return
        if not self._receive(now):
            return
        self._parse()
        if self.state == State.HANDSHAKING and now >= self._deadline_ms:
            self._drop(f"no ZMTP handshake from {self._host}:{self._port} within "
                       f"{self.connect_timeout_ms} ms")
        elif self.state == State.OPEN:
            self._check_heartbeat(now)

    def _flush_tx(self) -> None:
        if not self._tx or self._tcp is None:
            return
        error, sent = self._tcp.put_partial_data(bytes(self._tx))
        if error != OK:
            self._drop("send failed")
            return
        del self._tx[:sent]

    def _receive(self, now: int) -> bool:
        assert self._tcp is not None
        available = self._tcp.get_available_bytes()
        if available <= 0:
            return True
        error, data = self._tcp.get_partial_data(available)
        if error != OK:
            self._drop("receive failed")
            return False
        self._rx += data
        self._last_rx_ms = now
        return True

    def _parse(self) -> None:
        if not self._greeting_received:
            problem = check_greeting(bytes(self._rx[:GREETING_SIZE]))
            if problem:
                self._protocol_error(problem)
                return
            if len(self._rx) < GREETING_SIZE:
                return
            self.peer_greeting = bytes(self._rx[:GREETING_SIZE])  # test-only
            self._greeting_received = True
            self._rx_pos = GREETING_SIZE
        while self.state in (State.HANDSHAKING, State.OPEN):
            frame = decode_frame(self._rx, self._rx_pos, self.max_frame_bytes)
            if frame is None:
                break
            if frame.error:
                self._protocol_error(frame.error)
                return
            self.frames_received.append((frame.flags, len(frame.body)))  # test-only
            self._rx_pos += frame.wire_size
            if frame.is_command():
                self._handle_command(frame.body)
            else:
                self._handle_data(frame)
        if self.state not in (State.HANDSHAKING, State.OPEN):
            return
        if self._rx_pos >= len(self._rx):
            self._rx = bytearray()
            self._rx_pos = 0
        elif self._rx_pos > 65536:
            self._rx = self._rx[self._rx_pos:]
            self._rx_pos = 0

    def _handle_command(self, body: bytes) -> None:
        command = parse_command(body)
        if command.error:
            self._protocol_error(command.error)
            return
        self.commands_received.append(command)  # test-only
        if command.name == "READY":
            self._handle_ready(command.data)
        elif command.name == "ERROR":
            self._fail(f"the daemon refused the connection: {error_reason(command.data)}")
        elif command.name == "PING":
            if self.answer_pings:  # test-only switch: a client that never answers
                self._queue_tx(pong_for_ping(command.data))
                self._flush_tx()

    def _handle_ready(self, data: bytes) -> None:
        if self.state != State.HANDSHAKING:
            self._protocol_error("READY received twice")
            return
        properties = parse_properties(data)
        self.peer_ready = properties  # test-only
        peer_type = properties.get("Socket-Type", b"").decode("ascii", "replace")
        if peer_type != PEER_SOCKET_TYPE:
            self._protocol_error(f"the peer is a {peer_type} socket, expected ROUTER")
            return
        self.state = State.OPEN
        self.attempt = 0
        self._error_reported = False
        for callback in list(self.opened):
            callback()

    def _handle_data(self, frame: Frame) -> None:
        if self.state != State.OPEN:
            self._protocol_error("message frame before the handshake completed")
            return
        self._parts.append(frame.body)
        if not frame.has_more():
            frames = self._parts
            self._parts = []
            for callback in list(self.message_received):
                callback(frames)

    def _check_heartbeat(self, now: int) -> None:
        silent_ms = now - self._last_rx_ms
        if self.heartbeat_timeout_ms > 0 and silent_ms >= self.heartbeat_timeout_ms:
            self._drop(f"no data from the daemon for {silent_ms} ms")
        elif self.heartbeat_ivl_ms > 0 and silent_ms >= self.heartbeat_ivl_ms:
            if now - self._last_ping_ms >= self.heartbeat_ivl_ms:
                self._last_ping_ms = now
                self.send_ping()

    def _drop(self, reason: str) -> None:
        was_open = self.state == State.OPEN
        self._close_socket()
        if self.auto_reconnect:
            self.state = State.WAITING
            delay = self._backoff_delay_ms(self.attempt)
            self.retry_delays_ms.append(delay)  # test-only
            self._retry_at_ms = get_ticks_msec() + delay
            self.attempt += 1
        else:
            self.state = State.IDLE
        if was_open:
            for callback in list(self.closed):
                callback(reason)

    def _protocol_error(self, reason: str) -> None:
        report = not self._error_reported
        self._error_reported = True
        self._drop(reason)
        if report:
            for callback in list(self.protocol_failed):
                callback(reason, False)

    def _fail(self, reason: str) -> None:
        was_open = self.state == State.OPEN
        self._close_socket()
        self.state = State.FAILED
        if was_open:
            for callback in list(self.closed):
                callback(reason)
        for callback in list(self.protocol_failed):
            callback(reason, True)

    def _backoff_delay_ms(self, failures: int) -> int:
        base = min(self.backoff_max_ms, self.backoff_min_ms << min(failures, 20))
        return int(base * self._rng.uniform(0.75, 1.0))

    def _close_socket(self) -> None:
        if self._tcp is not None:
            self._tcp.disconnect_from_host()
            self._tcp = None
        self._tx = bytearray()
        self._rx = bytearray()
        self._rx_pos = 0
        self._parts.clear()
        self._greeting_received = False


# ------------------------------------------------------------------ npc_voice_client.gd

PROTOCOL_VERSION = 1
DEFAULT_PREBUFFER_MS = 240
FATAL_HANDSHAKE_ERRORS = ("bad_token", "unsupported_protocol")


@dataclass
class TurnState:
    """turn_state.gd, plus what a test inspects instead of playing it."""

    turn_id: int
    npc_id: str
    sent_ms: float
    first_block_ms: float = -1.0
    next_seq: int = 0
    lost_blocks: int = 0
    terminal: str = ""
    timings: dict = field(default_factory=dict)
    stopped: bool = False
    cancel_sent: bool = False
    # instead of an audio output:
    subtitles: list[str] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    terminal_message: dict = field(default_factory=dict)
    blocks_after_terminal: int = 0

    def outcome(self) -> str:
        if self.terminal == "done":
            return "cancelled" if self.stopped else "done"
        return self.terminal


class NpcVoiceClient:
    """npc_voice_client.gd without the audio: signals are appended to `events`."""

    def __init__(self, host: str, port: int, token: str = "", sample_rate_hz: int = 0) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.sample_rate_hz = sample_rate_hz
        self.connection = ZmtpConnection()
        self.connection.opened.append(self._on_connection_opened)
        self.connection.closed.append(self._on_connection_closed)
        self.connection.protocol_failed.append(self._on_protocol_failed)
        self.connection.message_received.append(self._on_message_received)
        self.welcome: dict = {}
        self.events: list[tuple] = []
        self.finished: dict[int, TurnState] = {}
        self._turns: dict[int, TurnState] = {}
        self._next_turn_id = 1
        self._stray_unknown_turn_errors = 0

    # -- public functions

    def process(self) -> None:
        """_process(): advance the connection."""
        self.connection.poll()

    def connect_to_daemon(self) -> None:
        self.connection.connect_to(self.host, self.port)

    def disconnect_from_daemon(self) -> None:
        self.connection.close()
        self._on_connection_closed("closed by the game")

    def is_connected_to_daemon(self) -> bool:
        return bool(self.welcome) and self.connection.is_open()

    def say(self, npc_id: str, text: str, options: dict | None = None) -> int:
        options = options or {}
        turn = TurnState(self._next_turn_id, npc_id, time.monotonic() * 1000)
        self._next_turn_id += 1
        for other in list(self._turns.values()):
            if other.npc_id == npc_id:
                self._interrupt(other, True)
        self._turns[turn.turn_id] = turn
        if not self.is_connected_to_daemon():
            self._end_turn_with_error(turn.turn_id, "not_connected", "not connected")
            return turn.turn_id
        message = {"type": "say", "turn_id": turn.turn_id, "npc_id": npc_id, "text": text}
        if "profile" in options:
            message["profile"] = str(options["profile"])
        self._send(message)
        return turn.turn_id

    def cancel(self, turn_id: int) -> None:
        turn = self._turns.get(turn_id)
        if turn is not None:
            self._interrupt(turn, True)

    def run_until(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
        """Test helper: poll like a game loop (every ~2 ms) until `predicate` or the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.process()
            if predicate():
                return True
            time.sleep(0.002)
        return False

    # -- private functions

    def _send(self, message: dict) -> None:
        self.connection.send_message([json.dumps(message).encode("utf-8")])

    def _interrupt(self, turn: TurnState, send_cancel: bool) -> None:
        if not turn.stopped:
            turn.stopped = True
            if not turn.terminal and send_cancel and self.is_connected_to_daemon():
                turn.cancel_sent = True
                self._send({"type": "cancel", "turn_id": turn.turn_id})
        if turn.terminal:
            self._finish(turn)

    def _finish(self, turn: TurnState) -> None:
        if turn.turn_id not in self._turns:
            return
        del self._turns[turn.turn_id]
        self.finished[turn.turn_id] = turn
        self.events.append(("speech_finished", turn.turn_id, turn.npc_id, turn.outcome(),
                            turn.timings))

    def _end_turn_with_error(self, turn_id: int, code: str, message: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is None:
            return
        self.events.append(("error_received", code, message, turn_id))
        turn.terminal = "error"
        self._interrupt(turn, False)

    def _handle_welcome(self, message: dict) -> None:
        self.welcome = message
        self.events.append(("connected", message))

    def _handle_audio(self, header: dict, frames: list[bytes]) -> None:
        turn_id = self._int_field(header, "turn_id")
        turn = self._turns.get(turn_id)
        if turn is None:
            late = self.finished.get(turn_id)
            if late is not None:
                late.blocks_after_terminal += 1
            return
        samples = self._int_field(header, "sample_count")
        if len(frames) != 2 or len(frames[1]) != 2 * samples:
            self.events.append(("error_received", "bad_message", "malformed audio block",
                                turn_id))
            return
        seq = self._int_field(header, "seq")
        turn.lost_blocks += max(seq - turn.next_seq, 0)
        turn.next_seq = seq + 1
        if turn.first_block_ms < 0:
            turn.first_block_ms = time.monotonic() * 1000
        if not turn.stopped:  # the GDScript hands the block to the player here
            turn.headers.append(header)
            turn.pcm += frames[1]

    def _handle_terminal(self, message: dict, kind: str) -> None:
        turn = self._turns.get(self._int_field(message, "turn_id"))
        if turn is None:
            return
        turn.terminal = kind
        turn.terminal_message = message
        if isinstance(message.get("timings"), dict):
            turn.timings = message["timings"]
        if kind == "done" and turn.cancel_sent:
            self._stray_unknown_turn_errors += 1
        if kind == "done" and not turn.stopped:
            self._finish(turn)  # the GDScript lets the player play it out first
        else:
            self._interrupt(turn, False)

    def _handle_error(self, message: dict) -> None:
        code = str(message.get("code", ""))
        text = str(message.get("message", ""))
        turn_id = self._int_field(message, "turn_id")
        if turn_id < 0 and code == "unknown_turn" and self._stray_unknown_turn_errors > 0:
            self._stray_unknown_turn_errors -= 1
            return
        self.events.append(("error_received", code, text, turn_id))
        if turn_id < 0 and code in FATAL_HANDSHAKE_ERRORS:
            self.connection.close()
        elif turn_id >= 0:
            self._handle_terminal(message, "error")

    @staticmethod
    def _int_field(message: dict, key: str) -> int:
        value = message.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        return -1

    # -- signal handlers

    def _on_connection_opened(self) -> None:
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION,
                 "client": "raw-zmtp-client (tests)", "token": self.token}
        if self.sample_rate_hz > 0:
            hello["sample_rate_hz"] = self.sample_rate_hz
        self._send(hello)

    def _on_connection_closed(self, reason: str) -> None:
        was_welcomed = bool(self.welcome)
        self.welcome = {}
        self._stray_unknown_turn_errors = 0
        for turn in list(self._turns.values()):
            if not turn.terminal:
                turn.terminal = "disconnected"
                self._interrupt(turn, False)
        if was_welcomed:
            self.events.append(("disconnected", reason))

    def _on_protocol_failed(self, reason: str, fatal: bool) -> None:
        self.events.append(("error_received", "protocol_error", reason, -1))

    def _on_message_received(self, frames: list[bytes]) -> None:
        try:
            message = json.loads(frames[0].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict):
            self.events.append(("error_received", "bad_message",
                                "the daemon sent a frame that is not JSON", -1))
            return
        kind = str(message.get("type", ""))
        if kind == "welcome":
            self._handle_welcome(message)
        elif kind == "subtitle":
            turn = self._turns.get(self._int_field(message, "turn_id"))
            if turn is not None and not turn.stopped:
                turn.subtitles.append(str(message.get("text", "")))
                self.events.append(("subtitle_received", turn.turn_id, turn.npc_id,
                                    str(message.get("text", ""))))
        elif kind == "audio_block":
            self._handle_audio(message, frames)
        elif kind in ("done", "cancelled"):
            self._handle_terminal(message, kind)
        elif kind == "error":
            self._handle_error(message)
