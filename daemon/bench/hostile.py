"""Hostile and careless clients for the reliability suite (`daemon.bench.reliability`).

Each function plays one kind of client against a running daemon and returns what it
counted. None of them asserts: the suite judges the daemon by what its good clients
experience and by its memory and descriptors afterwards.

Fuzz cases are generated with hypothesis (structured JSON and raw bytes) and sent
through a real DEALER, before and after `hello`; ZMTP-level abuse (garbage instead of
a greeting, a frame declared at 256 MB, millions of empty frames, silence) goes
through `daemon.testing.raw_zmtp`, which can write bytes libzmq never would.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from dataclasses import dataclass, field

import zmq
import zmq.asyncio
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bridge_protocol.framing import to_frames
from bridge_protocol.messages import ErrorCode, Hello, MicAudio
from daemon.testing.raw_zmtp import RawZmtpClient, ZmtpError, encode_frame

HELLO = json.dumps({"type": "hello", "protocol": 1, "client": "fuzz"}).encode()
DOCUMENTED_CODES = frozenset(value for name, value in vars(ErrorCode).items()
                             if name.isupper())
CLIENT_TYPES = ("hello", "say", "cancel", "listen_start", "mic_audio", "listen_stop")

# --------------------------------------------------------------------------- fuzz cases

_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
            | st.text(max_size=40))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=12)
_wrong = (_json | st.integers(min_value=2**53, max_value=2**70) | st.just(-1)
          | st.text(min_size=60, max_size=80) | st.just("x" * 5000))
_fields = {
    "hello": ["protocol", "client", "token", "sample_rate_hz"],
    "say": ["turn_id", "npc_id", "text", "profile"],
    "cancel": ["turn_id"],
    "listen_start": ["npc_id", "mode", "sample_rate_hz", "profile"],
    "mic_audio": ["seq", "sample_count"],
    "listen_stop": [],
}


@st.composite
def _message_with_wrong_fields(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.sampled_from(CLIENT_TYPES))
    body: dict[str, object] = {"type": kind}
    for name in _fields[kind]:
        choice = draw(st.integers(0, 2))
        if choice == 1:
            body[name] = draw(_wrong)
        elif choice == 2:
            body[name] = draw(_scalars)
    frames = [json.dumps(body).encode()]
    if kind == "mic_audio" and draw(st.booleans()):
        frames.append(draw(st.binary(max_size=64)))
    return frames


@st.composite
def _hostile_json(draw: st.DrawFn) -> list[bytes]:
    depth = draw(st.integers(100, 5000))
    return [draw(st.sampled_from([
        b'{"x":' + b"[" * depth,
        b"[" * depth + b"]" * depth,
        b'{"type":"say","turn_id":1' + b"0" * draw(st.integers(20, 400)) + b',"npc_id":"a"}',
        b'{"type":"say","turn_id":1e999,"npc_id":"a","text":"b"}',
        b'{"type":"say","turn_id":3,"npc_id":"a","text":"' + b"\xff\xfe\xfa" * 10 + b'"}',
        b'{"type":"hello","protocol":1,"client":"' + b"\xc3\x28" + b'"}',
        b'{"type":"say","turn_id":4,"npc_id":"blacksmith","text":"' + b"y" * 70_000 + b'"}',
        b'{"type":"' + b"z" * draw(st.integers(1000, 60_000)) + b'"}',
        b'{"type":"hello","protocol":1,"client":"forged\\n2026-12-05 INFO ready on x"}',
    ]))]


_fuzz_case = st.one_of(
    _message_with_wrong_fields(),
    _hostile_json(),
    st.lists(st.binary(max_size=200), min_size=1, max_size=4),  # no frame = nothing sent
    _json.map(lambda value: [json.dumps(value).encode()]),
)


def fuzz_cases(count: int, random_seed: int) -> list[list[bytes]]:
    """`count` multipart messages (lists of frames) a client should never send.

    Hypothesis may stop a run short of `max_examples` (it skips examples it has
    already generated), so runs with successive seeds go on until there are `count`.
    """
    cases: list[list[bytes]] = []

    def run(run_seed: int) -> None:
        @seed(run_seed)
        @settings(max_examples=count - len(cases), database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(_fuzz_case)
        def collect(frames: list[bytes]) -> None:
            cases.append(frames)

        collect()

    for attempt in range(100):
        if len(cases) >= count:
            break
        run(random_seed + attempt)
    return cases[:count]


@dataclass
class FuzzReport:
    """What fuzzing sent and got back.

    Attributes:
      messages: Cases sent (an empty case sends nothing).
      replies: Messages the daemon sent back.
      undocumented_codes: Error codes outside `ErrorCode` (must stay empty).
      reopened: Sockets replaced because a send did not complete in `SEND_TIMEOUT_S`.
    """

    messages: int = 0
    replies: int = 0
    undocumented_codes: list[str] = field(default_factory=list)
    reopened: int = 0


SEND_TIMEOUT_S = 10.0
"""Longest wait for one fuzz case to be handed to libzmq.

