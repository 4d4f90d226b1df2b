"""Group scenes: several NPCs talk, one at a time, and the player can join in.

A scene's lines are ordinary turns (`turns.TurnManager`), each announced by
`scene_line`. Every line starts *speculative* (its messages held back, as for a voice
turn started on a pause) and is released when it may play: the first at once, each next
one when the previous line's audio has played at the client plus the scene's pause
(`[scenes] gap_ms`). The next line is generated while the current one is still
speaking (it starts as soon as the current line's text is complete), so the gap
between speakers is a pause, not a TTFA.

When the line's audio ends at the client is modelled from when its blocks left
(`daemon.pipeline.playback.PlaybackClock`): playback starts at the first block plus the
NPC's pre-buffer, runs in real time and stalls on a late block.

The player speaks into a scene with a `say` carrying `scene_id`: the NPC speaking stops
after the clause the client is playing (`interjection = "clause"`) or at once: the daemon
stops generating it and sends `scene_cut`, since the client may already hold seconds of
the line's later audio. The line prepared is dropped, and the NPC the player addressed
answers next, with the player's turn id, once the cut line has played to the cut.

While lines play the LLM is mostly idle, so every member's prompt is evaluated ahead up
to the transcript so far, at ambient priority (`_warm`): whoever speaks next, the NPC
the player addresses included, starts from a warm prompt where only the newest lines
are new, instead of evaluating its scene prompt cold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from bridge_protocol.messages import (
    Cancelled,
    CancelReason,
    DaemonMessage,
    Done,
    Error,
    ErrorCode,
    Say,
    SceneCut,
    SceneEnded,
    SceneEndReason,
    SceneLine,
    SceneStart,
)
from daemon.config import Config
from daemon.llm.base import LlmStage
from daemon.llm.scene_prompt import PLAYER, SceneMember, SceneTranscript, next_speaker
from daemon.server.clients import Client
from daemon.server.sender import Sender
from daemon.server.tasks import BackgroundTasks
from daemon.server.turn_handle import TurnHandle
from daemon.server.turns import TurnManager

_LOGGER = logging.getLogger(__name__)


@dataclass(eq=False)
class _Line:
    """A line of a scene: its turn, who speaks, whether it answers the player."""

    handle: TurnHandle
    npc_id: str
    answers_player: bool
    transcript_index: int | None = None  # where its text went in the transcript
    interrupted: bool = False  # the player spoke into it: it says less than it wrote


@dataclass(eq=False)
class Scene:
    """One open scene of one client."""

    scene_id: int
    client: Client
    transcript: SceneTranscript
    max_lines: int
    lines: int = 0
    current: _Line | None = None
    upcoming: _Line | None = None
    last_speaker: str | None = None
    play_end_at: tuple[float, float] = (0.0, 0.0)
    """When the line speaking has played at the client, by the addon's playback rule
    and by DESIGN's (`daemon.pipeline.playback`)."""
    release: asyncio.TimerHandle | None = None
    ended: bool = False
    warmed_lines: int = -1
    """Transcript length the members' prompts were last evaluated to (`_warm`)."""
    warming: bool = False


