"""The raw-socket twin of the Godot addon's ZMTP client against the real daemon.

tests/raw_zmtp_client.py mirrors the addon's GDScript function by function; here it talks to a
real `npc-voice serve` process (heartbeats every 200 ms, so PING/PONG is exercised in seconds):
handshake bytes, long frames both ways, multipart audio, heartbeats, cancel, errors, torn
connections, and a daemon restart the client must ride out with backoff. Fake peers (plain
sockets in threads) speak HTTP, the wrong mechanism or socket type, ERROR, or nothing at all.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.launcher import DaemonProcess, free_tcp_port
from tests import raw_zmtp_client as raw
from tests.raw_zmtp_client import NpcVoiceClient, State, ZmtpConnection
from tests.support.configs import write_config

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "bridge_protocol" / "PROTOCOL.md"
HEARTBEAT_IVL_MS = 200
HEARTBEAT_TIMEOUT_MS = 1000
LONG_LINE = ("Good morning, master smith! I have walked for three days from the northern "
             "villages with this old sword, and its edge is chipped. Could you look at it "
             "and tell me whether it can still be saved, and what it would cost me? ") * 2


class DaemonHolder:
    """The module's daemon, restartable on the same port (the reconnect test)."""

    def __init__(self, config_path: Path, log_dir: Path) -> None:
        self.config_path = config_path
        self.log_dir = log_dir
        self.port = free_tcp_port()
        self.starts = 0
        self.process: DaemonProcess | None = None

    def start(self) -> None:
        self.starts += 1
        self.process = DaemonProcess(self.config_path, port=self.port,
                                     log_path=self.log_dir / f"daemon-{self.starts}.log").start()

    def stop(self) -> int | None:
        assert self.process is not None
        return self.process.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonHolder]:
    directory = tmp_path_factory.mktemp("raw-zmtp")
    config = directory / "heartbeat.toml"
    write_config(config, server={"heartbeat_ivl_ms": HEARTBEAT_IVL_MS,
                                 "heartbeat_timeout_ms": HEARTBEAT_TIMEOUT_MS},
                 llm={"max_reply_tokens": 24})
    holder = DaemonHolder(config, directory)
    holder.start()
    yield holder
    code = holder.stop()
    assert holder.process is not None
    assert code == 0, f"daemon exited with {code}:\n{holder.process.log_text()[-3000:]}"


def connected_client(daemon: DaemonHolder) -> NpcVoiceClient:
    client = NpcVoiceClient("127.0.0.1", daemon.port)
    client.connect_to_daemon()
    assert client.run_until(client.is_connected_to_daemon, 15), client.events
    return client


def finish(client: NpcVoiceClient, turn_id: int, timeout_s: float = 90.0) -> raw.TurnState:
    assert client.run_until(lambda: turn_id in client.finished, timeout_s), client.events[-5:]
    return client.finished[turn_id]


def spec_hex(label: str) -> bytes:
    """The byte string PROTOCOL.md shows right after `label`, e.g. the DEALER READY."""
    text = PROTOCOL_MD.read_text("utf-8")
    block = text[text.index(label):]
    match = re.search(r"```\s*\n((?:[0-9a-f]{2} )+[0-9a-f]{2})", block)
    assert match, label
    return bytes.fromhex(match.group(1))


# ------------------------------------------------------------------ codec (no daemon)


def test_codec_bytes_are_the_ones_protocol_md_shows() -> None:
    assert raw.greeting().hex() == "ff" + "00" * 8 + "7f0301" + b"NULL".hex() + "00" * 48
    assert len(raw.greeting()) == 64 and raw.check_greeting(raw.greeting()) == ""
    assert raw.ready_command("DEALER") == spec_hex("The client's READY carries")
    assert len(raw.ready_command("DEALER")) == 30
    assert raw.pong_for_ping(b"\x00\x0a") == bytes.fromhex("04 05 04 50 4f 4e 47")
    assert raw.pong_for_ping(b"\x00\x0actx") == bytes.fromhex("04 08 04") + b"PONGctx"
    assert raw.encode_frame(b"x" * 255)[:2] == b"\x00\xff"
    assert raw.encode_frame(b"x" * 256, more=True)[:9] == b"\x03" + (256).to_bytes(8, "big")


