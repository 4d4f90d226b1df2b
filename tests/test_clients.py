"""A connected client's outbox: bounded in bytes, terminal events always kept."""

from __future__ import annotations

import pytest

from bridge_protocol.messages import AudioBlock, Cancelled, Error
from daemon.server.clients import Client, ClientTooSlow


def block(turn_id: int, seq: int, samples: int = 1000) -> tuple[AudioBlock, bytes]:
    header = AudioBlock(turn_id=turn_id, seq=seq, sample_rate_hz=22050, sample_count=samples)
    return header, bytes(2 * samples)


def test_audio_past_the_byte_limit_means_the_client_is_too_slow() -> None:
    client = Client(b"\x00k", max_queued_bytes=8000)
    for seq in range(3):
        client.queue(*block(1, seq))
    with pytest.raises(ClientTooSlow):
        client.queue(*block(1, 3))
    assert client.stalled is False and client.queued_bytes <= 8000


def test_replies_to_a_client_that_does_not_read_are_dropped_but_terminal_events_kept() -> None:
    client = Client(b"\x00k", max_queued_bytes=2300)
    client.queue(*block(1, 0))
    assert client.queue(Error(code="unknown_turn", message="x" * 300)) is False
    assert client.dropped_replies == 1
    assert client.queue(Cancelled(turn_id=1, reason="cancel")) is True
    assert client.stalled


def test_dropping_a_turns_queue_counts_its_blocks_and_frees_its_bytes() -> None:
    client = Client(b"\x00k", max_queued_bytes=1 << 20)
    client.queue(*block(1, 0))
    client.queue(*block(2, 0))
    client.queue(*block(1, 1))
    before = client.queued_bytes
    assert client.drop_queued(1) == 2
    assert [item.turn_id for item in client.outbox] == [2]
    assert client.queued_bytes < before
    client.pop_sent()
    assert client.queued_bytes == 0 and not client.outbox


def test_client_chosen_names_are_escaped_in_log_labels() -> None:
    client = Client(b"\x01", max_queued_bytes=65536, client_name="evil\n2026 INFO forged")
    assert "\n" not in client.label and "evil\\n2026" in client.label
