"""A ZMTP 3.1 DEALER and npc-voice client on raw sockets, written from PROTOCOL.md alone.

This is the Python twin of the Godot addon's GDScript, function by function and under the same
names, so that the byte-level logic the addon ships is exercised against the real daemon (no
Godot binary exists in CI):

- module functions                = godot_addon/addons/npc_voice/zmtp_codec.gd
- `StreamPeerTCP`                  = the part of Godot's StreamPeerTCP the addon uses (non-blocking,
                                     EOF reported once the received data has been read)
- `ZmtpConnection`                 = zmtp_connection.gd (greeting, READY, frames, PING/PONG,
                                     timeouts, reconnect with backoff)
- `MicResampler`                   = mic_resampler.gd (mix-rate stereo float frames -> 16 kHz
                                     mono s16le); `frames_to_mic_pcm` is its one-shot form
- `AudioEffectCapture`             = the part of Godot's AudioEffectCapture the addon uses (a test
                                     pushes "microphone" frames into it, as the audio thread does)
- `MicCapture`                     = mic_capture.gd (pulls frames each frame, cuts 100 ms blocks)
- `VoiceInput`                     = voice_input.gd (listen_start, mic_audio, listen_stop, speech
                                     events)
- `TurnTable`                      = turn_table.gd (turns in flight); audio is collected, not played
- `NpcVoiceClient`                 = npc_voice_client.gd, protocol side (hello/welcome, say,
                                     cancel, voice input, routing of messages)

Only the standard library is used (`socket`, no pyzmq). Signals become callback lists.
Test-only instrumentation (recorded frames, `answer_pings`) is marked as such.
"""

from __future__ import annotations

import bisect
import errno
import json
import math
import random
import socket
import struct
import time
from collections.abc import Callable, Sequence
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


# ------------------------------------------------------------------ mic_resampler.gd


def get_ticks_usec() -> int:
    """Godot's Time.get_ticks_usec(): a monotonic microsecond clock."""
    return time.monotonic_ns() // 1000


def roundi(value: float) -> int:
    """Godot's roundi(): halves round away from zero (Python's round() rounds them to even)."""
    magnitude = int(math.floor(abs(value) + 0.5))
    return magnitude if value >= 0 else -magnitude


def clampi(value: int, low: int, high: int) -> int:
    """Godot's clampi()."""
    return max(low, min(high, value))


class MicResampler:
    """mic_resampler.gd: stereo float frames at the mix rate -> mono s16le at 16 kHz.

    Box-filter decimation: each output sample is the mean of the input over its own
    1/output_rate interval (mono = (left + right) / 2), frames straddling an edge counting for
    both sides in proportion; the state carries over between calls. `frames` are (left, right)
    pairs of float32 values, as Godot's Vector2 holds them (GDScript computes in doubles).
    """

    def __init__(self, input_rate: int, output_rate: int) -> None:
        self.input_rate_hz = input_rate
        self.output_rate_hz = output_rate
        self._step = float(input_rate) / float(output_rate)  # input frames per output sample
        self._sum = 0.0
        self._filled = 0.0

    def process(self, frames: Sequence[tuple[float, float]]) -> bytes:
        """mic_resampler.gd process(): s16le mono, 2 bytes per output sample."""
        pcm = bytearray((int((len(frames) + self._filled) / self._step) + 2) * 2)
        count = 0
        for left_channel, right_channel in frames:
            sample = (float(left_channel) + float(right_channel)) * 0.5
            left = 1.0  # the part of this input frame not given to an output sample yet
            while self._filled + left >= self._step:
                part = self._step - self._filled
                struct.pack_into("<h", pcm, count * 2,
                                 self.to_s16(self._sum + sample * part, self._step))
                count += 1
                left -= part
                self._sum = 0.0
                self._filled = 0.0
            self._sum += sample * left
            self._filled += left
        del pcm[count * 2:]
        return bytes(pcm)

    def reset(self) -> None:
        """mic_resampler.gd reset()."""
        self._sum = 0.0
        self._filled = 0.0

    @staticmethod
    def to_s16(total: float, weight: float) -> int:
        """mic_resampler.gd to_s16(): the mean total / weight, scaled by 32767, rounded, clipped."""
        return clampi(roundi(total / weight * 32767.0), -32768, 32767)


