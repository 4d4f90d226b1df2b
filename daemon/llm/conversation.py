"""Per-NPC conversations: the persona and a bounded, byte-stable history.

The prompt is always `[system persona] + earlier turns + [new utterance]`, appended
to and never rewritten (no timestamps, no summaries), so llama.cpp's prefix match
reuses the KV cache of everything but the new utterance. A sliding window would
change the prompt right after the persona on every turn and force a full re-prefill
(measured: ~450 tokens, ~2 s on a 2-core CPU), so the history grows until it holds
`history_turns` turns and is then cut to half at once; the server re-prefills the
shortened prefix in the background, off the next turn's critical path.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from daemon.llm.base import ChatMessage


class Dialogue(Protocol):
    """What a turn needs of the conversation it belongs to.

    A `Conversation` (one NPC with one client), or one NPC's side of a scene
    (`scene_prompt.SceneDialogue`).
    """

    def messages_for(self, utterance: str) -> list[ChatMessage]:
        """The chat prompt of the turn answering `utterance`."""
        ...

    def record(self, utterance: str, reply: str) -> bool:
        """Remember the finished turn; True if older history was dropped."""
        ...

    def shorten(self) -> bool:
        """Drop the oldest half of what the prompt remembers; False if nothing can go.

        Called when the prompt outgrew the model's context.
        """
        ...

    def __len__(self) -> int:
        """Earlier turns (or lines) remembered."""
        ...


class Conversation:
    """The history of one NPC with one client.

    Args:
      persona: The NPC's system prompt.
      history_turns: Most earlier turns kept (each = one user and one assistant message);
        when exceeded, the oldest half is dropped.
    """

    def __init__(self, persona: str, history_turns: int) -> None:
        self._persona = persona
        self._history_turns = history_turns
        self._turns: deque[tuple[str, str]] = deque()

    def messages_for(self, utterance: str) -> list[ChatMessage]:
        """Chat messages for a new player `utterance`."""
        messages: list[ChatMessage] = [{"role": "system", "content": self._persona}]
        for user, assistant in self._turns:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        messages.append({"role": "user", "content": utterance})
        return messages

    def record(self, utterance: str, reply: str) -> bool:
        """Remember a finished turn: what the player said and what the NPC spoke.

        A cancelled turn records only what was spoken before the cancel, so the NPC
        never "remembers" words the player did not hear.

        Returns:
          True if older turns were dropped (the prompt prefix changed: worth a
          background re-prefill).
        """
        if self._history_turns == 0:
            return False
        self._turns.append((utterance, reply.strip() or "..."))
        if len(self._turns) <= self._history_turns:
            return False
        for _ in range(max(1, self._history_turns // 2)):
            self._turns.popleft()
        return True

    def shorten(self) -> bool:
        """Drop the oldest half of the earlier turns (at least one), at once.

        For a prompt that outgrew the model's context before `history_turns` was
        reached (long lines, long replies, a long persona). Half at once, as `record`
        does, so that the prefix stays stable for the turns after.

        Returns:
          False if there was no earlier turn to drop.
        """
        if not self._turns:
            return False
        for _ in range(max(1, len(self._turns) // 2)):
            self._turns.popleft()
        return True

    def __len__(self) -> int:
        return len(self._turns)


def make_room(dialogue: Dialogue, utterance: str, refused: list[ChatMessage]) -> bool:
    """After the model's context refused the prompt `refused`: whether to ask again.

    True if the dialogue's prompt for `utterance` is shorter now: it changed since
    `refused` was built (another task shortened it), or its oldest half goes now.
    False if nothing can go: the persona and the line alone do not fit.
    """
    return dialogue.messages_for(utterance) != refused or dialogue.shorten()


def persona_messages(persona: str) -> list[ChatMessage]:
    """The warm-up prompt evaluated once per NPC at start-up (persona prefix)."""
    return [{"role": "system", "content": persona}, {"role": "user", "content": "Hello."}]
