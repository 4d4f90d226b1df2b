"""The turn lifecycle: start, barge-in, cancel, finish, and speculative turns.

Every turn of every client starts and ends here, so this module alone emits terminal
events (through the turn's `TurnHandle`, which guarantees exactly one). A turn runs as a
named task; the LLM stage and the voices are shared by all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bridge_protocol.messages import (
    Cancelled,
    CancelReason,
    DaemonMessage,
    Done,
    Error,
    ErrorCode,
    Say,
    TurnTimings,
)
from daemon.config import Config, Tiers
from daemon.llm.base import LlmStage, PromptTooLong
from daemon.llm.conversation import Conversation, Dialogue, make_room
from daemon.metrics import Telemetry
from daemon.pipeline.turn import Turn, TurnSpec
from daemon.priorities import rank
from daemon.server.clients import Client, ClientTooSlow
from daemon.server.memory import MemoryTrimmer
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turn_handle import TurnHandle, TurnState
from daemon.tts.base import Voice

_LOGGER = logging.getLogger(__name__)

Problem = tuple[str, str]
"""(error code, message) of a request that cannot be served."""


def conversation_key(npc_id: str, identity: bytes) -> str:
    """KV-state key of one NPC's conversation with one client."""
    return f"{npc_id}/{identity.hex()}"