def frames_to_mic_pcm(frames: Sequence[tuple[float, float]], input_rate_hz: int,
                      output_rate_hz: int = 16000) -> bytes:
    """The converter as a pure function: all of `frames` through a fresh `MicResampler`."""
    return MicResampler(input_rate_hz, output_rate_hz).process(frames)


# ------------------------------------------------------------------ Godot's AudioEffectCapture


class AudioEffectCapture:
    """The part of Godot 4's AudioEffectCapture the addon uses: a ring buffer of stereo frames
    that the audio thread fills (`push`, test-only: what the microphone bus delivers) and the
    game drains with get_frames_available() / get_buffer(); frames that do not fit are lost."""

    def __init__(self, capacity_frames: int) -> None:
        self._frames: list[tuple[float, float]] = []
        self._capacity = capacity_frames
        self.discarded_frames = 0

    def push(self, frames: Sequence[tuple[float, float]]) -> None:
        room = self._capacity - len(self._frames)
        self._frames.extend(frames[:room])
        self.discarded_frames += max(0, len(frames) - room)

    def get_frames_available(self) -> int:
        return len(self._frames)

    def get_buffer(self, frames: int) -> list[tuple[float, float]]:
        if frames > len(self._frames):
            return []
        taken = self._frames[:frames]
        del self._frames[:frames]
        return taken

    def clear_buffer(self) -> None:
        self._frames.clear()


# ------------------------------------------------------------------ mic_capture.gd


class MicCapture:
    """mic_capture.gd without Godot's audio engine: `capture` stands for the mic bus's
    AudioEffectCapture, `mix_rate_hz` for AudioServer.get_mix_rate(), `enable_input` for the
    project setting audio/driver/enable_input. Signals become callback lists."""

    OUTPUT_RATE_HZ = 16000
    CAPTURE_BUFFER_S = 0.5
    ENABLE_INPUT_SETTING = "audio/driver/enable_input"

    def __init__(self, mix_rate_hz: int = 48000) -> None:
        self.block_samples = 1600
        self.block_captured: list[Callable[[bytes], None]] = []
        self.mix_rate_hz = mix_rate_hz
        self.enable_input = True
        self.capture = AudioEffectCapture(int(self.CAPTURE_BUFFER_S * mix_rate_hz))
        self._resampler: MicResampler | None = None
        self._pending = bytearray()
        self._capturing = False

    def process(self) -> None:
        """_process(): Godot calls it every frame."""
        if self._capturing:
            self._pull()

    def start(self, bus_name: str) -> str:
        """mic_capture.gd start(): "" or why the microphone cannot be used."""
        if not self.enable_input:
            return "microphone input is off: enable the project setting " + \
                self.ENABLE_INPUT_SETTING
        self._resampler = MicResampler(int(self.mix_rate_hz), self.OUTPUT_RATE_HZ)
        self._pending = bytearray()
        if not self._capturing:
            self.capture.clear_buffer()  # frames left from an earlier capture
            self._capturing = True  # the GDScript plays an AudioStreamMicrophone on bus_name
        return ""

    def stop(self, flush: bool) -> None:
        """mic_capture.gd stop(): with `flush`, the captured rest goes out as a last block."""
        if not self._capturing:
            return
        if flush:
            self._pull()
            if self._pending:
                pcm = bytes(self._pending)
                for callback in list(self.block_captured):
                    callback(pcm)
        self._pending = bytearray()
        self._capturing = False

    def is_capturing(self) -> bool:
        return self._capturing

    def _pull(self) -> None:
        assert self._resampler is not None
        available = self.capture.get_frames_available()
        if available > 0:
            self._pending += self._resampler.process(self.capture.get_buffer(available))
        block_bytes = self.block_samples * 2
        while len(self._pending) >= block_bytes:
            block = bytes(self._pending[:block_bytes])
            self._pending = self._pending[block_bytes:]
            for callback in list(self.block_captured):
                callback(block)


