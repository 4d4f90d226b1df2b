"""Prefill while the player types: `typing` messages -> the NPC's KV cache, ahead of `say`.

A typed turn's first cost is the LLM evaluating the new line (~20 tokens: ~200 ms with
one thread on a 2-core CPU, BENCHMARKS.md). While the player types, the line's complete
words are already known: evaluating the conversation's prompt up to them in the
background leaves only the last word or two, and the end-of-turn markup, for the `say`.

Only complete words are evaluated (the text up to the last space): a word still being
typed would tokenize differently once finished ("blacks" vs "blacksmith"), and the
final prompt would diverge from the cached one there. Prefills run at ambient priority
and yield to any waiting turn, one at a time per conversation; a newer text replaces
one not yet started, so a fast typist costs at most one prefill in flight.

Voice turns use the same path: while the player speaks, `daemon.server.mic` transcribes
the speech so far and passes the text to `prefill_words`, as if it had been typed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bridge_protocol.messages import ErrorCode, Typing
from daemon.config import Config
from daemon.llm.base import LlmStage
from daemon.pipeline.timings import ms_since
from daemon.server.clients import Client
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turns import TurnManager, conversation_key

_LOGGER = logging.getLogger(__name__)


def complete_words(text: str) -> str:
    """The part of a line being typed whose words are finished: up to its last space.

    >>> complete_words("  Where is the blacks")
    'Where is the'
    >>> complete_words("Where is the ")
    'Where is the'
    """
    text = text.lstrip()
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    return text[:cut].rstrip() if cut > 0 else ""


@dataclass(eq=False)
class _Typed:
    """One conversation's line being typed."""

    wanted: tuple[int, str] = (0, "")
    """(history length, complete words) to have in the cache."""
    done: tuple[int, str] = (0, "")
    """What the last prefill put there."""
    running: bool = False


class TypingPrefill:
    """Prefills conversations from `typing` messages.

    Args:
      config: The daemon's configuration (`max_text_chars`).
      turns: Knows the conversations and which turns run.
      llm: Evaluates the prompts.
      sender: Sends errors.
      tasks: Runs the prefills.
    """

    def __init__(self, config: Config, turns: TurnManager, llm: LlmStage, sender: Sender,
                 tasks: BackgroundTasks) -> None:
        self._config = config
        self._turns = turns
        self._llm = llm
        self._sender = sender
        self._tasks = tasks
        self._typed: dict[tuple[bytes, str], _Typed] = {}

    def typing(self, client: Client, message: Typing) -> None:
        """Note the line being typed; start a prefill if its complete words changed.

        Errors (`unknown_npc`, `text_too_long`) are sent to the client; nothing else is.
        """
        problem = self._turns.npc_problem(message.npc_id, None)
        if problem is not None:
            self._sender.reject(client, *problem)
            return
        limit = self._config.server.max_text_chars
        if len(message.text) > limit:
            self._sender.reject(client, ErrorCode.TEXT_TOO_LONG,
                                f"the typed line has {len(message.text)} characters; the "
                                f"limit is {limit}")
            return
        self.prefill_words(client, message.npc_id, message.text)

    def prefill_words(self, client: Client, npc_id: str, text: str) -> None:
        """Prefill `npc_id`'s prompt with the finished words of `text`, in the background.

        `text` is the player's line so far (typed, or the speech so far transcribed);
        `npc_id` must be a known NPC and `text` within `max_text_chars`.
        """
        words = complete_words(text)
        if not words:
            return
        typed = self._typed.setdefault((client.identity, npc_id), _Typed())
        conversation = self._turns.conversation(client, npc_id)
        typed.wanted = (len(conversation), words)
        if not typed.running and typed.wanted != typed.done:
            typed.running = True
            self._tasks.start(self._prefill(client, npc_id, typed),
                              name=f"typing-{client.identity.hex()}-{npc_id}")

    async def _prefill(self, client: Client, npc_id: str, typed: _Typed) -> None:
        key = conversation_key(npc_id, client.identity)
        try:
            while typed.wanted != typed.done and not client.gone:
                if client.active_turn_for(npc_id) is not None:
                    return  # its history is about to change: the next `typing` will do
                wanted = typed.wanted
                conversation = self._turns.conversation(client, npc_id)
                started = time.perf_counter()
                await self._llm.prefill_typing(key, conversation.messages_for(wanted[1]),
                                               npc_id, self._config.npc_tiers(npc_id))
                typed.done = wanted
                _LOGGER.info("client %s: prefilled %s's prompt with %d characters of the "
                             "line so far in %.0f ms", client.label, npc_id, len(wanted[1]),
                             ms_since(started))
        finally:
            typed.running = False
            if client.gone:  # its states were forgotten; this prefill may have saved one
                self._llm.forget([key])

    def client_gone(self, client: Client) -> None:
        """Forget what `client` was typing."""
        for key in [key for key in self._typed if key[0] == client.identity]:
            del self._typed[key]
