"""What an NPC hears in a scene, and who speaks next: the pure core of group scenes.

A scene is several NPCs (and maybe the player) in one conversation. Every line said is
kept in one transcript, attributed by name; each speaker's prompt is its own persona
plus the scene (who is there, the situation), then the transcript so far, so replies
follow the thread. The system message of a speaker never changes during the scene and
the transcript only grows, so the LLM's prompt cache keeps serving each speaker's
prefix.

Who speaks next (`next_speaker`), in order: the NPC the player addressed; else an NPC
named in the last line (by its first name or full display name); else the next NPC in
the scene's order after the last speaker. Never the same NPC twice in a row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from daemon.llm.base import ChatMessage

_ARTICLES = frozenset({"the", "a", "an"})

PLAYER = "The player"
"""How the player's lines are attributed in the transcript."""


@dataclass(frozen=True)
class SceneMember:
    """One NPC of a scene.

    Attributes:
      npc_id: Its id.
      name: Its display name ("Brom the Blacksmith").
      persona: Its system prompt.
    """

    npc_id: str
    name: str
    persona: str

    @property
    def first_name(self) -> str:
        """How others address it: the display name's first word that is not an article.

        "Brom" of "Brom the Blacksmith", "Oracle" of "The Oracle".
        """
        words = [w for w in self.name.split() if w.lower() not in _ARTICLES]
        return words[0] if words else self.npc_id


@dataclass
class SceneTranscript:
    """The lines of one scene, and each member's prompt.

    Args:
      members: The NPCs, in speaking order.
      situation: What the scene is about ("" = nothing said).
      lines_heard: Most lines a prompt holds; when a line passes it the oldest half
        leaves the prompts at once (a sliding window would change the prompt's start,
        and so re-evaluate it whole, at every line).
    """

    members: list[SceneMember]
    situation: str = ""
    lines_heard: int = 10
    lines: list[tuple[str, str]] = field(default_factory=list)
    first_heard: int = 0
    """Index of the oldest line the prompts still hold."""

    def member(self, npc_id: str) -> SceneMember:
        """The member `npc_id`.

        Raises:
          KeyError: not in the scene.
        """
        for member in self.members:
            if member.npc_id == npc_id:
                return member
        raise KeyError(npc_id)

    def add(self, speaker: str, text: str) -> int | None:
        """Record a line said; returns its index (None: an empty line is not kept)."""
        if not text.strip():
            return None
        self.lines.append((speaker, " ".join(text.split())))
        if len(self.lines) - self.first_heard > self.lines_heard:
            self.first_heard = len(self.lines) - max(1, self.lines_heard // 2)
        return len(self.lines) - 1

    def shorten(self) -> bool:
        """Drop the oldest half of the lines the prompts hold, keeping the last one.

        For prompts that outgrew the model's context before `lines_heard` lines.

        Returns:
          False if the prompts hold one line or none.
        """
        heard = len(self.lines) - self.first_heard
        if heard <= 1:
            return False
        self.first_heard = len(self.lines) - max(1, heard // 2)
        return True

    @property
    def heard(self) -> list[tuple[str, str]]:
        """The lines the prompts hold: (speaker, text), oldest first."""
        return self.lines[self.first_heard:]

    def replace(self, index: int, text: str) -> None:
        """What line `index` actually said (a line cut short says less than it wrote)."""
        speaker, _ = self.lines[index]
        self.lines[index] = (speaker, " ".join(text.split()) or "...")

    def messages_for(self, npc_id: str) -> list[ChatMessage]:
        """The chat prompt of `npc_id`'s next line."""
        me = self.member(npc_id)
        others = [m.name for m in self.members if m.npc_id != npc_id]
        company = ", ".join(others[:-1]) + (" and " if len(others) > 1 else "") + others[-1]
        # The player is always mentioned: the system prompt never changes in a scene.
        system = (f"{me.persona}\n\nYou are {me.name}, talking with {company}; the "
                  "player may join in."
                  + (f" {self.situation}" if self.situation else "")
                  + f" Speak only as {me.first_name}: one or two short sentences, without "
                    "your name in front and without the others' lines.")
        if self.lines:
            said = "\n".join(f"{speaker}: {text}" for speaker, text in self.heard)
            user = f"What was said so far:\n{said}\n\nNow {me.first_name} speaks."
        else:
            user = f"{self.situation or 'Start the conversation.'} Now {me.first_name} speaks."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def prompt_prefix_for(self, npc_id: str) -> list[ChatMessage]:
        """The part of `npc_id`'s next prompt that is already fixed.

        The system message and the transcript so far, the user message left open:
        `messages_for` continues it with the lines still to come and "Now ... speaks.".
        """
        system, _ = self.messages_for(npc_id)
        said = "".join(f"{speaker}: {text}\n" for speaker, text in self.heard)
        return [system, {"role": "user", "content": f"What was said so far:\n{said}"}]

    def view(self, npc_id: str) -> SceneDialogue:
        """`npc_id`'s side of the scene, as a turn records it (see `SceneDialogue`)."""
        return SceneDialogue(self, npc_id)


class SceneDialogue:
    """One NPC's line in a scene, with the interface a turn expects of its conversation.

    `messages_for` ignores its argument (the player's line, if any, is already in the
    transcript); `record` does nothing, since the scene keeps the transcript itself
    (`daemon.server.scenes`).
    """

    def __init__(self, transcript: SceneTranscript, npc_id: str) -> None:
        self._transcript = transcript
        self._npc_id = npc_id

    def messages_for(self, utterance: str) -> list[ChatMessage]:
        """The prompt of the line (the transcript holds the player's line already)."""
        return self._transcript.messages_for(self._npc_id)

    def record(self, utterance: str, reply: str) -> bool:
        """Nothing to do: the scene puts each line in the transcript itself.

        It adds a line once its text is complete (so the next speaker can be prepared
        while it still plays) and rewrites it to what was said only if the player cut
        it short; recording it again when the turn ends would say it twice. The history
        is never cut here (False).
        """
        return False

    def shorten(self) -> bool:
        """Drop the oldest half of the lines in every member's prompt (the scene's)."""
        return self._transcript.shorten()

    def __len__(self) -> int:
        return len(self._transcript.lines)


def _mentions(text: str, member: SceneMember) -> bool:
    for name in {member.first_name, member.name}:
        if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
            return True
    return False


def next_speaker(members: list[SceneMember], last: str | None, last_text: str = "",
                 addressed: str | None = None) -> str:
    """The NPC id who speaks next (module docstring: the policy).

    Args:
      members: The scene's NPCs, in speaking order (at least two).
      last: The NPC id of the last speaker (None before the first line, or when the
        player spoke last).
      last_text: The last line said (by an NPC or the player).
      addressed: An NPC the player addressed; it answers next whatever else holds.
    """
    if addressed is not None and addressed != last:
        return addressed
    candidates = [m for m in members if m.npc_id != last]
    named = [m for m in candidates if _mentions(last_text, m)]
    if named:
        return named[0].npc_id
    if last is None:
        return members[0].npc_id
    ids = [m.npc_id for m in members]
    return ids[(ids.index(last) + 1) % len(ids)]
