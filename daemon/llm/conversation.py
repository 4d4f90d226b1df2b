"""Per-NPC conversations: the persona and a bounded, byte-stable history.

The prompt is always `[system persona] + earlier turns + [new utterance]`, appended
to and never rewritten (no timestamps, no summaries), so llama.cpp's prefix match
reuses the KV cache of everything but the new utterance.
"""

from __future__ import annotations

from collections import deque

from daemon.llm.llama import ChatMessage


class Conversation:
    """The history of one NPC with one client.

    Args:
      persona: The NPC's system prompt.
      history_turns: Earlier turns kept (each = one user and one assistant message).
    """

    def __init__(self, persona: str, history_turns: int) -> None:
        self._persona = persona
        self._turns: deque[tuple[str, str]] = deque(maxlen=history_turns)

    def messages_for(self, utterance: str) -> list[ChatMessage]:
        """Chat messages for a new player `utterance`."""
        messages: list[ChatMessage] = [{"role": "system", "content": self._persona}]
        for user, assistant in self._turns:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        messages.append({"role": "user", "content": utterance})
        return messages

    def record(self, utterance: str, reply: str) -> None:
        """Remember a finished turn: what the player said and what the NPC spoke.

        A cancelled turn records only what was spoken before the cancel, so the NPC
        never "remembers" words the player did not hear. A turn with no spoken reply
        is still recorded: the player did say it.
        """
        if self._turns.maxlen == 0:
            return
        self._turns.append((utterance, reply.strip() or "..."))

    def __len__(self) -> int:
        return len(self._turns)


def persona_messages(persona: str) -> list[ChatMessage]:
    """The warm-up prompt evaluated once per NPC at start-up (persona prefix)."""
    return [{"role": "system", "content": persona}, {"role": "user", "content": "Hello."}]