def test_frame_decoder_handles_split_long_and_invalid_input() -> None:
    stream = raw.encode_message([b"h" * 10, b"p" * 3000]) + raw.encode_command("PING", b"\0\1")
    frames, pos = [], 0
    for end in range(1, len(stream) + 1):  # bytes trickling in one at a time
        frame = raw.decode_frame(stream[:end], pos, 1 << 20)
        if frame is not None:
            frames.append(frame)
            pos += frame.wire_size
    assert [(f.flags, len(f.body)) for f in frames] == [(0x01, 10), (0x02, 3000), (0x04, 7)]
    assert raw.decode_frame(b"\x08\x00", 0, 10).error  # reserved flag bit
    assert raw.decode_frame(b"\x02\x80" + bytes(7), 0, 1 << 20).error  # size >= 2^63
    assert raw.decode_frame(b"\x02" + (5000).to_bytes(8, "big"), 0, 4096).error  # over the cap
    router_ready = raw.parse_command(raw.decode_frame(bytes.fromhex(
        "0429055245414459 0b536f636b65742d54797065 00000006 524f55544552"
        " 084964656e74697479 00000000"), 0, 64).body)
    assert raw.parse_properties(router_ready.data) == {"Socket-Type": b"ROUTER", "Identity": b""}
    assert raw.check_greeting(b"HTTP/1.1 400 Bad Request\r\n").startswith("the peer is not")


def test_backoff_starts_near_100_ms_and_doubles_to_2_s() -> None:
    connection = ZmtpConnection()
    for attempt in range(10):
        base = min(2000, 100 * 2 ** attempt)
        delays = [connection._backoff_delay_ms(attempt) for _ in range(50)]
        assert all(0.75 * base - 1 <= d <= base for d in delays), (attempt, delays)
        assert len(set(delays)) > 1, "no jitter"


# ------------------------------------------------------------------ against the daemon


def test_handshake_bytes_and_welcome(daemon: DaemonHolder) -> None:
    client = connected_client(daemon)
    peer = client.connection.peer_greeting
    assert peer[0] == 0xFF and peer[9] & 1 and peer[10] == 3 and peer[11] >= 1
    assert peer[12:32] == b"NULL" + bytes(16)
    assert client.connection.peer_ready == {"Socket-Type": b"ROUTER", "Identity": b""}
    assert client.connection.frames_sent[0] == 0x04  # our READY, then the hello message
    welcome = client.welcome
    assert welcome["protocol"] == 1 and welcome["sample_format"] == "s16le"
    assert welcome["channels"] == 1 and welcome["limits"]["max_text_chars"] >= len(LONG_LINE)
    npcs = {npc["npc_id"]: npc for npc in welcome["npcs"]}
    assert npcs["blacksmith"]["sample_rate_hz"] == 22050
    assert npcs["blacksmith"]["prebuffer_ms"] > 0
    client.disconnect_from_daemon()


