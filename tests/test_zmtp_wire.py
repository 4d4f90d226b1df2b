"""The daemon's side of ZMTP 3.1, byte by byte, with a raw client (PROTOCOL.md section 2).

`daemon.testing.raw_zmtp` writes bytes libzmq never would: a frame torn across TCP
writes, a message before READY, a client that never answers PING.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.launcher import DaemonProcess
from daemon.testing.raw_zmtp import GREETING, RawZmtpClient, encode_frame, ready_command
from tests.support.aio import run
from tests.support.configs import write_config

HELLO = json.dumps({"type": "hello", "protocol": 1, "client": "wire"}).encode()


@pytest.fixture(scope="module")
def fast_heartbeat_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon that pings every 200 ms and drops a peer silent for 1.5 s."""
    folder = tmp_path_factory.mktemp("wire")
    config = write_config(folder / "wire.toml",
                          server={"heartbeat_ivl_ms": 200, "heartbeat_timeout_ms": 1500},
                          asr={"enabled": False})
    with DaemonProcess(config, log_path=folder / "daemon.log") as process:
        yield process


def test_the_daemon_greets_as_protocol_md_shows(fast_heartbeat_daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[bytes, bytes, dict]:
        client = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await client.open_tcp()
        client.write_raw(GREETING + ready_command())
        reader = client._reader
        assert reader is not None
        greeting = await asyncio.wait_for(reader.readexactly(64), 10)
        flags, size = await asyncio.wait_for(reader.readexactly(2), 10)
        ready = await reader.readexactly(size)
        await client.send([HELLO])
        welcome = json.loads((await client.recv(timeout_s=10))[0])
        await client.close()
        return greeting, bytes([flags, size]) + ready, welcome

    greeting, ready, welcome = run(scenario())
    assert greeting[:1] == b"\xff" and greeting[9:12] == b"\x7f\x03\x01"
    assert greeting[12:32] == b"NULL".ljust(20, b"\x00")
    assert ready == bytes.fromhex("04 29 05") + b"READY" + b"\x0bSocket-Type" + \
        b"\x00\x00\x00\x06ROUTER" + b"\x08Identity" + b"\x00\x00\x00\x00"
    assert welcome["type"] == "welcome"


def test_a_frame_torn_across_tcp_writes_is_assembled(
        fast_heartbeat_daemon: DaemonProcess) -> None:
    async def scenario() -> dict:
        client = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await client.connect()
        frame = encode_frame(HELLO)
        for piece in (frame[:1], frame[1:2], frame[2:9], frame[9:]):
            client.write_raw(piece)
            await client.drain()
            await asyncio.sleep(0.05)
        reply = json.loads((await client.recv(timeout_s=10))[0])
        await client.close()
        return reply

    assert run(scenario())["type"] == "welcome"


def test_pings_answered_keep_an_idle_client_connected(
        fast_heartbeat_daemon: DaemonProcess) -> None:
    async def scenario() -> str:
        client = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await client.connect()
        replies: asyncio.Queue[list[bytes]] = asyncio.Queue()

        async def read() -> None:  # answers every PING while it waits
            while True:
                replies.put_nowait(await client.recv(timeout_s=3600))

        reader = asyncio.create_task(read())
        await client.send([HELLO])
        assert json.loads((await asyncio.wait_for(replies.get(), 10))[0])["type"] == "welcome"
        await asyncio.sleep(3.0)  # idle for twice the heartbeat timeout
        await client.send([json.dumps({"type": "cancel", "turn_id": 5}).encode()])
        reply = json.loads((await asyncio.wait_for(replies.get(), 10))[0])
        reader.cancel()
        await client.close()
        return str(reply["code"])

    assert run(scenario()) == "unknown_turn", "still connected after twice the timeout"


def test_a_client_that_never_answers_pings_is_dropped(
        fast_heartbeat_daemon: DaemonProcess) -> None:
    async def scenario() -> bool:
        client = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await client.connect()
        await client.send([HELLO])
        return await client.is_closed_by_peer(timeout_s=20)  # reads, answers nothing

    assert run(scenario()) is True


def test_a_message_before_ready_closes_the_connection_and_nothing_else(
        fast_heartbeat_daemon: DaemonProcess, tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, str]:
        rude = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await rude.open_tcp()
        rude.write_raw(GREETING + encode_frame(HELLO))  # a message where READY belongs
        closed = await rude.is_closed_by_peer(timeout_s=10)
        polite = RawZmtpClient("127.0.0.1", fast_heartbeat_daemon.port)
        await polite.connect()
        await polite.send([HELLO])
        reply = json.loads((await polite.recv(timeout_s=10))[0])
        await polite.close()
        return closed, str(reply["type"])

    assert run(scenario()) == (True, "welcome")
