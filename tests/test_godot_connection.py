"""The addon's ZMTP connection in a real headless Godot 4 against peers that are not the daemon.

Small Python TCP servers (a thread per connection) play the peer while the real `NpcVoice`
autoload connects to them (scenario godot_addon/test/e2e/fake_peers.gd; back-off, timeouts and
heartbeats shortened there, white box): a peer that is not a ZMTP ROUTER (HTTP, another
security mechanism, another socket type, a message before READY, a malformed command) is
reported once while the addon keeps retrying; an ERROR command is fatal and stops the retries;
a silent peer times out and is retried; a closed port is retried with a doubling back-off. A
scripted ROUTER checks what the addon writes: its greeting and READY at once and nothing more
before the ROUTER's READY, then `hello`; it trickles its bytes in pieces (a long frame cut
inside its size, a PING between the two frames of a message) and receives lines with each
`priority` (only "ambient" and "high" on the wire), the `typing` messages of a line typed key
by key into a LineEdit (debounced: the text so far after each pause, never the same twice, none
for the line said), a `listen_start` with its options and contiguous `mic_audio` blocks; then
it falls silent and the addon pings it, then drops it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from daemon.launcher import free_tcp_port
from tests.support.godot import GodotResult, godot, run_scenario  # noqa: F401 (fixture)

PAUSE_S = 0.03  # between the pieces a peer writes: Godot likely reads each on its own
CLIENT_GREETING = bytes.fromhex("ff 00 00 00 00 00 00 00 00 7f 03 01") + b"NULL" + bytes(48)
ROUTER_GREETING = bytes.fromhex("ff 00 00 00 00 00 00 00 01 7f 03 01") + b"NULL" + bytes(48)
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
MIC_BLOCK_SAMPLES = 1600  # 100 ms at 16 kHz (npc_voice/voice/block_ms)
PCM = bytes(range(256)) * 8 + bytes(156)  # 2204 bytes: a long frame, like 50 ms at 22050 Hz
LINE_NPCS = ("smith", "guard", "baker", "bard")  # fake_peers.gd LINES


def frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    """A ZMTP frame: short form up to 255 bytes, long above (PROTOCOL.md 2.2)."""
    flags = (MORE if more else 0) | (COMMAND if command else 0)
    if len(body) > 255:
        return bytes([flags | LONG]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


def command(name: str, data: bytes = b"") -> bytes:
    return frame(bytes([len(name)]) + name.encode() + data, command=True)


def ready(socket_type: str, **properties: bytes) -> bytes:
    pairs = {"Socket-Type": socket_type.encode(), **properties}
    return command("READY", b"".join(bytes([len(name)]) + name.encode()
                                     + len(value).to_bytes(4, "big") + value
                                     for name, value in pairs.items()))


ROUTER_READY = ready("ROUTER", Identity=b"")


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_frame(conn: socket.socket) -> tuple[int, bytes]:
    flags, size = recv_exactly(conn, 2)
    if flags & LONG:
        size = int.from_bytes(bytes([size]) + recv_exactly(conn, 7), "big")
    return flags, recv_exactly(conn, size)


def send_in_pieces(conn: socket.socket, data: bytes, cuts: list[int]) -> None:
    """Writes `data` cut at the offsets `cuts`, pausing between the pieces."""
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        conn.sendall(data[start:end])
        time.sleep(PAUSE_S)


class FakePeer:
    """A TCP server on 127.0.0.1; `serve(conn, index)` handles each connection in a thread."""

    def __init__(self, serve: Callable[[socket.socket, int], None]) -> None:
        self.serve = serve
        self.connections = 0
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            conn.settimeout(60)
            thread = threading.Thread(target=self._run, args=(conn, self.connections),
                                      daemon=True)
            self.connections += 1
            self.threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket, index: int) -> None:
        try:
            self.serve(conn, index)
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            self.errors.append(f"connection {index}: {exc!r}")
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._server.close()
        for thread in self.threads:
            thread.join(10)


def drain(conn: socket.socket) -> None:
    """Reads until the client closes the connection."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass  # a reset is a close too


def reply_after_first_byte(reply: bytes) -> Callable[[socket.socket, int], None]:
    def serve(conn: socket.socket, _index: int) -> None:
        conn.recv(1)
        conn.sendall(reply)
        drain(conn)
    return serve


