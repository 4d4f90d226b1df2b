"""Per-NPC conversation history: byte-stable prompts, cut in halves."""

from __future__ import annotations

from daemon.llm.conversation import Conversation, make_room


def test_the_prompt_is_persona_then_turns_then_the_new_line() -> None:
    conversation = Conversation("You are Brom.", history_turns=4)
    conversation.record("Hi.", "Hello, traveller.")
    assert conversation.messages_for("Bye.") == [
        {"role": "system", "content": "You are Brom."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello, traveller."},
        {"role": "user", "content": "Bye."},
    ]


def test_past_the_limit_the_oldest_half_goes_at_once_and_the_cut_is_reported() -> None:
    conversation = Conversation("p", history_turns=4)
    assert [conversation.record(f"u{i}", f"a{i}") for i in range(4)] == [False] * 4
    assert conversation.record("u4", "a4") is True
    assert len(conversation) == 3
    assert conversation.messages_for("x")[1]["content"] == "u2"


def test_a_turn_cancelled_before_any_word_is_remembered_as_silence() -> None:
    conversation = Conversation("p", history_turns=2)
    conversation.record("Are you there?", "   ")
    assert conversation.messages_for("x")[2] == {"role": "assistant", "content": "..."}


def test_no_history_keeps_nothing() -> None:
    conversation = Conversation("p", history_turns=0)
    assert conversation.record("u", "a") is False
    assert len(conversation) == 0


def test_a_prompt_too_long_for_the_context_sheds_the_oldest_half_until_none_is_left() -> None:
    """`shorten` is what a turn calls when the model's context is full before the limit
    (tests/test_context_overflow.py runs it through the daemon)."""
    conversation = Conversation("p", history_turns=8)
    for index in range(5):
        conversation.record(f"u{index}", f"a{index}")
    assert conversation.shorten() is True
    assert [m["content"] for m in conversation.messages_for("x")] == [
        "p", "u2", "a2", "u3", "a3", "u4", "a4", "x"]
    assert [conversation.shorten() for _ in range(3)] == [True] * 3  # 3 -> 2 -> 1 -> 0
    assert conversation.messages_for("x") == [{"role": "system", "content": "p"},
                                              {"role": "user", "content": "x"}]
    assert conversation.shorten() is False


def test_a_prompt_shortened_by_another_task_is_asked_again_without_a_second_cut() -> None:
    """`make_room` after a refused prompt: the typing prefill, the turn and the prefill
    after a turn may all meet the full context; only the first of them cuts."""
    conversation = Conversation("p", history_turns=8)
    for index in range(4):
        conversation.record(f"u{index}", f"a{index}")
    refused = conversation.messages_for("x")
    assert make_room(conversation, "x", refused) and len(conversation) == 2
    assert make_room(conversation, "x", refused) and len(conversation) == 2  # no second cut
    assert make_room(conversation, "x", conversation.messages_for("x"))
    assert len(conversation) == 1
    conversation.shorten()
    assert not make_room(conversation, "x", conversation.messages_for("x"))
