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

A typed line that ends a sentence ("Where is the smithy?") is likely what the player
is about to send, so its reply starts at once as a *speculative turn*
(`[server] speculative_typing`): the LLM and TTS work while the player reaches for
Enter, and everything is held back. A `say` with the same text releases it, so the
first audio can leave as soon as the `say` arrives; any other text, another `say`, a
scene, or `_SPECULATION_KEPT_S` without a `say` drops it without a word to the client.
The voice path's speculative turns work the same way, started on a pause
(`daemon.server.mic`). LiveKit Agents' `preemptive_generation` starts replies on a
transcript the same way, before the end of turn is confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge_protocol.messages import ErrorCode, Say, Typing
from daemon.config import Config
from daemon.llm.base import LlmStage, PromptTooLong
from daemon.llm.conversation import make_room
from daemon.pipeline.text import ends_sentence
from daemon.pipeline.timings import ms_since
from daemon.server.clients import Client
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turn_handle import TurnHandle
from daemon.server.turns import TurnManager, conversation_key

_LOGGER = logging.getLogger(__name__)


_SPECULATION_KEPT_S = 10.0
"""A speculative reply to a typed line is dropped when no `say` came this long after it
began: it holds a turn of the client's `max_turns_in_flight` and its audio meanwhile."""


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
    speculation: TurnHandle | None = None
    """The reply started on the typed line (a speculative turn), until said or dropped."""
    expiry: asyncio.TimerHandle | None = None
    """Drops `speculation` after `_SPECULATION_KEPT_S`."""


def _detach_speculation(typed: _Typed) -> TurnHandle | None:
    """Take `typed`'s speculative reply off it (its expiry cancelled); None if none."""
    handle, typed.speculation = typed.speculation, None
    if typed.expiry is not None:
        typed.expiry.cancel()
        typed.expiry = None
    return handle


class TypingPrefill:
    """Prefills conversations from `typing` messages.

    Args:
      config: The daemon's configuration (`max_text_chars`, `speculative_typing`).
      turns: Knows the conversations and which turns run.
      llm: Evaluates the prompts.
      sender: Sends errors.
      tasks: Runs the prefills.
      in_scene: Whether a client has a scene running (its lines are the scene's: no
        speculative reply then).
    """

    def __init__(self, config: Config, turns: TurnManager, llm: LlmStage, sender: Sender,
                 tasks: BackgroundTasks, in_scene: Callable[[Client], bool]) -> None:
        self._config = config
        self._turns = turns
        self._llm = llm
        self._sender = sender
        self._tasks = tasks
        self._in_scene = in_scene
        self._typed: dict[tuple[bytes, str], _Typed] = {}

    def typing(self, client: Client, message: Typing) -> None:
        """Note the line being typed: its reply starts if it ends a sentence.

        Otherwise a prefill starts if its complete words changed. A reply started on
        an earlier text of the line is dropped.

        Errors (`unknown_npc`, `text_too_long`) are sent to the client; nothing else is.
        """
        npc_id, text = message.npc_id, message.text.strip()
        problem = self._turns.npc_problem(npc_id, None)
        if problem is not None:
            self._sender.reject(client, *problem)
            return
        limit = self._config.server.max_text_chars
        if len(message.text) > limit:
            self._sender.reject(client, ErrorCode.TEXT_TOO_LONG,
                                f"the typed line has {len(message.text)} characters; the "
                                f"limit is {limit}")
            return
        typed = self._typed.setdefault((client.identity, npc_id), _Typed())
        held = typed.speculation
        if held is not None and not held.finished and held.turn.spec.utterance == text:
            return  # the same line again: its reply is under way
        self._drop_speculation(client, typed, "the line changed")
        if (self._config.server.speculative_typing
                and ends_sentence(text, self._config.npc_language(npc_id))
                and self._speculate(client, npc_id, text, typed)):
            return
        self.prefill_words(client, npc_id, message.text)

    def take_speculation(self, client: Client, npc_id: str) -> TurnHandle | None:
        """The reply started on what `client` typed to `npc_id`, for its `say` to settle.

        Called for every `say`; the caller releases the reply or drops it
        (`TurnManager.say`). None when there is none, or it ended meanwhile.
        """
        typed = self._typed.get((client.identity, npc_id))
        handle = _detach_speculation(typed) if typed is not None else None
        return None if handle is None or handle.finished else handle

    def _speculate(self, client: Client, npc_id: str, text: str, typed: _Typed) -> bool:
        """Start the reply to `text` as a speculative turn; False if it may not start.

        It may not while the NPC has a turn (no barge-in on a line not yet said), while
        a scene runs, or when the client's or the daemon's turn limits are reached.
        """
        if (client.active_turn_for(npc_id) is not None or self._in_scene(client)
                or self._turns.limit_problem(client, npc_id) is not None):
            return False
        say = Say(turn_id=client.speculative_turn_id(), npc_id=npc_id, text=text)
        typed.speculation = self._turns.start(client, say, time.perf_counter(),
                                              speculative=True)
        typed.expiry = asyncio.get_running_loop().call_later(
            _SPECULATION_KEPT_S, self._drop_speculation, client, typed,
            f"no say within {_SPECULATION_KEPT_S:.0f} s")
        _LOGGER.info("client %s typed a sentence to %s: its reply starts before the say "
                     "(%d characters)", client.label, npc_id, len(text))
        return True

    def _drop_speculation(self, client: Client, typed: _Typed, why: str) -> None:
        handle = _detach_speculation(typed)
        if handle is not None and not handle.finished:
            _LOGGER.info("client %s: the reply started on a typed line was dropped (%s)",
                         client.label, why)
            self._turns.drop(client, handle)

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
                messages = conversation.messages_for(wanted[1])
                try:
                    await self._llm.prefill_typing(key, messages, npc_id,
                                                   self._config.npc_tiers(npc_id))
                except PromptTooLong as error:  # shortened now, not at Enter on the turn's path
                    if make_room(conversation, wanted[1], messages):
                        _LOGGER.info("client %s: %s; %s's history shortened to %d turns",
                                     client.label, error, npc_id, len(conversation))
                    else:
                        _LOGGER.info("client %s: %s", client.label, error)  # its turn says so
                        typed.done = wanted
                    continue
                typed.done = wanted
                _LOGGER.info("client %s: prefilled %s's prompt with %d characters of the "
                             "line so far in %.0f ms", client.label, npc_id, len(wanted[1]),
                             ms_since(started))
        finally:
            typed.running = False
            if client.gone:  # its states were forgotten; this prefill may have saved one
                self._llm.forget([key])

    def client_gone(self, client: Client) -> None:
        """Forget what `client` was typing (its turns are stopped by the turn manager)."""
        for key in [key for key in self._typed if key[0] == client.identity]:
            _detach_speculation(self._typed.pop(key))