NOT_ROUTERS = {  # peer: (what it answers, what the report must say)
    "http": (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a ZeroMQ socket"),
    "plain": (ROUTER_GREETING[:12] + b"PLAIN" + bytes(47), "mechanism PLAIN"),
    "pub": (ROUTER_GREETING + ready("PUB"), "PUB socket, expected ROUTER"),
    "early_message": (ROUTER_GREETING + frame(b"hello"), "before the handshake"),
    "bad_command": (ROUTER_GREETING + b"\x04\x02\x05R", "malformed command"),
}


@dataclass
class SilentPeer:
    """Reads what the client writes and never answers."""

    received: dict[int, bytes] = field(default_factory=dict)

    def serve(self, conn: socket.socket, index: int) -> None:
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except OSError:
            pass
        self.received[index] = data


@dataclass
class ScriptedRouter:
    """A ROUTER whose first connection runs a script (see the module docstring); it closes
    later ones at once."""

    handshake: bytes = b""
    early: bytes = b""
    messages: list[list[bytes]] = field(default_factory=list)
    commands: list[tuple[str, bytes]] = field(default_factory=list)
    silent_commands: list[str] = field(default_factory=list)

    def serve(self, conn: socket.socket, index: int) -> None:
        if index > 0:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handshake = recv_exactly(conn, len(CLIENT_GREETING) + 30)  # greeting + READY
        send_in_pieces(conn, ROUTER_GREETING + ROUTER_READY[:-1], [1, 10, 40, 64, 80])
        conn.setblocking(False)
        try:
            self.early = conn.recv(65536)  # nothing may come before our READY is complete
        except BlockingIOError:
            pass
        conn.settimeout(60)
        conn.sendall(ROUTER_READY[-1:])
        self._read_until(conn, "hello")
        npcs = [{"npc_id": npc, "display_name": npc.title(), "profile": "fast",
                 "sample_rate_hz": 22050, "prebuffer_ms": 240}
                for npc in LINE_NPCS]
        welcome = frame(json.dumps({
            "type": "welcome", "protocol": 1, "daemon": "fake", "sample_format": "s16le",
            "channels": 1, "sample_rate_hz": None, "npcs": npcs, "limits": {
                "max_text_chars": 500, "max_message_bytes": 65536, "max_turns_in_flight": 8},
        }).encode())
        send_in_pieces(conn, welcome, [1, 4, 9, 30])  # cut inside the u64 size
        header = json.dumps({"type": "audio_block", "turn_id": 0, "seq": 0,
                             "sample_rate_hz": 22050, "sample_count": len(PCM) // 2,
                             "chunk_index": 0, "final": True}).encode()
        message = frame(header, more=True)
        ping = command("PING", (20).to_bytes(2, "big") + b"ctx-42")
        pcm = frame(PCM)
        send_in_pieces(conn, message + ping + pcm, [
            10, len(message), len(message) + 5, len(message) + len(ping) + 3,
            len(message) + len(ping) + 1000])
        self._read_until(conn, "listen_stop")
        conn.settimeout(30)
        while True:  # silent: the client must ping, then give up
            try:
                flags, body = read_frame(conn)
            except (EOFError, OSError):
                return
            if flags & COMMAND:
                self.silent_commands.append(body[1:1 + body[0]].decode())

    def _read_until(self, conn: socket.socket, last_type: str) -> None:
        """Reads messages (answering PINGs) up to one of type `last_type`."""
        parts: list[bytes] = []
        while True:
            flags, body = read_frame(conn)
            if flags & COMMAND:
                name, data = body[1:1 + body[0]].decode(), body[1 + body[0]:]
                self.commands.append((name, data))
                if name == "PING":
                    conn.sendall(command("PONG", data[2:]))
                continue
            parts.append(body)
            if flags & MORE:
                continue
            self.messages.append(parts)
            parts = []
            if json.loads(self.messages[-1][0]).get("type") == last_type:
                return

    def json_messages(self) -> list[dict]:
        return [json.loads(parts[0]) for parts in self.messages]


@dataclass
class Peers:
    """The scenario's run, and the peers it talked to."""

    run: GodotResult
    not_routers: dict[str, FakePeer]
    refusing: FakePeer
    silent: SilentPeer
    silent_peer: FakePeer
    router: ScriptedRouter
    router_peer: FakePeer

    def peer(self, name: str) -> dict:
        return self.run.one("peer", name=name)


@pytest.fixture(scope="module")
def peers(godot: str) -> Peers:  # noqa: F811
    not_routers = {name: FakePeer(reply_after_first_byte(reply))
                   for name, (reply, _) in NOT_ROUTERS.items()}
    error = command("ERROR", bytes([14]) + b"access denied!")
    refusing = FakePeer(reply_after_first_byte(ROUTER_GREETING + error))
    silent = SilentPeer()
    silent_peer = FakePeer(silent.serve)
    router = ScriptedRouter()
    router_peer = FakePeer(router.serve)
    everyone = [*not_routers.values(), refusing, silent_peer, router_peer]
    try:
        run = run_scenario(godot, "fake_peers", 0, closed=free_tcp_port(),
                           error=refusing.port, silent=silent_peer.port,
                           router=router_peer.port,
                           **{name: peer.port for name, peer in not_routers.items()})
    finally:
        for peer in everyone:
            peer.close()
    return Peers(run, not_routers, refusing, silent, silent_peer, router, router_peer)


def test_the_peers_ran_their_scripts(peers: Peers) -> None:
    peers.run.assert_clean()
    everyone = [*peers.not_routers.values(), peers.refusing, peers.silent_peer, peers.router_peer]
    assert [error for peer in everyone for error in peer.errors] == []


def test_a_line_said_offline_ends_at_once(peers: Peers) -> None:
    peers.run.assert_clean()
    turn_id = peers.run.one("case", name="offline")["turn_id"]
    error = peers.run.one("error_received", turn_id=turn_id)
    assert error["code"] == "not_connected", error
    assert peers.run.one("speech_finished", turn_id=turn_id)["outcome"] == "error"


@pytest.mark.parametrize("name", list(NOT_ROUTERS))
def test_a_peer_that_is_not_a_zmtp_router_is_reported_once(peers: Peers, name: str) -> None:
    peers.run.assert_clean()
    report = peers.peer(name)
    assert report["attempts"] >= 3 and peers.not_routers[name].connections >= 3, report
    expected = NOT_ROUTERS[name][1]
    assert len(report["errors"]) == 1 and expected in report["errors"][0], report
    assert report["errors"][0].startswith("protocol_error: "), report


def test_an_error_command_is_fatal_and_stops_retrying(peers: Peers) -> None:
    peers.run.assert_clean()
    report = peers.peer("error")
    assert report["failed"] and peers.refusing.connections == 1, report
    assert report["errors"] == [
        "protocol_error: the daemon refused the connection: access denied!"], report


def test_a_silent_peer_times_out_and_is_retried(peers: Peers) -> None:
    peers.run.assert_clean()
    assert peers.run.of("handshaking")
    report = peers.peer("silent")
    assert report["attempts"] >= 2 and peers.silent_peer.connections >= 2, report
    assert report["errors"] == [], report  # a slow daemon is no protocol error
    # The whole greeting and READY go out at once, without waiting for the peer's.
    assert set(peers.silent.received.values()) == {CLIENT_GREETING + ready("DEALER")}


def test_a_closed_port_is_retried_with_a_doubling_back_off(peers: Peers) -> None:
    peers.run.assert_clean()
    report = peers.peer("closed")
    delays = report["delays_ms"]
    assert len(delays) == 5 and report["errors"] == [], report
    for attempt, (shortest, longest) in enumerate(delays):  # the delay is in this range
        base = 10 * 2 ** attempt  # 10 ms (the scenario's minimum) doubling, 25 % jitter
        assert shortest <= base and longest >= 0.75 * base - 1, (attempt, delays)


def test_the_handshake_waits_for_the_routers_ready(peers: Peers) -> None:
    peers.run.assert_clean()
    router = peers.router
    assert router.handshake == CLIENT_GREETING + ready("DEALER")
    assert router.early == b""
    hello = router.json_messages()[0]
    assert hello["type"] == "hello" and hello["protocol"] == 1, hello
    assert hello["client"].startswith("godot-"), hello
    assert hello["timing"] is True, hello  # npc_voice/audio/lip_sync is on by default


def test_trickled_bytes_and_a_ping_inside_a_message(peers: Peers) -> None:
    peers.run.assert_clean()
    sizes = peers.run.one("router_messages")["frame_sizes"]
    assert len(sizes) == 2 and sizes[1] == [sizes[1][0], len(PCM)] and sizes[0][0] > 255, sizes
    assert peers.run.of("connected") and peers.run.of("error_received", code="bad_message") == []
    assert ("PONG", b"ctx-42") in peers.router.commands


def test_priorities_on_the_wire(peers: Peers) -> None:
    """"ambient" and "high" are sent; "normal" (said explicitly to the guard) and no priority
    (the baker) are not: a daemon older than priorities gets the messages it knows."""
    peers.run.assert_clean()
    said = peers.run.one("said")
    says = {m["turn_id"]: m for m in peers.router.json_messages()
            if m["type"] == "say" and m["text"] == "Hello."}
    assert sorted(says) == sorted(said[npc] for npc in LINE_NPCS), says
    assert {npc: says[said[npc]].get("priority", "-") for npc in LINE_NPCS} == {
        "smith": "ambient", "guard": "-", "baker": "-", "bard": "high"}


TYPED_LINE = "Where is the smith?"  # fake_peers.gd _typing()


def test_a_line_typed_into_a_line_edit_on_the_wire(peers: Peers) -> None:
    """Typed "Where is" at once, then a key and Backspace (the same text), then " the" a key a
    frame, then " smith?" and Enter: the text so far goes out after each pause, nothing for an
    unchanged text, and the line said is sent once, as a say, with no typing of it."""
    peers.run.assert_clean()
    messages = peers.router.json_messages()
    typing = [i for i, m in enumerate(messages) if m["type"] == "typing"]
    texts = [messages[i]["text"] for i in typing]
    assert all(messages[i] == {"type": "typing", "npc_id": "smith", "text": messages[i]["text"]}
               for i in typing), [messages[i] for i in typing]
    # One message per pause: the first pause came after "Where is" (typed in one frame), the
    # second after " the" (a key a frame: a slow frame may have let a prefix go out too).
    assert texts[0] == "Where is" and texts[-1] == "Where is the", texts
    assert all(TYPED_LINE.startswith(t) and t != TYPED_LINE for t in texts), texts
    assert all(a != b for a, b in zip(texts, texts[1:], strict=False)), texts
    assert "Where isx" not in texts and texts.count("Where is") == 1, texts
    unchanged = peers.run.one("unchanged")
    assert unchanged["text"] == "Where is" and unchanged["pending"] is False, unchanged
    said = peers.run.one("typing_said")
    assert said["text"] == TYPED_LINE and peers.run.one("submitted")["pending"] is False
    say = next(i for i, m in enumerate(messages) if m["type"] == "say" and m["text"] == TYPED_LINE)
    assert messages[say]["turn_id"] == said["turn_id"] and say > typing[-1], messages[say]
    assert [m for m in messages[say:] if m["type"] == "typing"] == []


def test_the_microphone_stream_on_the_wire(peers: Peers) -> None:
    peers.run.assert_clean()
    messages = peers.router.json_messages()
    start = next(i for i, m in enumerate(messages) if m["type"] == "listen_start")
    assert messages[start] == {"type": "listen_start", "npc_id": "smith", "mode": "open_mic",
                               "sample_rate_hz": 16000, "profile": "fast", "priority": "high"}
    assert messages[-1] == {"type": "listen_stop"}
    blocks = peers.router.messages[start + 1:-1]
    headers = [json.loads(parts[0]) for parts in blocks]
    assert len(blocks) >= 3 and all(h["type"] == "mic_audio" for h in headers), headers
    assert [h["seq"] for h in headers] == list(range(len(blocks)))
    assert all(len(parts) == 2 and len(parts[1]) == 2 * h["sample_count"]
               for parts, h in zip(blocks, headers, strict=True)), headers
    counts = [h["sample_count"] for h in headers]
    assert set(counts[:-1]) == {MIC_BLOCK_SAMPLES} and 0 < counts[-1] <= MIC_BLOCK_SAMPLES


def test_a_silent_daemon_is_pinged_then_dropped(peers: Peers) -> None:
    peers.run.assert_clean()
    assert "PING" in peers.router.silent_commands, peers.router.silent_commands
    router_events = peers.run.events[peers.run.index(peers.run.one("said")):]
    dropped = [e for e in router_events if e["event"] == "disconnected"]
    assert len(dropped) == 1 and "no data from the daemon" in dropped[0]["reason"], dropped
    said = peers.run.one("said")
    for npc in LINE_NPCS:
        finished = peers.run.one("speech_finished", turn_id=said[npc])
        assert finished["outcome"] == "disconnected", finished
    assert peers.peer("router")["errors"] == []
