"""Wire contract: round trips, framing, and each kind of malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_protocol.framing import (
    MAX_CONTROL_FRAME_BYTES,
    DecodedAudio,
    FrameError,
    client_message_from_frames,
    daemon_message_from_frames,
    to_frames,
)
from bridge_protocol.messages import (
    AudioBlock,
    Cancel,
    Cancelled,
    Done,
    Error,
    ErrorCode,
    Hello,
    Limits,
    NpcInfo,
    Say,
    Subtitle,
    TurnTimings,
    Welcome,
    is_terminal,
    json_schemas,
)

DAEMON_MESSAGES = [
    Welcome(protocol=1, daemon="npc-voice-bridge 0.1.0", sample_rate_hz=None,
            limits=Limits(max_text_chars=500, max_message_bytes=65536, max_turns_in_flight=4),
            npcs=[NpcInfo(npc_id="smith", display_name="Brom", profile="fast",
                          sample_rate_hz=22050, prebuffer_ms=240)]),
    Subtitle(turn_id=7, chunk_index=0, text="Ah, traveller!"),
    Done(turn_id=7, block_count=3, sample_count=3000, reply_text="Ah.", profile="fast",
         timings=TurnTimings(first_block_ms=181.5, rtf=0.05)),
    Cancelled(turn_id=7, reason="barge_in", block_count=2),
    Error(code=ErrorCode.UNKNOWN_NPC, message="no NPC 'x'", turn_id=7),
    Error(code=ErrorCode.BAD_JSON, message="not JSON"),
]


@pytest.mark.parametrize("message", DAEMON_MESSAGES, ids=lambda m: type(m).__name__)
def test_daemon_messages_round_trip(message: object) -> None:
    frames = to_frames(message)
    assert len(frames) == 1
    assert json.loads(frames[0])["type"] == {
        "Welcome": "welcome", "Subtitle": "subtitle", "Done": "done",
        "Cancelled": "cancelled", "Error": "error"}[type(message).__name__]
    assert daemon_message_from_frames(frames) == message


@pytest.mark.parametrize("message", [
    Hello(protocol=1, client="godot", token="s3cret", sample_rate_hz=48000),
    Say(turn_id=2**53 - 1, npc_id="smith", text="Héllo, ünïcode ✓", profile="cinematic"),
    Cancel(turn_id=0),
], ids=lambda m: type(m).__name__)
def test_client_messages_round_trip(message: object) -> None:
    assert client_message_from_frames(to_frames(message)) == message


@given(samples=st.lists(st.integers(-32768, 32767), max_size=2000), seq=st.integers(0, 10**6),
       final=st.booleans())
def test_audio_blocks_round_trip_with_their_pcm(samples: list[int], seq: int,
                                                final: bool) -> None:
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    header = AudioBlock(turn_id=3, seq=seq, sample_rate_hz=22050, sample_count=len(samples),
                        chunk_index=1, final=final)
    frames = to_frames(header, pcm)
    assert len(frames) == 2 and frames[1] == pcm
    decoded = daemon_message_from_frames(frames)
    assert isinstance(decoded, DecodedAudio)
    assert decoded.header == header and decoded.pcm == pcm


def test_audio_pcm_must_match_the_header() -> None:
    header = AudioBlock(turn_id=1, seq=0, sample_rate_hz=22050, sample_count=4)
    with pytest.raises(ValueError, match="needs 8 bytes"):
        to_frames(header, b"\x00" * 6)
    with pytest.raises(ValueError, match="carries no PCM"):
        to_frames(Cancel(turn_id=1), b"\x00\x00")
    with pytest.raises(FrameError) as info:
        daemon_message_from_frames([to_frames(header, b"\x00" * 8)[0], b"\x00" * 7])
    assert info.value.code == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(("frames", "code"), [
    ([b"{"], ErrorCode.BAD_JSON),
    ([b"\xff\xfe"], ErrorCode.BAD_JSON),
    ([b'{"type": "launch_missiles"}'], ErrorCode.UNKNOWN_TYPE),
    ([b'{"turn_id": 1}'], ErrorCode.UNKNOWN_TYPE),
    ([b'{"type": "done", "turn_id": 1, "block_count": 0, "sample_count": 0}'],
     ErrorCode.UNKNOWN_TYPE),  # a daemon message is not a client message
    ([b'{"type": "say", "turn_id": 1, "npc_id": "smith"}'], ErrorCode.INVALID_MESSAGE),
    ([b'{"type": "say", "turn_id": "1", "npc_id": "smith", "text": "hi"}'],
     ErrorCode.INVALID_MESSAGE),
    ([b'{"type": "say", "turn_id": -5, "npc_id": "smith", "text": "hi"}'],
     ErrorCode.INVALID_MESSAGE),
    ([b'{"type": "say", "turn_id": 1, "npc_id": "", "text": "hi"}'], ErrorCode.INVALID_MESSAGE),
    ([b'{"type": "hello", "protocol": 1, "sample_rate_hz": 5}'], ErrorCode.INVALID_MESSAGE),
    ([b"[1, 2]"], ErrorCode.BAD_JSON),  # JSON, but not an object: PROTOCOL.md 3.3
    ([b"7"], ErrorCode.BAD_JSON),
    ([b'{"x":' + b"[" * 1000], ErrorCode.BAD_JSON),  # msgspec raises RecursionError
    ([b'{"type": 5}'], ErrorCode.UNKNOWN_TYPE),
    ([], ErrorCode.BAD_FRAME),
    ([b'{"type": "cancel", "turn_id": 1}', b"extra"], ErrorCode.BAD_FRAME),
    ([b" " * (MAX_CONTROL_FRAME_BYTES + 1)], ErrorCode.BAD_FRAME),
])
def test_bad_client_input_is_classified(frames: list[bytes], code: str) -> None:
    with pytest.raises(FrameError) as info:
        client_message_from_frames(frames)
    assert info.value.code == code
    assert str(info.value)  # a human-readable explanation


def test_unknown_fields_are_ignored_for_evolution() -> None:
    message = client_message_from_frames(
        [b'{"type": "cancel", "turn_id": 4, "added_in_v2": [1, 2]}'])
    assert message == Cancel(turn_id=4)


def test_terminal_events() -> None:
    assert is_terminal(DAEMON_MESSAGES[2]) and is_terminal(DAEMON_MESSAGES[3])
    assert is_terminal(Error(code="x", message="y", turn_id=1))
    assert not is_terminal(Error(code="x", message="y"))
    assert not is_terminal(DAEMON_MESSAGES[1])


def test_json_schema_covers_every_message_type() -> None:
    schemas = json.dumps(json_schemas())
    for tag in ("hello", "say", "cancel", "welcome", "subtitle", "audio_block", "done",
                "cancelled", "error"):
        assert f'"{tag}"' in schemas