def test_long_say_and_streamed_multipart_audio(daemon: DaemonHolder) -> None:
    client = connected_client(daemon)
    turn_id = client.say("blacksmith", LONG_LINE)
    say_bytes = len(json.dumps({"type": "say", "turn_id": turn_id, "npc_id": "blacksmith",
                                "text": LONG_LINE}).encode())
    assert say_bytes > 255 and client.connection.frames_sent[-1] == 0x02  # long, last
    turn = finish(client, turn_id)
    done = turn.terminal_message
    assert turn.outcome() == "done", turn.terminal_message
    assert [h["seq"] for h in turn.headers] == list(range(done["block_count"]))
    assert [h["final"] for h in turn.headers][-1] is True
    assert not any(h["final"] for h in turn.headers[:-1])
    samples = sum(h["sample_count"] for h in turn.headers)
    assert samples == done["sample_count"] and len(turn.pcm) == 2 * samples
    assert turn.lost_blocks == 0 and turn.subtitles
    assert " ".join(turn.subtitles) == done["reply_text"]
    # Audio is [header (MORE), PCM (last)]; full PCM blocks are over 255 bytes: long frames.
    data = [(f, size) for f, size in client.connection.frames_received if not f & 0x04]
    pcm = [frame for header, frame in zip(data, data[1:], strict=False) if header[0] & 0x01]
    assert len(pcm) == done["block_count"]
    assert [size for _, size in pcm] == [2 * h["sample_count"] for h in turn.headers]
    assert all(flags == (0x02 if size > 255 else 0x00) for flags, size in pcm)
    assert sum(size > 255 for _, size in pcm) >= done["block_count"] - 2
    client.disconnect_from_daemon()


def test_pings_are_answered_and_keep_the_connection_alive(daemon: DaemonHolder) -> None:
    client = connected_client(daemon)
    started = time.monotonic()
    client.run_until(lambda: False, timeout_s=2.5 * HEARTBEAT_TIMEOUT_MS / 1000)
    pings = [c for c in client.connection.commands_received if c.name == "PING"]
    assert len(pings) >= 5, f"{len(pings)} PINGs in {time.monotonic() - started:.1f} s"
    assert int.from_bytes(pings[0].data[:2], "big") == HEARTBEAT_TIMEOUT_MS // 100  # TTL, ds
    assert client.is_connected_to_daemon() and ("disconnected" not in
                                                [e[0] for e in client.events])
    client.connection.send_ping(b"ctx-42")  # our own PING: the daemon echoes the context
    assert client.run_until(lambda: any(
        c.name == "PONG" for c in client.connection.commands_received), 5)
    pong = next(c for c in client.connection.commands_received if c.name == "PONG")
    assert pong.data == b"ctx-42"
    turn = finish(client, client.say("innkeeper", "Hello!"))
    assert turn.outcome() == "done"
    client.disconnect_from_daemon()


def test_a_client_that_never_answers_pings_is_dropped(daemon: DaemonHolder) -> None:
    client = NpcVoiceClient("127.0.0.1", daemon.port)
    client.connection.answer_pings = False
    client.connection.heartbeat_ivl_ms = 0  # and never sends anything itself
    client.connection.heartbeat_timeout_ms = 0
    client.connect_to_daemon()
    assert client.run_until(client.is_connected_to_daemon, 15)
    assert client.run_until(lambda: any(e[0] == "disconnected" for e in client.events),
                            timeout_s=5 * HEARTBEAT_TIMEOUT_MS / 1000), client.events
    assert client.connection.state in (State.WAITING, State.CONNECTING, State.HANDSHAKING)
    client.connection.close()


def test_cancel_stops_a_turn_and_nothing_of_it_follows(daemon: DaemonHolder) -> None:
    client = connected_client(daemon)
    turn_id = client.say("oracle", "Tell me a long story about the old temple.")
    assert client.run_until(lambda: turn_id in client.finished
                            or bool(client._turns.turn(turn_id).headers), 90), client.events
    client.cancel(turn_id)
    turn = finish(client, turn_id)
    assert turn.outcome() == "cancelled"
    assert turn.terminal_message.get("reason") in ("cancel", None)  # None: done crossed it
    client.run_until(lambda: False, timeout_s=0.5)
    assert turn.blocks_after_terminal == 0
    assert not [e for e in client.events if e[0] == "error_received"], client.events
    client.disconnect_from_daemon()


