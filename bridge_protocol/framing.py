"""Turning messages into ZeroMQ frames and back (framing apart from schema).

A control message is one frame: its JSON. An audio block is two frames: the JSON
`AudioBlock` header, then the raw PCM (s16le mono, `2 * sample_count` bytes). The
ROUTER's routing-id frame is not part of this layer: the server adds/strips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from bridge_protocol.messages import (
    MAX_MIC_SAMPLES,
    AudioBlock,
    ClientMessage,
    DaemonMessage,
    ErrorCode,
    MicAudio,
    Say,
    decode_client,
    decode_daemon,
    encode,
)

MAX_CONTROL_FRAME_BYTES = 64 * 1024
"""Largest client control frame accepted (also stated in `Limits.max_message_bytes`)."""

BYTES_PER_SAMPLE = 2
"""s16le mono: two bytes per sample."""

MAX_FRAME_BYTES = BYTES_PER_SAMPLE * MAX_MIC_SAMPLES
"""Largest frame of any kind a client may send (a `mic_audio` PCM frame at its limit);
the daemon drops the connection of a client that sends a larger one (ZMQ_MAXMSGSIZE)."""


class FrameError(ValueError):
    """A multipart message could not be turned into a message.

    Attributes:
      code: The `ErrorCode` value to report to the peer.
      rejected_turn_id: When the frame was a `say` whose `turn_id` could still be read,
        that id: the client's turn ends with this error (it started no turn).
    """

    def __init__(self, code: str, message: str, rejected_turn_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.rejected_turn_id = rejected_turn_id


class _SayProbe(msgspec.Struct):
    """Only the fields that name a rejected `say`; everything else is ignored."""

    type: object = None
    turn_id: object = None


_say_probe = msgspec.json.Decoder(_SayProbe)


def rejected_say_turn_id(data: bytes) -> int | None:
    """The `turn_id` of a frame that looks like a `say` but failed to decode, else None.

    Best effort, for the client's sake: a `say` refused before it became a turn (a
    field of the wrong type, an over-long `npc_id`, an oversized frame) still names
    the turn id the client is waiting on, so the error can end that wait.
    """
    try:
        probe = _say_probe.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    turn_id = probe.turn_id
    if probe.type != "say" or isinstance(turn_id, bool) or not isinstance(turn_id, int):
        return None
    return turn_id if 0 <= turn_id <= 2**53 - 1 else None


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """An audio message: its header and its PCM (s16le mono bytes)."""

    header: AudioBlock
    pcm: bytes


@dataclass(frozen=True, slots=True)
class DecodedMic:
    """A microphone message from a client: its header and its PCM (s16le mono bytes)."""

    header: MicAudio
    pcm: bytes


def to_frames(message: DaemonMessage | ClientMessage, pcm: bytes | None = None) -> list[bytes]:
    """Encode a message (plus PCM for an `AudioBlock`) into the frames to send.

    Args:
      message: Any bridge message.
      pcm: s16le mono bytes; required for, and only for, `AudioBlock` and `MicAudio`.

    Returns:
      `[json]` for a control message, `[json, pcm]` for audio.

    Raises:
      ValueError: PCM missing or given for a non-audio message, or its length does not
        match `sample_count`.
    """
    if isinstance(message, (AudioBlock, MicAudio)):
        if pcm is None or len(pcm) != BYTES_PER_SAMPLE * message.sample_count:
            got = "no" if pcm is None else f"{len(pcm)} bytes of"
            raise ValueError(
                f"audio block needs {BYTES_PER_SAMPLE * message.sample_count} bytes of PCM "
                f"for sample_count={message.sample_count}, got {got} PCM"
            )
        return [encode(message), pcm]
    if pcm is not None:
        raise ValueError(f"{type(message).__name__} carries no PCM frame")
    return [encode(message)]


def _describe_decode_error(exc: msgspec.DecodeError) -> FrameError:
    """The documented error code for a frame msgspec could not decode (PROTOCOL.md 3.3)."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        if text.startswith("Expected `object`, got") and " - at `" not in text:
            return FrameError(ErrorCode.BAD_JSON, "a client message is one JSON object, "
                              f"not {text.removeprefix('Expected `object`, got ')}")
        if text.endswith("- at `$.type`"):
            return FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown message type: {text}")
        if "missing required field `type`" in text:
            return FrameError(ErrorCode.UNKNOWN_TYPE, "message has no `type` field")
        return FrameError(ErrorCode.INVALID_MESSAGE, text)
    return FrameError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {text}")


def _pcm_frame(frames: Sequence[bytes], sample_count: int, kind: str) -> bytes:
    """The PCM frame of a two-frame audio message, checked against its header."""
    if len(frames) != 2:
        raise FrameError(ErrorCode.BAD_FRAME,
                         f"{kind} is 2 frames (header, then PCM), got {len(frames)}")
    pcm = frames[1]
    if len(pcm) != BYTES_PER_SAMPLE * sample_count:
        raise FrameError(
            ErrorCode.BAD_FRAME,
            f"PCM frame of {len(pcm)} bytes, header says {sample_count} samples",
        )
    return bytes(pcm)


def client_message_from_frames(
    frames: Sequence[bytes], max_bytes: int = MAX_CONTROL_FRAME_BYTES
) -> ClientMessage | DecodedMic:
    """Decode what a client sent (routing id already removed).

    Args:
      frames: The message's frames: one for a control message, two for `mic_audio`.
      max_bytes: Largest accepted control frame (the PCM frame is checked against its
        header instead).

    Returns:
      The message, or a `DecodedMic` for microphone audio.

    Raises:
      FrameError: with `code` bad_frame, bad_json, unknown_type or invalid_message.
    """
    if not 1 <= len(frames) <= 2:
        raise FrameError(
            ErrorCode.BAD_FRAME,
            f"a client message is 1 frame (2 for mic_audio), got {len(frames)}",
            rejected_say_turn_id(frames[0]) if frames else None)
    data = frames[0]
    if len(data) > max_bytes:
        raise FrameError(
            ErrorCode.BAD_FRAME, f"frame of {len(data)} bytes exceeds the {max_bytes}-byte limit",
            rejected_say_turn_id(data))
    try:
        message = decode_client(data)
    except msgspec.DecodeError as exc:
        error = _describe_decode_error(exc)
        error.rejected_turn_id = rejected_say_turn_id(data)
        raise error from None
    except RecursionError:  # msgspec's answer to deeply nested JSON
        raise FrameError(ErrorCode.BAD_JSON, "frame is nested too deeply to decode") from None
    if isinstance(message, MicAudio):
        return DecodedMic(message, _pcm_frame(frames, message.sample_count, "mic_audio"))
    if len(frames) != 1:
        raise FrameError(
            ErrorCode.BAD_FRAME, f"a {type(message).__name__} message is 1 frame, got 2",
            message.turn_id if isinstance(message, Say) else None)
    return message


def daemon_message_from_frames(frames: Sequence[bytes]) -> DaemonMessage | DecodedAudio:
    """Decode what the daemon sent: a control message, or a `DecodedAudio`.

    Raises:
      FrameError: wrong frame count, bad JSON, or PCM length not matching the header.
    """
    if not frames:
        raise FrameError(ErrorCode.BAD_FRAME, "empty message")
    try:
        message = decode_daemon(frames[0])
    except msgspec.DecodeError as exc:
        raise _describe_decode_error(exc) from None
    if isinstance(message, AudioBlock):
        return DecodedAudio(message, _pcm_frame(frames, message.sample_count, "audio_block"))
    if len(frames) != 1:
        raise FrameError(ErrorCode.BAD_FRAME, f"control message is 1 frame, got {len(frames)}")
    return message