The daemon closes a connection that sends a frame over its size limit, and the DEALER
reconnects. Once, on a machine running two suites at once, a send after such a
reconnect never completed although the new connection was up (the daemon received
nothing on it; why the send stayed blocked was not found), and the suite hung for 25
minutes. A send that takes this long gets a fresh socket instead: the case counts as
unsent and `FuzzReport.reopened` counts the socket."""


class _FuzzDealer:
    """One DEALER of the fuzzer and the task that reads its replies."""

    def __init__(self, context: zmq.asyncio.Context, address: str, with_hello: bool,
                 report: FuzzReport) -> None:
        self._context, self._address, self._with_hello = context, address, with_hello
        self._report = report
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.linger = 0
        self._socket.connect(self._address)
        if self._with_hello:
            await self._socket.send(HELLO)
        self._reader = asyncio.create_task(self._read(self._socket))

    async def send(self, frames: list[bytes]) -> bool:
        """Send one case; on a stuck send, reopen the socket and return False."""
        assert self._socket is not None
        try:
            await asyncio.wait_for(self._socket.send_multipart(frames), SEND_TIMEOUT_S)
        except TimeoutError:
            self._report.reopened += 1
            await self.close()
            await self.open()
            return False
        return True

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._socket is not None:
            self._socket.close(linger=0)
        self._socket, self._reader = None, None

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            self._report.replies += 1
            try:
                reply = json.loads(frames[0])
            except ValueError:
                continue
            code = reply.get("code") if reply.get("type") == "error" else None
            if code is not None and code not in DOCUMENTED_CODES:
                self._report.undocumented_codes.append(code)


async def fuzz_dealers(address: str, cases: list[list[bytes]]) -> FuzzReport:
    """Send the cases over two DEALERs (one never says hello) and read every reply."""
    report = FuzzReport()
    context = zmq.asyncio.Context()
    dealers = [_FuzzDealer(context, address, with_hello, report)
               for with_hello in (False, True)]
    try:
        for dealer in dealers:
            await dealer.open()
        for index, frames in enumerate(cases):
            if frames and await dealers[index % 2].send(frames):
                report.messages += 1
            if index % 200 == 199:
                await asyncio.sleep(0.05)  # let replies flow; the daemon is not a sink
        await asyncio.sleep(1.0)
    finally:
        for dealer in dealers:
            await dealer.close()
        context.term()
    return report


async def raw_abuse(host: str, port: int, connections: int, empty_frames: int,
                    seed: int) -> dict[str, int]:
    """ZMTP-level abuse on raw TCP; returns how many connections the daemon closed.

    Every kind but "frames" must be closed by the daemon: garbage, an HTTP request or a
    bad version instead of a ZMTP 3 greeting, a wrong socket type, a frame declared
    over the size limit, a connection that never greets. "frames" is a well-formed
    connection whose message has too many frames: it gets `bad_frame` and stays open.
    """
    rng = random.Random(seed)
    closed = 0
    expected = 0
    kinds = ["garbage", "http", "bad_version", "huge_frame", "bad_ready", "silent", "frames"]
    for index in range(connections):
        kind = kinds[index % len(kinds)]
        client = RawZmtpClient(host, port)
        try:
            if kind in ("huge_frame", "frames"):
                await client.connect()
                if kind == "huge_frame":  # declare 256 MB, send a little, wait
                    client.write_raw(b"\x02" + struct.pack(">Q", 256 * 1024 * 1024) + b"x" * 1024)
                else:
                    client.write_raw(encode_frame(HELLO))
                    client.write_raw(bytes([0x01, 0x00]) * (empty_frames if index < 7 else 1000))
                    client.write_raw(encode_frame(b"{}"))
                await client.drain()
            else:
                await client.open_tcp()
                client.write_raw({
                    "garbage": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
                    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    "bad_version": b"\xff" + bytes(8) + b"\x7f\x01\x00" + bytes(52),
                    "bad_ready": b"\xff" + bytes(8) + b"\x7f\x03\x01NULL" + bytes(48)
                    + encode_frame(b"\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB", command=True),
                    "silent": b"",
                }[kind])
                await client.drain()
            if kind == "frames":
                continue
            expected += 1
            if await client.is_closed_by_peer(timeout_s=8.0 if kind == "silent" else 3.0):
                closed += 1
        except (ConnectionError, asyncio.IncompleteReadError, ZmtpError, OSError):
            closed += kind != "frames"
        finally:
            client.reset()
    return {"connections": connections, "to_be_closed": expected, "closed_by_daemon": closed}


async def raw_hello(client: RawZmtpClient) -> None:
    """Send `hello` and wait for `welcome`."""
    await client.send([HELLO])
    while True:
        reply = json.loads((await client.recv())[0])
        if reply.get("type") == "welcome":
            return


async def killed_mid_stream(host: str, port: int, count: int, npc_ids: list[str],
                            concurrency: int = 4) -> dict[str, int]:
    """Clients that start a turn and vanish (TCP RST) once its first block arrived."""
    killed = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        nonlocal killed
        async with gate:
            client = RawZmtpClient(host, port)
            try:
                await client.connect()
                await raw_hello(client)
                say = {"type": "say", "turn_id": 1, "npc_id": npc_ids[index % len(npc_ids)],
                       "text": "Tell me about the old road north."}
                await client.send([json.dumps(say).encode()])
                while True:
                    frames = await client.recv(timeout_s=60)
                    if json.loads(frames[0]).get("type") in ("audio_block", "done", "error"):
                        break
            except (ConnectionError, asyncio.IncompleteReadError, ZmtpError,
                    asyncio.TimeoutError):
                pass
            finally:
                client.reset()
                killed += 1

    await asyncio.gather(*(one(index) for index in range(count)))
    return {"killed": killed}


async def idle_connections(host: str, port: int, count: int, hold_s: float) -> dict[str, int]:
    """`count` connections that say hello and then do nothing but answer heartbeats."""
    admitted, refused = 0, 0
    clients: list[RawZmtpClient] = []
    keepers: list[asyncio.Task[None]] = []

    async def keep_alive(client: RawZmtpClient) -> None:
        while True:
            await client.recv(timeout_s=3600)  # answers PINGs

    for _ in range(count):
        client = RawZmtpClient(host, port)
        try:
            await client.connect()
            await raw_hello(client)
            admitted += 1
            clients.append(client)
            keepers.append(asyncio.create_task(keep_alive(client)))
        except (ZmtpError, ConnectionError, asyncio.IncompleteReadError):
            refused += 1
            client.reset()
    await asyncio.sleep(hold_s)
    for task in keepers:
        task.cancel()
    await asyncio.gather(*keepers, return_exceptions=True)
    for client in clients:
        await client.close()
    return {"admitted": admitted, "refused": refused}


def non_reading_dealer(context: zmq.asyncio.Context, address: str) -> zmq.asyncio.Socket:
    """A DEALER connected to `address` with the smallest receive buffers.

    A client that does not read then fills its pipe, and the daemon's queue, after a few
    messages.
    """
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(address)
    return sock


async def slow_consumer(address: str, npc_ids: list[str], cancels: int) -> dict[str, int]:
    """A client that never reads: it starts turns, then sends a flood of cancels."""
    context = zmq.asyncio.Context()
    sock = non_reading_dealer(context, address)
    sent = 0
    try:
        await sock.send(HELLO)
        for turn_id, npc_id in enumerate(npc_ids, start=1):
            say = {"type": "say", "turn_id": turn_id, "npc_id": npc_id,
                   "text": "Tell me a long story about the mountains and the sea."}
            await sock.send(json.dumps(say).encode())
        for index in range(cancels):
            await sock.send(json.dumps({"type": "cancel", "turn_id": 10_000 + index}).encode())
            sent += 1
            if index % 500 == 499:
                await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)
    finally:
        sock.close(linger=0)
        context.term()
    return {"cancels_sent": sent}


async def mic_leavers(host: str, port: int, count: int, npc_id: str,
                      speech: bytes) -> dict[str, int]:
    """Clients that open the microphone, speak part of a line, and vanish (RST)."""
    left = 0
    block = 3200  # 100 ms at 16 kHz, s16le
    for _ in range(count):
        client = RawZmtpClient(host, port)
        try:
            await client.connect()
            await raw_hello(client)
            start = {"type": "listen_start", "npc_id": npc_id, "mode": "open_mic"}
            await client.send([json.dumps(start).encode()])
            half = speech[: len(speech) // 2 // block * block]
            for seq, offset in enumerate(range(0, len(half), block)):
                header = MicAudio(seq=seq, sample_count=block // 2)
                await client.send(to_frames(header, half[offset:offset + block]))
        except (ConnectionError, asyncio.IncompleteReadError, ZmtpError):
            pass
        finally:
            client.reset()
            left += 1
    return {"left_with_mic_open": left}


async def mic_flood(address: str, npc_id: str, seconds: float, probe_endpoint: str
                    ) -> dict[str, float | int]:
    """Flood microphone audio while another client measures its control round trip.

    The audio goes as fast as a DEALER can send it; the probe sends `cancel` of an
    unknown turn and times the `unknown_turn` reply.
    """
    context = zmq.asyncio.Context()
    flood = context.socket(zmq.DEALER)
    flood.linger = 0
    flood.connect(address)
    probe = context.socket(zmq.DEALER)
    probe.linger = 0
    probe.connect(probe_endpoint)
    round_trips: list[float] = []
    blocks = 0
    too_fast = 0
    try:
        await flood.send(HELLO)
        await flood.send(json.dumps({"type": "listen_start", "npc_id": npc_id,
                                     "mode": "open_mic"}).encode())
        await probe.send_multipart(to_frames(Hello(protocol=1, client="probe")))
        await probe.recv()
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds
        pcm = bytes(3200)

        async def flood_audio() -> None:
            nonlocal blocks
            while loop.time() < stop_at:
                header = MicAudio(seq=blocks, sample_count=1600)
                await flood.send_multipart(to_frames(header, pcm))
                blocks += 1
                if blocks % 50 == 0:
                    await asyncio.sleep(0)

        async def drain_flood() -> None:
            nonlocal too_fast
            while True:
                reply = json.loads((await flood.recv_multipart())[0])
                too_fast += reply.get("code") == ErrorCode.MIC_AUDIO_TOO_FAST

        flooding = asyncio.create_task(flood_audio())
        draining = asyncio.create_task(drain_flood())
        while loop.time() < stop_at:
            started = loop.time()
            await probe.send(json.dumps({"type": "cancel", "turn_id": 424242}).encode())
            await asyncio.wait_for(probe.recv(), 10.0)
            round_trips.append((loop.time() - started) * 1000.0)
            await asyncio.sleep(0.05)
        await flooding
        draining.cancel()
        await asyncio.gather(draining, return_exceptions=True)
        await flood.send(json.dumps({"type": "listen_stop"}).encode())
    finally:
        flood.close(linger=0)
        probe.close(linger=0)
        context.term()
    round_trips.sort()
    return {
        "flood_blocks": blocks,
        "flood_audio_s": round(blocks * 0.1, 1),
        "mic_audio_too_fast_errors": too_fast,
        "control_round_trip_p50_ms": round(round_trips[len(round_trips) // 2], 2),
        "control_round_trip_max_ms": round(round_trips[-1], 2),
        "probes": len(round_trips),
    }