# ------------------------------------------------------------------ voice_input.gd


def int_field(message: dict, key: str) -> int:
    """turn_table.gd int_field(): a JSON number as an int, else -1."""
    value = message.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    return -1


class VoiceInput:
    """voice_input.gd: the connection's microphone stream. Signals become callback lists;
    `block_ms` and `mic_bus` stand for the npc_voice/voice/* settings."""

    MODES = ("push_to_talk", "open_mic")
    MAX_MARKS = 3000

    def __init__(self, send: Callable[[list[bytes]], bool], mix_rate_hz: int = 48000) -> None:
        self.used = False
        self.block_ms = 100
        self.mic_bus = "NpcVoiceMic"
        # signals
        self.speech_started: list[Callable[[str], None]] = []
        self.speech_ended: list[Callable[[str, int], None]] = []
        self.transcript_received: list[Callable[[int, str, str, int], None]] = []
        self.failed: list[Callable[[str, str], None]] = []
        # private state, as in the GDScript
        self._send = send
        self.mic = MicCapture(mix_rate_hz)
        self.mic.block_captured.append(self._on_block_captured)
        self._npc_id = ""
        self._options: dict = {}
        self._seq = 0
        self._sent_ms = 0.0
        self._mark_ms: list[float] = []
        self._mark_usec: list[int] = []

    def start(self, npc_id: str, mode: str, options: dict) -> bool:
        if mode not in self.MODES:
            for callback in list(self.failed):
                callback("invalid_mode", "mode must be push_to_talk or open_mic, not " + mode)
            return False
        self.mic.block_samples = max(int(MicCapture.OUTPUT_RATE_HZ * self.block_ms / 1000.0), 1)
        problem = self.mic.start(self.mic_bus)
        if problem:
            for callback in list(self.failed):
                callback("mic_unavailable", problem)
            return False
        message = {"type": "listen_start", "npc_id": npc_id, "mode": mode,
                   "sample_rate_hz": MicCapture.OUTPUT_RATE_HZ}
        if "profile" in options:
            message["profile"] = str(options["profile"])
        self._npc_id = npc_id
        self._options = options
        self._seq = 0
        self._sent_ms = 0.0
        self._mark_ms = []
        self._mark_usec = []
        self.used = True
        self._send_json(message)
        return True

    def stop(self) -> None:
        if self._npc_id == "":
            return
        self.mic.stop(True)  # the last, shorter block goes out before listen_stop
        self._send_json({"type": "listen_stop"})
        self._npc_id = ""

    def is_listening(self) -> bool:
        return self._npc_id != ""

    def turn_options(self) -> dict:
        return self._options

    def connection_lost(self) -> None:
        self.mic.stop(False)
        self._npc_id = ""
        self.used = False

    def handle_message(self, message: dict) -> None:
        npc_id = str(message.get("npc_id", ""))
        kind = str(message.get("type", ""))
        if kind == "speech_started":
            for callback in list(self.speech_started):
                callback(npc_id)
        elif kind == "speech_ended":
            for callback in list(self.speech_ended):
                callback(npc_id, int_field(message, "turn_id"))
        elif kind == "transcript":
            end_ms = message.get("speech_end_ms", 0.0)
            end_usec = self.usec_at_input_ms(
                float(end_ms) if isinstance(end_ms, (int, float)) else 0.0)
            for callback in list(self.transcript_received):
                callback(int_field(message, "turn_id"), npc_id, str(message.get("text", "")),
                         end_usec)

    def usec_at_input_ms(self, input_ms: float) -> int:
        """When the block holding input time `input_ms` was sent (PackedFloat64Array.bsearch)."""
        index = bisect.bisect_left(self._mark_ms, input_ms)
        if index >= len(self._mark_usec):
            return get_ticks_usec()
        return self._mark_usec[index]

    def _send_json(self, message: dict) -> None:
        self._send([json.dumps(message).encode("utf-8")])

    def _on_block_captured(self, pcm: bytes) -> None:
        if self._npc_id == "":
            return
        samples = len(pcm) >> 1
        header = {"type": "mic_audio", "seq": self._seq, "sample_count": samples}
        self._send([json.dumps(header).encode("utf-8"), pcm])
        self._seq += 1
        self._sent_ms += samples * 1000.0 / MicCapture.OUTPUT_RATE_HZ
        if len(self._mark_ms) >= self.MAX_MARKS:
            self._mark_ms = self._mark_ms[self.MAX_MARKS >> 1:]
            self._mark_usec = self._mark_usec[self.MAX_MARKS >> 1:]
        self._mark_ms.append(self._sent_ms)
        self._mark_usec.append(get_ticks_usec())


