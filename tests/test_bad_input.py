"""Bad input never kills the daemon and never costs another client its audio."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import daemon_message_from_frames, to_frames
from bridge_protocol.messages import Error, ErrorCode, Hello, Say
from daemon.launcher import DaemonProcess
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn

SAY = b'{"type": "say", "turn_id": %d, "npc_id": "%s", "text": "%s"}'


async def expect_error(client: BridgeClient, frames: list[bytes]) -> Error:
    await client.send_raw(frames)
    message = await client.next_control(timeout_s=10)
    assert isinstance(message, Error), message
    return message


def test_each_kind_of_bad_input_gets_a_named_error(daemon: DaemonProcess) -> None:
    async def scenario() -> list[tuple[str, Error]]:
        seen = []
        async with BridgeClient(daemon.address) as client:
            cases = [
                ("bad_json", [b"{not json"]),
                ("bad_json", [b"\xff\xfe\x00"]),
                ("unknown_type", [b'{"type": "teleport", "x": 1}']),
                ("invalid_message", [b'{"type": "say", "turn_id": "seven"}']),
                ("bad_frame", [b'{"type": "cancel", "turn_id": 1}', b"second frame"]),
                ("bad_frame", [b"x" * 70_000]),
                ("turn_id_reused", [SAY % (5, b"blacksmith", b"hi"), ]),
                ("unknown_turn", [b'{"type": "cancel", "turn_id": 99999}']),
            ]
            # Turn 5 starts (its id is reused below); cancel it at once. Its events come
            # through the control queue because this test bypasses client.say().
            await client.send_raw([SAY % (5, b"blacksmith", b"hello")])
            await client.send_raw([b'{"type": "cancel", "turn_id": 5}'])
            cancelled = await client.next_control(timeout_s=10)
            assert type(cancelled).__name__ == "Cancelled" and cancelled.turn_id == 5
            for code, frames in cases:
                seen.append((code, await expect_error(client, frames)))
            # Errors that end a turn carry its id.
            for turn_id, body, code in [
                (10, SAY % (10, b"nobody", b"hi"), "unknown_npc"),
                (11, SAY % (11, b"blacksmith", b"x" * 600), "text_too_long"),
                (12, SAY % (12, b"blacksmith", b"   "), "empty_text"),
                (13, b'{"type":"say","turn_id":13,"npc_id":"oracle","text":"hi","profile":"x"}',
                 "unknown_profile"),
            ]:
                client._turn_queues[turn_id] = asyncio.Queue()
                await client.send_raw([body])
                _arrival, message = await asyncio.wait_for(client._turn_queues[turn_id].get(), 10)
                assert isinstance(message, Error) and message.turn_id == turn_id
                seen.append((code, message))
        return seen

    for code, error in run(scenario()):
        assert error.code == code, (code, error)
        assert error.message


def test_messages_before_hello_and_bad_handshakes(daemon: DaemonProcess) -> None:
    async def scenario() -> list[Error]:
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(daemon.address)
        try:
            errors = []
            for frames in ([SAY % (1, b"blacksmith", b"hi")],
                           to_frames(Hello(protocol=99)),
                           to_frames(Hello(protocol=1, token="unexpected-but-harmless"))):
                await sock.send_multipart(frames)
                reply_frames = await asyncio.wait_for(sock.recv_multipart(), 10)
                reply = daemon_message_from_frames(reply_frames)
                errors.append(reply)
            return errors
        finally:
            sock.close()
            context.term()

    before_hello, wrong_version, welcome = run(scenario())
    assert isinstance(before_hello, Error) and before_hello.code == ErrorCode.HANDSHAKE_REQUIRED
    assert isinstance(wrong_version, Error)
    assert wrong_version.code == ErrorCode.UNSUPPORTED_PROTOCOL
    assert type(welcome).__name__ == "Welcome"  # no token configured: any token is fine


def test_bad_input_does_not_cost_another_client_its_audio(daemon: DaemonProcess) -> None:
    async def vandal(stop: asyncio.Event) -> int:
        sent = 0
        async with BridgeClient(daemon.address, client_name="vandal") as client:
            while not stop.is_set():
                for frames in ([b"{oops"], [b'{"type":"say"}', b"x"], [b"\x00" * 100_000],
                               [b'{"type":"cancel","turn_id":-1}']):
                    await client.send_raw(frames)
                    sent += 1
                await asyncio.sleep(0.01)
        return sent

    async def scenario() -> tuple[TurnResult, int]:
        stop = asyncio.Event()
        spam = asyncio.create_task(vandal(stop))
        async with BridgeClient(daemon.address, client_name="player") as client:
            result = await client.run_turn("innkeeper", "Is the road to the north safe?")
        stop.set()
        return result, await spam

    result, sent = run(scenario())
    assert sent > 20
    assert_complete_turn(result)


def test_a_client_that_vanishes_mid_stream_does_not_disturb_others(
        daemon: DaemonProcess) -> None:
    async def vanish() -> None:
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(daemon.address)
        await sock.send_multipart(to_frames(Hello(protocol=1, client="vanisher")))
        await sock.recv_multipart()
        await sock.send_multipart(to_frames(Say(turn_id=1, npc_id="oracle",
                                                text="Tell me everything about the stars.")))
        while True:  # leave as soon as audio flows: no cancel, no goodbye
            frames = await sock.recv_multipart()
            if len(frames) == 2:
                break
        sock.close(linger=0)
        context.term()

    async def scenario() -> TurnResult:
        await vanish()
        async with BridgeClient(daemon.address) as client:
            return await client.run_turn("oracle", "Are you still there?")

    assert_complete_turn(run(scenario()))
    assert "client vanisher disconnected" in daemon.log_text() or "vanisher" in daemon.log_text()