class SceneManager:
    """The scenes of every client.

    Args:
      config: The configuration (`[scenes]`, NPCs, profiles).
      turns: Starts, releases and stops the lines' turns.
      llm: Evaluates the members' prompts ahead (`_warm`).
      sender: Sends `scene_line`, `scene_ended` and errors.
      tasks: Runs the background waits (a line's text being complete) and warm-ups.
    """

    def __init__(self, config: Config, turns: TurnManager, llm: LlmStage, sender: Sender,
                 tasks: BackgroundTasks) -> None:
        self._config = config
        self._turns = turns
        self._llm = llm
        self._sender = sender
        self._tasks = tasks
        self._scenes: dict[tuple[bytes, int], Scene] = {}

    # ------------------------------------------------------------------ client requests

    def start(self, client: Client, request: SceneStart) -> None:
        """`scene_start`: check it, then say the first line."""
        key = (client.identity, request.scene_id)
        problem = self._start_problem(key, request)
        if problem is not None:
            self._sender.reject(client, ErrorCode.BAD_SCENE, problem)
            return
        members = [SceneMember(npc_id, self._config.npcs[npc_id].display_name,
                               self._config.npc_system_prompt(npc_id))
                   for npc_id in request.npc_ids]
        scene = Scene(request.scene_id, client,
                      SceneTranscript(members, request.situation.strip(),
                                      self._config.scenes.lines_heard),
                      request.max_exchanges or self._config.scenes.max_exchanges)
        self._scenes[key] = scene
        _LOGGER.info("client %s started scene %d with %s", client.label, scene.scene_id,
                     ", ".join(request.npc_ids))
        self._prepare(scene, next_speaker(members, None))
        self._release_when_due(scene)
        self._warm(scene)

    def _start_problem(self, key: tuple[bytes, int], request: SceneStart) -> str | None:
        if key in self._scenes:
            return f"scene {request.scene_id} is already open on this connection"
        if len(set(request.npc_ids)) != len(request.npc_ids):
            return "a scene's NPCs must all be different"
        unknown = [npc for npc in request.npc_ids if npc not in self._config.npcs]
        if unknown:
            return (f"no NPC {', '.join(map(repr, unknown))}; known: "
                    f"{', '.join(sorted(self._config.npcs))}")
        return None

    def end(self, client: Client, scene_id: int) -> None:
        """`scene_end`: stop the line speaking and everything queued."""
        scene = self._scenes.get((client.identity, scene_id))
        if scene is None:
            self._sender.reject(client, ErrorCode.UNKNOWN_SCENE, f"no open scene {scene_id}")
            return
        self._end(scene, "scene_end")

    def player_says(self, client: Client, say: Say) -> None:
        """A `say` into a scene: the speaker stops at a clause, the addressee answers."""
        if not self._turns.accept_turn_id(client, say.turn_id):
            return
        scene = self._scenes.get((client.identity, say.scene_id or 0))
        problem = self._turns.say_problem(client, say)
        if scene is None or scene.ended:
            problem = ErrorCode.UNKNOWN_SCENE, f"no open scene {say.scene_id}"
        elif say.npc_id not in {m.npc_id for m in scene.transcript.members}:
            problem = ErrorCode.UNKNOWN_SCENE, f"{say.npc_id!r} is not in scene {say.scene_id}"
        if problem is not None:
            code, text = problem
            self._sender.send(client, Error(code=code, message=text, turn_id=say.turn_id))
            return
        assert scene is not None
        scene.transcript.add(PLAYER, say.text)
        self._drop_upcoming(scene, "barge_in")
        if scene.release is not None:
            scene.release.cancel()  # the dropped line's; the answer's comes below
            scene.release = None
        if scene.current is not None:
            self._cut(scene, scene.current)
        self._prepare(scene, say.npc_id, answer=say)
        if scene.current is None or scene.current.handle.finished:
            self._release_when_due(scene)

    def _cut(self, scene: Scene, line: _Line) -> None:
        """Stop `line` where the client is: after the clause playing now, or at once.

        The daemon sends audio ahead of playback, so the client may hold seconds of the
        line: `scene_cut` tells it where the line now ends, and the answer waits only
        for that point (plus the pause), not for the rest of the line.
        """
        handle = line.handle
        line.interrupted = True
        at_once = self._config.scenes.interjection == "at_once"
        playing = handle.chunk_playing(time.perf_counter())
        if not handle.finished:
            if at_once:
                self._turns.stop(scene.client, handle, "barge_in")
            else:
                handle.turn.wind_down()  # no chunk after the one being synthesized
        if playing is None and not at_once:
            return  # nothing left to play, or nothing sent yet: wind_down suffices
        last = -1 if at_once or playing is None else playing
        handle.cut_after(last)
        self._sender.send(scene.client, SceneCut(scene_id=scene.scene_id,
                                                 turn_id=handle.turn_id,
                                                 after_chunk_index=last))
        if handle.finished:  # its end was counted with the audio after the cut
            played_at = handle.played_at()
            now = time.perf_counter()
            scene.play_end_at = played_at if played_at is not None else (now, now)

    def in_scene(self, client: Client) -> bool:
        """Whether `client` has a scene running (its typed lines belong to the scene)."""
        return any(key[0] == client.identity for key in self._scenes)

    def client_gone(self, client: Client) -> None:
        """Forget `client`'s scenes (its turns are cancelled by the turn manager)."""
        for key in [key for key in self._scenes if key[0] == client.identity]:
            scene = self._scenes.pop(key)
            scene.ended = True
            if scene.release is not None:
                scene.release.cancel()

    # ------------------------------------------------------------------ lines

    def _prepare(self, scene: Scene, speaker: str, answer: Say | None = None) -> None:
        """Start the next line, held back until `_release_when_due` lets it play."""
        client = scene.client
        turn_id = answer.turn_id if answer is not None else client.speculative_turn_id()
        say = Say(turn_id=turn_id, npc_id=speaker, text=answer.text if answer else "",
                  priority="high" if answer is not None else "normal")
        handle = self._turns.start(
            client, say, time.perf_counter(), speculative=True,
            dialogue=scene.transcript.view(speaker),
            key=_line_key(scene, speaker))
        line = _Line(handle, speaker, answer is not None)
        handle.on_end.append(lambda terminal: self._line_ended(scene, line, terminal))
        scene.upcoming = line
        self._tasks.start(self._when_written(scene, line),
                          name=f"scene-{scene.scene_id}-line-{turn_id}")

    async def _when_written(self, scene: Scene, line: _Line) -> None:
        """Once a line's text is complete, put it in the transcript.

        The next speaker hears it; if the line is the one speaking, the next line is
        prepared now.
        """
        await line.handle.turn.llm_done.wait()
        if scene.ended or (line.handle.finished and line is not scene.current):
            return  # dropped before it spoke
        member = scene.transcript.member(line.npc_id)
        line.transcript_index = scene.transcript.add(member.name, line.handle.turn.reply_text)
        if line is scene.current:
            self._prepare_next(scene, line)
        self._warm(scene)

    def _warm(self, scene: Scene) -> None:
        """Evaluate the members' prompts up to the transcript so far, in the background.

        One warm-up runs at a time per scene; a line written meanwhile makes it go round
        again. Skips a member whose line is being generated (its turn holds that state).
        """
        if scene.warming or scene.ended or scene.warmed_lines == len(scene.transcript.lines):
            return
        scene.warming = True
        self._tasks.start(self._warm_members(scene), name=f"scene-{scene.scene_id}-warm")

    async def _warm_members(self, scene: Scene) -> None:
        try:
            while not scene.ended and scene.warmed_lines != len(scene.transcript.lines):
                lines = len(scene.transcript.lines)
                for member in scene.transcript.members:
                    if scene.ended:
                        return
                    if self._generating(scene, member.npc_id):
                        continue
                    started = time.perf_counter()
                    await self._llm.prefill_typing(
                        _line_key(scene, member.npc_id),
                        scene.transcript.prompt_prefix_for(member.npc_id), member.npc_id,
                        self._config.npc_tiers(member.npc_id))
                    _LOGGER.debug("scene %d: %s's prompt evaluated to line %d in %.0f ms",
                                  scene.scene_id, member.npc_id, lines,
                                  (time.perf_counter() - started) * 1000.0)
                scene.warmed_lines = lines
        except ValueError as error:  # the transcript outgrew the context: lines trim it
            _LOGGER.debug("scene %d: no warm-up (%s)", scene.scene_id, error)
        finally:
            scene.warming = False

    @staticmethod
    def _generating(scene: Scene, npc_id: str) -> bool:
        """Whether a line of `npc_id` is writing its text now."""
        return any(line is not None and line.npc_id == npc_id
                   and not line.handle.turn.llm_done.is_set() and not line.handle.finished
                   for line in (scene.current, scene.upcoming))

    def _prepare_next(self, scene: Scene, line: _Line) -> None:
        """Prepare the line after `line` (the one speaking), if the scene goes on."""
        if scene.ended or scene.upcoming is not None or scene.lines + 2 > scene.max_lines:
            return
        self._prepare(scene, next_speaker(scene.transcript.members, line.npc_id,
                                          line.handle.turn.reply_text))

    def _release_when_due(self, scene: Scene) -> None:
        """Release the prepared line when the previous one has played, plus the pause."""
        if scene.upcoming is None or scene.ended or scene.release is not None:
            return
        # The addon starts a released line at once (it holds more than its pre-buffer):
        # its player hears the pause. A DESIGN-rule client starts it a pre-buffer later,
        # so releasing a pre-buffer before its end is enough for it never to hear two
        # lines at once. Waiting for the full pause on the DESIGN clock as well made the
        # addon's pause pause + the previous speaker's pre-buffer - the next one's: 560
        # ms after a CINEMATIC speaker (BENCHMARKS.md, Scenes).
        gap_s = self._config.scenes.gap_ms / 1000.0
        prebuffer_s = scene.upcoming.handle.turn.spec.profile.prebuffer_ms / 1000.0
        addon_end, design_end = scene.play_end_at
        due = max(addon_end + gap_s, design_end - prebuffer_s)
        delay = max(0.0, due - time.perf_counter()) if scene.lines else 0.0
        scene.release = asyncio.get_running_loop().call_later(delay, self._release, scene)

    def _release(self, scene: Scene) -> None:
        scene.release = None
        line = scene.upcoming
        if line is None or scene.ended:
            return
        scene.upcoming = None
        client = scene.client
        turn_id = self._turns.release(client, line.handle,
                                      line.handle.turn_id if line.answers_player else None)
        if turn_id is None:  # dropped meanwhile
            return
        scene.current = line
        self._sender.send(client, SceneLine(scene_id=scene.scene_id, turn_id=turn_id,
                                            npc_id=line.npc_id,
                                            answers_player=line.answers_player))
        self._turns.go_live(client, line.handle)
        if line.handle.turn.llm_done.is_set():
            self._prepare_next(scene, line)  # its text was complete before it spoke

    def _line_ended(self, scene: Scene, line: _Line, terminal: DaemonMessage) -> None:
        if scene.ended:
            return
        if isinstance(terminal, Cancelled) and terminal.reason == "cancel":
            self._end(scene, "cancel")
            return
        if isinstance(terminal, Error):
            self._end(scene, "error")
            return
        scene.lines += 1
        scene.last_speaker = line.npc_id
        progress = line.handle.turn.progress
        # Only a line cut short is rewritten to what it said: a line spoken whole keeps
        # its written text (spoken_text is the cleaned text of the chunks), so that
        # every prompt that already holds it stays a cached prefix.
        if (line.transcript_index is not None and isinstance(terminal, Done | Cancelled)
                and (line.interrupted or isinstance(terminal, Cancelled))):
            scene.transcript.replace(line.transcript_index, progress.spoken_text)
        played_at = line.handle.played_at()
        if played_at is not None:
            now = time.perf_counter()
            scene.play_end_at = (max(now, played_at[0]), max(now, played_at[1]))
        if scene.lines >= scene.max_lines:
            self._end(scene, "max_exchanges")
            return
        if scene.upcoming is None:
            self._prepare(scene, next_speaker(scene.transcript.members, line.npc_id,
                                              progress.spoken_text))
        self._release_when_due(scene)

    def _drop_upcoming(self, scene: Scene, reason: CancelReason) -> None:
        """Drop the prepared line.

        One that answers the player ends the player's turn (the client waits for that
        id); any other never said a word.
        """
        line, scene.upcoming = scene.upcoming, None
        if line is None:
            return
        self._turns.drop(scene.client, line.handle)
        if line.answers_player:
            self._sender.send(scene.client, Cancelled(turn_id=line.handle.turn_id,
                                                      reason=reason))

    def _end(self, scene: Scene, reason: SceneEndReason) -> None:
        if scene.ended:
            return
        scene.ended = True
        self._scenes.pop((scene.client.identity, scene.scene_id), None)
        if scene.release is not None:
            scene.release.cancel()
        client = scene.client
        self._drop_upcoming(scene, "scene_end")
        current = scene.current
        if current is not None and not current.handle.finished:
            self._turns.stop(client, current.handle, "scene_end")
        _LOGGER.info("scene %d of %s ended (%s) after %d line(s)", scene.scene_id,
                     client.label, reason, scene.lines)
        self._sender.send(client, SceneEnded(scene_id=scene.scene_id, reason=reason,
                                             lines=scene.lines))


def _line_key(scene: Scene, npc_id: str) -> str:
    """KV-state key of `npc_id`'s lines in `scene` (its prompt differs from its 1:1 one)."""
    return f"scene-{scene.scene_id}/{npc_id}/{scene.client.identity.hex()}"