# ------------------------------------------------------------------ turn_table.gd

PROTOCOL_VERSION = 1
DEFAULT_PREBUFFER_MS = 240
FATAL_HANDSHAKE_ERRORS = ("bad_token", "unsupported_protocol")
VOICE_TURN_ID_GAP = 1000


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
    blocks_after_stop: int = 0

    def outcome(self) -> str:
        if self.terminal == "done":
            return "cancelled" if self.stopped else "done"
        return self.terminal


class TurnTable:
    """turn_table.gd without the audio: blocks are collected in the TurnState, a `done` ends a
    turn at once (the GDScript lets its player play it out first), and the signals (relayed by
    the autoload) are appended to `events`."""

    def __init__(self, events: list[tuple], send: Callable[[dict], None],
                 is_connected: Callable[[], bool]) -> None:
        self.next_turn_id = 1
        self.finished: dict[int, TurnState] = {}  # test-only: turns after speech_finished
        self._events = events
        self._send = send
        self._is_connected = is_connected
        self._turns: dict[int, TurnState] = {}
        self._npcs: dict[str, dict] = {}
        self._stray_unknown_turn_errors = 0

    def set_npcs(self, npcs: list) -> None:
        self._npcs = {str(n.get("npc_id", "")): n for n in npcs if isinstance(n, dict)}

    def npcs(self) -> dict[str, dict]:
        return self._npcs

    def begin_turn(self, turn_id: int, npc_id: str, options: dict) -> TurnState:
        turn = TurnState(turn_id, npc_id, get_ticks_usec() / 1000.0)
        self.next_turn_id = max(self.next_turn_id, turn_id + 1)  # ids only grow
        for other in list(self._turns.values()):
            if other.npc_id == npc_id:  # (the GDScript also stops the turn of the same player)
                self._interrupt(other, True)
        self._turns[turn.turn_id] = turn
        return turn

    def has_turn(self, turn_id: int) -> bool:
        return turn_id in self._turns

    def turn(self, turn_id: int) -> TurnState | None:
        """Test-only: the turn in flight."""
        return self._turns.get(turn_id)

    def cancel(self, turn_id: int) -> None:
        turn = self._turns.get(turn_id)
        if turn is not None:
            self._interrupt(turn, True)

    def stop_npc(self, npc_id: str) -> None:
        for turn in list(self._turns.values()):
            if turn.npc_id == npc_id and not turn.stopped:
                self._interrupt(turn, False)

    def fail_turn(self, turn_id: int, code: str, message: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is None:
            return
        self._events.append(("error_received", code, message, turn_id))
        turn.terminal = "error"
        self._interrupt(turn, False)

    def handle_subtitle(self, message: dict) -> None:
        turn = self._turns.get(int_field(message, "turn_id"))
        if turn is not None and not turn.stopped:
            turn.subtitles.append(str(message.get("text", "")))
            self._events.append(("subtitle_received", turn.turn_id, turn.npc_id,
                                 str(message.get("text", ""))))

    def handle_audio(self, header: dict, frames: list[bytes]) -> None:
        turn_id = int_field(header, "turn_id")
        turn = self._turns.get(turn_id)
        if turn is None or turn.stopped:
            late = self.finished.get(turn_id) if turn is None else None  # test-only counts
            if late is not None:
                late.blocks_after_terminal += 1
            elif turn is not None:
                turn.blocks_after_stop += 1
            return  # a stale block of a turn that was stopped here
        samples = int_field(header, "sample_count")
        if len(frames) != 2 or len(frames[1]) != 2 * samples:
            self._events.append(("error_received", "bad_message", "malformed audio block",
                                 turn_id))
            return
        seq = int_field(header, "seq")
        turn.lost_blocks += max(seq - turn.next_seq, 0)
        turn.next_seq = seq + 1
        if turn.first_block_ms < 0:
            turn.first_block_ms = get_ticks_usec() / 1000.0
        turn.headers.append(header)  # the GDScript hands the block to the player here
        turn.pcm += frames[1]

    def handle_terminal(self, message: dict, kind: str) -> None:
        turn = self._turns.get(int_field(message, "turn_id"))
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

    def handle_error(self, message: dict) -> None:
        code = str(message.get("code", ""))
        turn_id = int_field(message, "turn_id")
        if turn_id < 0 and code == "unknown_turn" and self._stray_unknown_turn_errors > 0:
            self._stray_unknown_turn_errors -= 1
            return
        self._events.append(("error_received", code, str(message.get("message", "")), turn_id))
        if turn_id >= 0:
            self.handle_terminal(message, "error")

    def connection_lost(self) -> None:
        self._stray_unknown_turn_errors = 0
        for turn in list(self._turns.values()):
            if not turn.terminal:
                turn.terminal = "disconnected"
                self._interrupt(turn, False)

    def _interrupt(self, turn: TurnState, send_cancel: bool) -> None:
        if not turn.stopped:
            turn.stopped = True
            if not turn.terminal and send_cancel and self._is_connected():
                turn.cancel_sent = True
                self._send({"type": "cancel", "turn_id": turn.turn_id})
        if turn.terminal:
            self._finish(turn)

    def _finish(self, turn: TurnState) -> None:
        if turn.turn_id not in self._turns:
            return
        del self._turns[turn.turn_id]
        self.finished[turn.turn_id] = turn
        self._events.append(("speech_finished", turn.turn_id, turn.npc_id, turn.outcome(),
                             turn.timings))


# ------------------------------------------------------------------ npc_voice_client.gd


class NpcVoiceClient:
    """npc_voice_client.gd without the audio: signals are appended to `events`.

    `mix_rate_hz` stands for AudioServer.get_mix_rate() (the rate the microphone frames come
    at); `process()` is one game frame: the autoload's _process and MicCapture's.
    """

    def __init__(self, host: str, port: int, token: str = "", sample_rate_hz: int = 0,
                 mix_rate_hz: int = 48000) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.sample_rate_hz = sample_rate_hz
        self.barge_in = True
        self.connection = ZmtpConnection()
        self.connection.opened.append(self._on_connection_opened)
        self.connection.closed.append(self._on_connection_closed)
        self.connection.protocol_failed.append(self._on_protocol_failed)
        self.connection.message_received.append(self._on_message_received)
        self.welcome: dict = {}
        self.events: list[tuple] = []
        self._turns = TurnTable(self.events, self._send, self.is_connected_to_daemon)
        self._voice_input = VoiceInput(self.connection.send_message, mix_rate_hz)
        self._voice_input.speech_started.append(self._on_player_speech_started)
        self._voice_input.speech_ended.append(self._on_player_speech_ended)
        self._voice_input.transcript_received.append(self._on_transcript_received)
        self._voice_input.failed.append(self._on_voice_input_failed)

    @property
    def finished(self) -> dict[int, TurnState]:
        """Test-only: turns after their speech_finished, by id."""
        return self._turns.finished

    @property
    def microphone(self) -> AudioEffectCapture:
        """Test-only: the capture effect a test pushes microphone frames into."""
        return self._voice_input.mic.capture

    # -- public functions

    def process(self) -> None:
        """One frame: _process() (advance the connection), then MicCapture._process()."""
        self.connection.poll()
        self._voice_input.mic.process()

    def connect_to_daemon(self) -> None:
        self.connection.connect_to(self.host, self.port)

    def disconnect_from_daemon(self) -> None:
        self.connection.close()
        self._on_connection_closed("closed by the game")

    def is_connected_to_daemon(self) -> bool:
        return bool(self.welcome) and self.connection.is_open()

    def say(self, npc_id: str, text: str, options: dict | None = None) -> int:
        options = options or {}
        turn_id = self._turns.next_turn_id + (VOICE_TURN_ID_GAP if self._voice_input.used
                                              else 0)
        turn = self._turns.begin_turn(turn_id, npc_id, options)
        if not self.is_connected_to_daemon():
            # the GDScript defers this call to the next frame
            self._turns.fail_turn(turn.turn_id, "not_connected", "not connected")
            return turn.turn_id
        message = {"type": "say", "turn_id": turn.turn_id, "npc_id": npc_id, "text": text}
        if "profile" in options:
            message["profile"] = str(options["profile"])
        self._send(message)
        return turn.turn_id

    def cancel(self, turn_id: int) -> None:
        self._turns.cancel(turn_id)

    def start_listening(self, npc_id: str, mode: str = "push_to_talk",
                        options: dict | None = None) -> bool:
        if not self.is_connected_to_daemon():
            self.events.append(("error_received", "not_connected", "not connected", -1))
            return False
        return self._voice_input.start(npc_id, mode, options or {})

    def stop_listening(self) -> None:
        self._voice_input.stop()

    def is_listening(self) -> bool:
        return self._voice_input.is_listening()

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

    def _handle_welcome(self, message: dict) -> None:
        self.welcome = message
        npcs = message.get("npcs", [])
        self._turns.set_npcs(npcs if isinstance(npcs, list) else [])
        self.events.append(("connected", message))

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
        self._voice_input.connection_lost()
        self._turns.connection_lost()
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
            self._turns.handle_subtitle(message)
        elif kind == "audio_block":
            self._turns.handle_audio(message, frames)
        elif kind in ("done", "cancelled"):
            self._turns.handle_terminal(message, kind)
        elif kind == "error":
            self._turns.handle_error(message)
            code = str(message.get("code", ""))
            if int_field(message, "turn_id") < 0 and code in FATAL_HANDSHAKE_ERRORS:
                self.connection.close()
        elif kind in ("speech_started", "speech_ended", "transcript"):
            self._voice_input.handle_message(message)

    def _on_player_speech_started(self, npc_id: str) -> None:
        if self.barge_in:
            self._turns.stop_npc(npc_id)  # heard at once; the daemon cancels a running turn
        self.events.append(("player_speech_started", npc_id))

    def _on_player_speech_ended(self, npc_id: str, turn_id: int) -> None:
        self._turns.next_turn_id = max(self._turns.next_turn_id, turn_id + 1)
        self.events.append(("player_speech_ended", npc_id, turn_id))

    def _on_transcript_received(self, turn_id: int, npc_id: str, text: str,
                                end_usec: int) -> None:
        if turn_id >= 0 and not self._turns.has_turn(turn_id):
            turn = self._turns.begin_turn(turn_id, npc_id, self._voice_input.turn_options())
            turn.sent_ms = min(end_usec / 1000.0, turn.sent_ms)  # TTFA from the end of speech
        self.events.append(("transcript_received", turn_id, npc_id, text))

    def _on_voice_input_failed(self, code: str, message: str) -> None:
        self.events.append(("error_received", code, message, -1))