class TurnManager:
    """Starts, stops and finishes the turns of every client.

    Args:
      config: Validated configuration.
      llm: The LLM stage shared by every turn.
      voices: Voice by the config's voice name.
      sender: Where messages go.
      tasks: Registry for background work (KV maintenance).
      telemetry: Receives each finished turn.
      trimmer: Gives freed memory back to the OS once no turn runs.
    """

    def __init__(self, config: Config, llm: LlmStage, voices: dict[str, Voice],
                 sender: Sender, tasks: BackgroundTasks, telemetry: Telemetry,
                 trimmer: MemoryTrimmer) -> None:
        self._config = config
        self._llm = llm
        self._voices = voices
        self._sender = sender
        self._tasks = tasks
        self._telemetry = telemetry
        self._trimmer = trimmer
        self._running: dict[TurnHandle, Client] = {}

    @property
    def running_count(self) -> int:
        """Unfinished turns of all clients."""
        return len(self._running)

    # ------------------------------------------------------------------ checks

    def npc_problem(self, npc_id: str, profile: str | None) -> Problem | None:
        """Why `npc_id` or `profile` cannot be used, or None."""
        config = self._config
        if npc_id not in config.npcs:
            return ErrorCode.UNKNOWN_NPC, (
                f"no NPC {npc_id!r}; known: {', '.join(sorted(config.npcs))}")
        if profile is not None and profile not in config.profile_names():
            return ErrorCode.UNKNOWN_PROFILE, (
                f"no profile {profile!r}; known: {', '.join(config.profile_names())}")
        return None

    def limit_problem(self, client: Client, npc_id: str) -> Problem | None:
        """Why `client` may not start another turn with `npc_id` now, or None."""
        barge_in = client.active_turn_for(npc_id) is not None
        server = self._config.server
        if len(client.turns) - barge_in >= server.max_turns_in_flight:
            return ErrorCode.TOO_MANY_TURNS, (
                f"{len(client.turns)} turns are unfinished; the limit is "
                f"{server.max_turns_in_flight}")
        if self.running_count - barge_in >= server.max_turns_total:
            return ErrorCode.TOO_MANY_TURNS, (
                f"the daemon has {self.running_count} unfinished turns (all clients); "
                f"the limit is {server.max_turns_total}")
        return None

    def _say_problem(self, client: Client, say: Say) -> Problem | None:
        text = say.text.strip()
        limit = self._config.server.max_text_chars
        if not text:
            return ErrorCode.EMPTY_TEXT, "the player's line is empty"
        if len(text) > limit:
            return ErrorCode.TEXT_TOO_LONG, (
                f"the player's line has {len(text)} characters; the limit is {limit}")
        return self.npc_problem(say.npc_id, say.profile) or self.limit_problem(client,
                                                                               say.npc_id)

    # ------------------------------------------------------------------ client requests

    def accept_turn_id(self, client: Client, turn_id: int) -> bool:
        """Take `turn_id` as the client's newest, or refuse it (`turn_id_reused`)."""
        if turn_id <= client.last_turn_id:
            # Not a terminal event for turn_id: that id may be a live turn.
            self._sender.reject(client, ErrorCode.TURN_ID_REUSED,
                                f"turn id {turn_id} is not greater than the last one "
                                f"({client.last_turn_id}); turn ids must increase",
                                rejected_turn_id=turn_id)
            return False
        client.last_turn_id = turn_id
        return True

    def say_problem(self, client: Client, say: Say) -> Problem | None:
        """Why `say` cannot start a turn now (text, NPC, profile, limits), or None."""
        return self._say_problem(client, say)

    def say(self, client: Client, say: Say, speculation: TurnHandle | None = None) -> None:
        """A typed line: check it and start its turn, or end it with an error.

        Args:
          client: Who said it.
          say: The request.
          speculation: A reply already started on this line while it was typed
            (`daemon.server.typing`): released as this turn when it is for the same
            text, profile and priority; dropped otherwise.
        """
        received_at = time.perf_counter()
        if not self.accept_turn_id(client, say.turn_id):
            if speculation is not None:
                self.drop(client, speculation)
            return
        if speculation is not None:
            if self._matches(speculation, say) and self.release(client, speculation,
                                                                 say.turn_id) is not None:
                speculation.turn.rebase(received_at)
                _LOGGER.info("turn %d of %s: the reply started %.0f ms before the say, on "
                             "the typed line", say.turn_id, client.label,
                             speculation.turn.progress.timings.speculative_lead_ms or 0.0)
                self.go_live(client, speculation)
                return
            self.drop(client, speculation)
        problem = self._say_problem(client, say)
        if problem is not None:
            code, text = problem
            self._sender.send(client, Error(code=code, message=text, turn_id=say.turn_id))
            return
        self.start(client, say, received_at)

    def _matches(self, speculation: TurnHandle, say: Say) -> bool:
        """Whether `speculation` is the reply `say` asks for (same NPC, text, profile, priority).

        That it is still speculative is for `release` to check.
        """
        spec = speculation.turn.spec
        if spec.npc_id != say.npc_id:
            return False
        profile_name, _ = self._config.npc_profiles(say.npc_id, say.profile)
        return (spec.utterance == say.text.strip() and spec.profile_name == profile_name
                and spec.priority == rank(say.priority))

    def cancel(self, client: Client, turn_id: int) -> None:
        """The game cancels a turn (`cancel`)."""
        handle = client.turns.get(turn_id)
        if handle is None or handle.speculative:
            self._sender.reject(client, ErrorCode.UNKNOWN_TURN,
                                f"no unfinished turn {turn_id} to cancel",
                                rejected_turn_id=turn_id)
            return
        self.stop(client, handle, "cancel")

    def barge_in(self, client: Client, npc_id: str) -> None:
        """The player started speaking to `npc_id`: stop its live turn, if any."""
        handle = client.active_turn_for(npc_id)
        if handle is not None and not handle.speculative:
            self.stop(client, handle, "barge_in")

    # ------------------------------------------------------------------ lifecycle

    def start(self, client: Client, say: Say, received_at: float,
              speculative: bool = False, dialogue: Dialogue | None = None,
              key: str | None = None) -> TurnHandle:
        """Start a validated turn (a typed `say`, a recognised utterance, a scene line).

        Args:
          client: Whose turn.
          say: The request; its turn id must already be accepted for this client.
          received_at: `time.perf_counter()` of the complete utterance (TTFA zero).
          speculative: Hold everything back until `release` (or `drop`).
          dialogue: What the turn belongs to; None = the NPC's conversation with the
            client. A scene passes its speaker's side of the scene.
          key: KV-state key of `dialogue` (required with it).

        Returns:
          The running turn's handle.
        """
        previous = client.active_turn_for(say.npc_id)
        if previous is not None:
            self.stop(client, previous, "barge_in")
        spec = self._spec(client, say, received_at, dialogue, key)
        handle: TurnHandle

        def deliver(message: DaemonMessage, pcm: bytes | None) -> None:
            handle.deliver(message, pcm, lambda m, p: self._sender.send(client, m, p))

        handle = TurnHandle(Turn(spec, self._llm, deliver),
                            TurnState.SPECULATIVE if speculative else TurnState.LIVE)
        client.turns[say.turn_id] = handle
        self._running[handle] = client
        self._trimmer.hold()  # a trim now would take back the pages this turn is about to use
        handle.task = asyncio.create_task(
            self._drive(client, handle), name=f"turn-{client.identity.hex()}-{say.turn_id}")
        return handle

    def _spec(self, client: Client, say: Say, received_at: float,
              dialogue: Dialogue | None, key: str | None) -> TurnSpec:
        config = self._config
        npc = config.npcs[say.npc_id]
        profile_name, continuation_name = config.npc_profiles(say.npc_id, say.profile)
        voice = self._voices[npc.voice]
        conversation = (dialogue if dialogue is not None  # an empty one is falsy
                        else self.conversation(client, say.npc_id))
        return TurnSpec(
            turn_id=say.turn_id, npc_id=say.npc_id, utterance=say.text.strip(),
            profile_name=profile_name,
            profile=voice.shape_profile(config.profile(profile_name)),
            voice=voice, conversation=conversation,
            conversation_key=key or conversation_key(say.npc_id, client.identity),
            out_rate_hz=client.sample_rate_hz or voice.sample_rate_hz, timing=client.timing,
            received_at=received_at, tiers=config.npc_tiers(say.npc_id),
            language=config.npc_language(say.npc_id),
            continuation_profile=(config.profile(continuation_name)
                                  if continuation_name else None),
            priority=rank(say.priority))

    def conversation(self, client: Client, npc_id: str) -> Conversation:
        """`client`'s conversation with `npc_id`, begun now if there is none yet."""
        conversation = client.conversations.get(npc_id)
        if conversation is None:
            conversation = Conversation(self._config.npc_system_prompt(npc_id),
                                        self._config.llm.history_turns)
            client.conversations[npc_id] = conversation
        return conversation

    def release(self, client: Client, handle: TurnHandle, turn_id: int | None = None
                ) -> int | None:
        """Confirm a speculative turn: give it the client's next id (or `turn_id`).

        Speculative turns run under a negative id, so one that is dropped never uses
        up an id the client could be about to send. What it held is sent by `go_live`.

        Returns:
          The turn's id, or None if it had already ended (dropped meanwhile).
        """
        if not handle.speculative:
            return None
        if turn_id is None:
            turn_id = client.last_turn_id = client.last_turn_id + 1
        client.turns.pop(handle.turn_id, None)
        client.turns[turn_id] = handle
        handle.assign_id(turn_id)
        return turn_id

    def go_live(self, client: Client, handle: TurnHandle) -> None:
        """Send a released turn's held-back messages (after its `transcript`)."""
        terminal = handle.release(lambda m, p: self._sender.send(client, m, p))
        if terminal is not None:
            self._finish(client, handle, terminal)

    def drop(self, client: Client, handle: TurnHandle) -> None:
        """Drop a speculative turn without a word to the client (the player went on)."""
        if handle.finished:
            return
        handle.drop()
        client.turns.pop(handle.turn_id, None)
        self._running.pop(handle, None)
        _LOGGER.info("speculative turn %s of %s dropped", handle.turn_id, client.label)

    def stop(self, client: Client, handle: TurnHandle, reason: CancelReason) -> None:
        """Cancel a turn end to end: its queued blocks go, `cancelled` is sent."""
        if handle.finished:
            return
        if handle.speculative:  # the client never heard of it
            self.drop(client, handle)
            return
        turn = handle.turn
        turn.stop.set()
        dropped_blocks = client.drop_queued(handle.turn_id)
        self._finish(client, handle, Cancelled(
            turn_id=handle.turn_id, reason=reason,
            block_count=turn.progress.block_count - dropped_blocks,
            timings=turn.progress.timings))
        handle.stop()

    async def _drive(self, client: Client, handle: TurnHandle) -> None:
        turn = handle.turn
        spec, progress = turn.spec, turn.progress
        try:
            await turn.run()
        except asyncio.CancelledError:
            return  # whoever cancelled it has ended it
        except ClientTooSlow as exc:
            _LOGGER.warning("turn %s of %s: %s", handle.turn_id, client.label, exc)
            client.drop_queued(handle.turn_id)
            self._finish(client, handle, Error(code=ErrorCode.CLIENT_TOO_SLOW,
                                               message=str(exc), turn_id=handle.turn_id))
        except PromptTooLong as exc:  # even without history: the line is what is too long
            _LOGGER.warning("turn %s of %s: %s", handle.turn_id, client.label, exc)
            self._finish(client, handle, Error(
                code=ErrorCode.TEXT_TOO_LONG, turn_id=handle.turn_id,
                message=f"the line does not fit {spec.npc_id}'s model with its persona: {exc}"),
                remember=False)  # in the history, it would not fit the next turns either
        except Exception as exc:
            _LOGGER.exception("turn %s of %s failed", handle.turn_id, client.label)
            self._finish(client, handle, Error(
                code=ErrorCode.ENGINE_FAILED, turn_id=handle.turn_id,
                message=f"{type(exc).__name__}: {exc}"))
        else:
            self._finish(client, handle, Done(
                turn_id=handle.turn_id, block_count=progress.block_count,
                sample_count=progress.sample_count, reply_text=progress.spoken_text,
                profile=spec.profile_name, timings=progress.timings))

    def _finish(self, client: Client, handle: TurnHandle, terminal: DaemonMessage,
                remember: bool = True) -> None:
        """End the turn with its one terminal event; remember what was said.

        `remember` False keeps the turn out of the conversation's history.
        """
        if not handle.end(terminal, lambda m, p: self._sender.send(client, m, p)):
            return  # speculative: kept until released
        spec, progress = handle.turn.spec, handle.turn.progress
        client.turns.pop(handle.turn_id, None)
        self._running.pop(handle, None)
        history_cut = remember and spec.conversation.record(spec.utterance,
                                                            progress.spoken_text)
        filling = isinstance(terminal, Done) and self._filling(progress.timings)
        if not client.gone and (history_cut or filling or (spec.tiers == "both"
                                                           and len(spec.conversation))):
            self._tasks.start(
                self.after_turn(client, spec.conversation_key, spec.conversation, spec.tiers,
                                history_cut, spec.utterance if filling else ""),
                name=f"prefill-{spec.conversation_key}")
        self._telemetry.turn_finished(client.label, spec, progress, terminal)
        for callback in handle.on_end:
            try:
                callback(terminal)
            except Exception:  # a listener's bug must not break the turn or its peers
                _LOGGER.exception("a listener of turn %s failed", handle.turn_id)
        if not self._running:
            self._trimmer.request()  # idle: give the turns' buffers back to the OS

    def _filling(self, timings: TurnTimings) -> bool:
        """Whether the next turn, with a line as long as this one, may not fit the context.

        An estimate: this turn's prompt and reply, the tokens this turn evaluated (its
        line and markup, usually) and a full reply against `n_ctx`. The prefill after
        the turn then checks it exactly, with this turn's line standing in for the next.
        """
        llm = self._config.llm
        if llm.backend == "openai":
            return False  # the server's own context applies, unknown here
        used = timings.prompt_tokens + timings.reply_tokens
        return used + timings.prefill_tokens + llm.max_reply_tokens > llm.n_ctx

    async def after_turn(self, client: Client, key: str, conversation: Dialogue,
                         tiers: Tiers, history_cut: bool, upcoming: str = "") -> None:
        """Bring conversation `key`'s KV caches up to date (`LlmStage.after_turn`).

        Runs in the background once a turn has ended. The prefill waits for a free
        context at ambient priority, so `client` may leave first: its saved states are
        forgotten then (`client_gone`), and this prefill would save one again, kept
        until the state cache's LRU bound pushed it out. The reliability suite's quick
        form left four or five such states (~20 MB) before this forgot them.

        A prompt that no longer fits the model's context drops the oldest half of the
        history here, so that the next turn finds the shortened prefix evaluated rather
        than evaluating it on its own path (seconds for a long conversation). `upcoming`
        stands in for the next line (this turn's, when the conversation nears the
        context), so the check counts a line like it.
        """
        try:
            while True:
                started = time.perf_counter()
                messages = conversation.messages_for(upcoming)
                try:
                    await self._llm.after_turn(key, messages, tiers, history_cut)
                    _LOGGER.info("%s: prompt evaluated after the turn in %.0f ms", key,
                                 (time.perf_counter() - started) * 1000.0)
                    return
                except PromptTooLong as error:
                    if not make_room(conversation, upcoming, messages):
                        raise
                    history_cut = True
                    _LOGGER.info("%s: %s; its history shortened to %d turns", key, error,
                                 len(conversation))
        finally:
            if client.gone:
                self._llm.forget([key])
            if not self._running:
                self._trimmer.request()  # the prefill's batches and the old state are freed

    # ------------------------------------------------------------------ clients leaving

    def client_gone(self, client: Client) -> None:
        """Cancel `client`'s turns quietly and forget its conversations' cached state."""
        tasks = [handle.task for handle in client.turns.values() if handle.task is not None]
        for handle in list(client.turns.values()):
            self.stop(client, handle, "cancel")
        keys = [conversation_key(npc_id, client.identity) for npc_id in client.conversations]
        client.conversations.clear()
        self._tasks.start(self._forget(keys, tasks), name=f"forget-{client.identity.hex()}")

    async def _forget(self, keys: list[str], tasks: list[asyncio.Task[None]]) -> None:
        # An engine saves a conversation's state when its job ends, which may be after
        # the cancel: forget only once the cancelled turns are over.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._llm.forget(keys)
        self._trimmer.request()

    def stop_all(self, reason: CancelReason) -> list[asyncio.Task[None]]:
        """Cancel every turn (shutdown); returns their tasks, to wait for."""
        tasks = []
        for handle, client in list(self._running.items()):
            if handle.task is not None:
                tasks.append(handle.task)
            self.stop(client, handle, reason)
        return tasks