def test_errors_end_their_turn(daemon: DaemonHolder) -> None:
    offline = NpcVoiceClient("127.0.0.1", daemon.port)
    offline_turn = offline.say("blacksmith", "Anyone there?")
    assert offline.finished[offline_turn].outcome() == "error"
    assert ("error_received", "not_connected", "not connected", offline_turn) in offline.events
    client = connected_client(daemon)
    turn_id = client.say("nobody", "Hello?")
    turn = finish(client, turn_id, 10)
    assert turn.outcome() == "error"
    assert [e[1] for e in client.events if e[0] == "error_received"] == ["unknown_npc"]
    client.disconnect_from_daemon()


def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(65536)
        assert chunk, f"daemon closed the session before {marker!r}"
        received += chunk
    return received


def _raw_session(port: int) -> socket.socket:
    """A blocking socket past greeting, READY and hello/welcome, built from the codec."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(raw.greeting() + raw.ready_command("DEALER"))
    _recv_until(sock, b"ROUTER")  # messages only after the peer's READY (PROTOCOL.md 2.3)
    sock.sendall(raw.encode_message([json.dumps({"type": "hello", "protocol": 1}).encode()]))
    _recv_until(sock, b"welcome")
    return sock


def test_a_message_sent_before_the_daemon_ready_closes_the_connection(
        daemon: DaemonHolder) -> None:
    """Why the client sends nothing before OPEN: libzmq drops such a peer without a word."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    hello = raw.encode_message([json.dumps({"type": "hello", "protocol": 1}).encode()])
    sock.sendall(raw.greeting() + raw.ready_command("DEALER") + hello)  # one segment
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert b"welcome" not in received


def test_torn_connections_mid_frame_leave_the_daemon_serving(daemon: DaemonHolder) -> None:
    half_frame = _raw_session(daemon.port)
    half_frame.sendall(b"\x00\x40" + b'{"type": "say"')  # 64-byte frame, 14 bytes of it
    half_frame.close()
    half_long = _raw_session(daemon.port)
    half_long.sendall(b"\x02" + (100_000).to_bytes(8, "big") + b"x" * 500)
    half_long.close()
    absurd = _raw_session(daemon.port)  # a 2^62-byte frame: libzmq hangs up at once
    absurd.sendall(b"\x02" + (1 << 62).to_bytes(8, "big") + b"x" * 100)
    while absurd.recv(65536):  # PINGs may come first; then EOF (a timeout fails the test)
        pass
    absurd.close()
    half_greeting = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    half_greeting.sendall(raw.greeting()[:30])
    half_greeting.close()
    mid_turn = _raw_session(daemon.port)
    mid_turn.sendall(raw.encode_message([json.dumps(
        {"type": "say", "turn_id": 1, "npc_id": "blacksmith", "text": "Hi!"}).encode()]))
    mid_turn.recv(10)  # the reply has started
    mid_turn.sendall(b"\x00\x20" + b"{")
    mid_turn.close()
    client = connected_client(daemon)
    turn = finish(client, client.say("blacksmith", "Are you still there?"))
    assert turn.outcome() == "done"
    assert daemon.process is not None and daemon.process.process is not None
    assert daemon.process.process.poll() is None
    client.disconnect_from_daemon()


def test_reconnects_after_a_daemon_restart(daemon: DaemonHolder) -> None:
    client = connected_client(daemon)
    client.connection.connect_timeout_ms = 1000
    in_flight = client.say("oracle", "What will tomorrow bring?")
    assert daemon.stop() == 0
    assert client.run_until(lambda: in_flight in client.finished, 10), client.events
    assert client.finished[in_flight].outcome() in ("cancelled", "disconnected")
    assert client.run_until(lambda: any(e[0] == "disconnected" for e in client.events), 10)
    client.run_until(lambda: False, timeout_s=1.5)  # refused attempts meanwhile
    daemon.start()  # same port; models load again
    assert client.run_until(client.is_connected_to_daemon, 30), client.events[-5:]
    delays = client.connection.retry_delays_ms
    assert len(delays) >= 3 and delays[0] <= 100 and max(delays) <= 2000, delays
    assert delays[2] > delays[0], delays
    assert [e[0] for e in client.events].count("connected") == 2
    turn = finish(client, client.say("blacksmith", "Back again!"))
    assert turn.outcome() == "done"
    client.disconnect_from_daemon()


