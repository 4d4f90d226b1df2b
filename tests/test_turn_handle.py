"""The turn handle's state machine: live, speculative, finished; one terminal event."""

from __future__ import annotations

import time

from bridge_protocol.messages import AudioBlock, DaemonMessage, Done, Subtitle
from daemon.llm.conversation import Conversation
from daemon.pipeline.turn import Turn, TurnSpec
from daemon.profiles import Profile
from daemon.server.turn_handle import TurnHandle, TurnState


def new_turn(turn_id: int = -1) -> Turn:
    """A turn that is never run: the handle only routes what it would send.

    The LLM stage and the voice are not needed to route messages, so none is given
    (the turn's `run` is not called here).
    """
    spec = TurnSpec(turn_id=turn_id, npc_id="smith", utterance="hi", profile_name="fast",
                    profile=Profile(), voice=None,  # type: ignore[arg-type]
                    conversation=Conversation("p", 2), conversation_key="smith/x",
                    out_rate_hz=22050, received_at=time.perf_counter())
    return Turn(spec, llm=None, send=lambda message, pcm: None)  # type: ignore[arg-type]


class Wire:
    """What reached the client."""

    def __init__(self) -> None:
        self.sent: list[DaemonMessage] = []

    def __call__(self, message: DaemonMessage, pcm: bytes | None) -> None:
        self.sent.append(message)


def block(turn_id: int, seq: int) -> AudioBlock:
    return AudioBlock(turn_id=turn_id, seq=seq, sample_rate_hz=22050, sample_count=1)


def test_a_live_turn_sends_as_it_goes_and_ends_exactly_once() -> None:
    wire, handle = Wire(), TurnHandle(new_turn(7))
    handle.deliver(Subtitle(turn_id=7, chunk_index=0, text="Hi."), None, wire)
    handle.deliver(block(7, 0), b"\x00\x00", wire)
    assert handle.end(Done(turn_id=7, block_count=1, sample_count=1), wire) is True
    assert handle.end(Done(turn_id=7, block_count=1, sample_count=1), wire) is False
    handle.deliver(block(7, 1), b"\x00\x00", wire)  # too late: after the terminal event
    assert [type(m).__name__ for m in wire.sent] == ["Subtitle", "AudioBlock", "Done"]
    assert handle.finished


def test_a_speculative_turn_holds_everything_back_until_released_under_its_new_id() -> None:
    wire, handle = Wire(), TurnHandle(new_turn(-1), TurnState.SPECULATIVE)
    handle.deliver(Subtitle(turn_id=-1, chunk_index=0, text="Hi."), None, wire)
    handle.deliver(block(-1, 0), b"\x00\x00", wire)
    assert handle.end(Done(turn_id=-1, block_count=1, sample_count=1), wire) is False
    assert wire.sent == [] and not handle.finished
    handle.assign_id(12)
    terminal = handle.release(wire)
    assert [m.turn_id for m in wire.sent] == [12, 12]  # type: ignore[attr-defined]
    assert isinstance(terminal, Done) and terminal.turn_id == 12
    assert handle.state is TurnState.LIVE and handle.turn_id == 12
    assert handle.end(terminal, wire) is True and wire.sent[-1] == terminal


def test_a_dropped_speculative_turn_never_says_a_word() -> None:
    wire, handle = Wire(), TurnHandle(new_turn(-3), TurnState.SPECULATIVE)
    handle.deliver(block(-3, 0), b"\x00\x00", wire)
    handle.drop()
    assert handle.finished and handle.turn.stop.is_set()
    assert handle.release(wire) is None
    handle.deliver(block(-3, 1), b"\x00\x00", wire)
    assert wire.sent == []


def test_a_stopped_turn_sends_nothing_more() -> None:
    wire, handle = Wire(), TurnHandle(new_turn(4))
    handle.turn.stop.set()  # a cancel: the terminal event is the canceller's to send
    handle.deliver(block(4, 0), b"\x00\x00", wire)
    assert wire.sent == []