# ------------------------------------------------------------------ peers that are not the daemon


class FakePeer:
    """A TCP server that answers every connection with fixed bytes (then stays silent)."""

    def __init__(self, reply: bytes, wait_for_bytes: int = 1) -> None:
        self.reply = reply
        self.wait_for_bytes = wait_for_bytes
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(conn)
            conn.settimeout(2)
            try:
                if self.wait_for_bytes:
                    conn.recv(self.wait_for_bytes)
                if self.reply:
                    conn.sendall(self.reply)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._open:
            conn.close()
        self._server.close()


def _fast_connection(port: int) -> ZmtpConnection:
    connection = ZmtpConnection()
    connection.backoff_min_ms = 10
    connection.backoff_max_ms = 40
    connection.connect_timeout_ms = 300
    connection.connect_to("127.0.0.1", port)
    return connection


def _poll_for(connection: ZmtpConnection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.poll()
        time.sleep(0.002)


ROUTER_GREETING = bytes.fromhex("ff00000000000000017f0301") + b"NULL" + bytes(48)


@pytest.mark.parametrize(("reply", "expected"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a ZeroMQ socket"),
    (ROUTER_GREETING[:12] + b"PLAIN" + bytes(47), "mechanism PLAIN"),
    (ROUTER_GREETING + raw.ready_command("PUB"), "PUB socket, expected ROUTER"),
    (ROUTER_GREETING + raw.encode_frame(b"hello"), "before the handshake"),
    (ROUTER_GREETING + b"\x04\x02\x05R", "malformed command"),
], ids=["http", "plain-mechanism", "pub-socket", "message-before-ready", "bad-command"])
def test_a_peer_that_is_not_a_zmtp_router_is_reported_once(reply: bytes, expected: str) -> None:
    peer = FakePeer(reply)
    connection = _fast_connection(peer.port)
    reports: list[tuple[str, bool]] = []
    connection.protocol_failed.append(lambda reason, fatal: reports.append((reason, fatal)))
    try:
        _poll_for(connection, 0.5)
    finally:
        connection.close()
        peer.close()
    assert peer.connections >= 2, "the client should keep retrying with backoff"
    assert len(reports) == 1 and expected in reports[0][0] and not reports[0][1], reports


def test_an_error_command_is_fatal_and_stops_retrying() -> None:
    error = raw.encode_command("ERROR", b"\x0eaccess denied!")
    peer = FakePeer(ROUTER_GREETING + error)
    connection = _fast_connection(peer.port)
    reports: list[tuple[str, bool]] = []
    connection.protocol_failed.append(lambda reason, fatal: reports.append((reason, fatal)))
    try:
        _poll_for(connection, 0.5)
        state = connection.state
    finally:
        peer.close()
    assert state == State.FAILED and peer.connections == 1
    assert reports == [("the daemon refused the connection: access denied!", True)]


def test_a_silent_peer_times_out_and_a_closed_port_is_retried() -> None:
    silent = FakePeer(b"", wait_for_bytes=0)
    connection = _fast_connection(silent.port)
    try:
        _poll_for(connection, 0.2)
        assert connection.state == State.HANDSHAKING  # greeting sent, nothing back yet
        _poll_for(connection, 0.3)
        assert connection.attempt >= 1 and silent.connections >= 1
    finally:
        connection.close()
        silent.close()
    connection = ZmtpConnection()
    connection.backoff_min_ms = 10
    connection.connect_to("127.0.0.1", free_tcp_port())  # nobody listens there
    _poll_for(connection, 1.0)
    connection.close()
    delays = connection.retry_delays_ms
    assert len(delays) >= 4, delays
    assert all(later >= 1.5 * earlier - 1 for earlier, later in zip(delays, delays[1:],
                                                                    strict=False)), delays
