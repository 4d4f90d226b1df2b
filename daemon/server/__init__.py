"""The ROUTER loop: peers, handshake, dispatch, turns and the bounded send path.

One asyncio loop owns the socket: one reader task decodes and dispatches client
messages, one writer task drains the per-peer outboxes round-robin with non-blocking
sends (a full or vanished peer never blocks the others). Turns run as named tasks;
this module alone emits terminal events, exactly one per turn.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Coroutine
from importlib.metadata import PackageNotFoundError, version

import msgspec
import zmq
import zmq.asyncio

from bridge_protocol.framing import (
    MAX_CONTROL_FRAME_BYTES,
    MAX_FRAME_BYTES,
    DecodedMic,
    FrameError,
    client_message_from_frames,
)
from bridge_protocol.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Cancelled,
    CancelReason,
    DaemonMessage,
    Done,
    Error,
    ErrorCode,
    Hello,
    Limits,
    ListenStart,
    ListenStop,
    NpcInfo,
    Say,
    Welcome,
)
from daemon.config import Config
from daemon.engines import Engines
from daemon.llm.conversation import Conversation
from daemon.metrics import Telemetry
from daemon.pipeline.turn import Turn, TurnSpec
from daemon.server.clients import ClientTooSlow, Peer, TurnHandle
from daemon.server.connections import ZAP_DOMAIN, ConnectionTracker, ZapGate
from daemon.server.memory import MemoryTrimmer
from daemon.server.mic import VoiceEngines, VoiceInput
from daemon.server.socket_io import SocketWriter

_LOGGER = logging.getLogger(__name__)

_MAX_FRAMES = 3
"""Routing id + at most two frames (`mic_audio`): more frames are read and dropped."""
_READ_BATCH = 64
"""Messages handled per wake-up before the reader yields to the writer and the turns."""
_SHUTDOWN_FLUSH_S = 0.5
_SHUTDOWN_TURNS_S = 1.0


def daemon_version() -> str:
    """"npc-voice-bridge <version>" for the welcome message and logs."""
    try:
        return f"npc-voice-bridge {version('npc-voice-bridge')}"
    except PackageNotFoundError:
        return "npc-voice-bridge (source)"


def conversation_key(npc_id: str, identity: bytes) -> str:
    """KV-state key of one NPC's conversation with one client."""
    return f"{npc_id}/{identity.hex()}"


class BridgeServer:
    """The daemon's network side.

    Args:
      config: Validated configuration.
      engines: Loaded engines.
      context: ZeroMQ context (the caller owns and terminates it).
      telemetry: Receives turns, connections and rejected input (log line, metrics).
      voice: Loaded ASR for voice input; None = `listen_start` is refused.
    """

    def __init__(
        self,
        config: Config,
        engines: Engines,
        context: zmq.asyncio.Context,
        telemetry: Telemetry | None = None,
        voice: VoiceEngines | None = None,
    ) -> None:
        self._config = config
        self._engines = engines
        self._context = context
        self._telemetry = telemetry or Telemetry()
        self._peers: dict[bytes, Peer] = {}
        self._socket: zmq.asyncio.Socket | None = None
        self._connections: ConnectionTracker | None = None
        self._zap: ZapGate | None = None
        self._writer: SocketWriter | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._trimmer = MemoryTrimmer()
        self._voice = VoiceInput(self, voice, config.asr) if voice is not None else None
        self.endpoint: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> str:
        """Create and bind the ROUTER; return the endpoint actually bound."""
        server = self._config.server
        sock = self._context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown or full peer: error, not silence
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnect with the same identity wins
        # Bounded input: a frame over MAX_FRAME_BYTES disconnects its sender (libzmq
        # checks the size before it allocates), and at most RCVHWM messages wait per
        # connection before libzmq stops reading its TCP stream.
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        sock.setsockopt(zmq.RCVHWM, 256)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.HANDSHAKE_IVL, server.handshake_timeout_ms)
        # A ZAP domain makes libzmq refuse the ZMTP 1.0/2.0 fallbacks (daemon.server.connections).
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if server.heartbeat_ivl_ms:
            sock.setsockopt(zmq.HEARTBEAT_IVL, server.heartbeat_ivl_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, server.heartbeat_timeout_ms)
            sock.setsockopt(zmq.HEARTBEAT_TTL, server.heartbeat_timeout_ms)
        self._connections = ConnectionTracker(sock, self._telemetry.connections_changed)
        self._zap = ZapGate(self._context, self._connections, server.max_connections)
        self._zap.bind()
        host = server.host if server.host != "localhost" else "127.0.0.1"
        if ":" in host:
            sock.setsockopt(zmq.IPV6, 1)
            host = f"[{host}]"
        if server.port:
            sock.bind(f"tcp://{host}:{server.port}")
        else:
            sock.bind_to_random_port(f"tcp://{host}")
        self._socket = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then cancel every turn and close the socket."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None and self._zap is not None
        reader = asyncio.create_task(self._read_loop(), name="zmq-reader")
        self._writer = SocketWriter(self._socket, self._peers, self._peer_gone)
        writer = asyncio.create_task(self._writer.run(), name="zmq-writer")
        zap = asyncio.create_task(self._zap.run(), name="zap-gate")
        stopper = asyncio.create_task(stop.wait(), name="stop-wait")
        try:
            done, _ = await asyncio.wait(
                {reader, writer, zap, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopper and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            await self._shutdown(reader, writer, zap, stopper)

    async def _shutdown(self, *tasks: asyncio.Task) -> None:
        """Cancel every turn, deliver the `cancelled` events, then stop, all within ~1.5 s.

        The terminal events are flushed first: a turn's task may take a while to end
        (an engine finishes its current token or audio piece), and the clients must
        not wait for that, nor miss their event if the process is then killed.
        """
        _LOGGER.info("shutting down: cancelling %d turn(s)", self._running_turn_count())
        turn_tasks = []
        for peer in list(self._peers.values()):
            for handle in list(peer.turns.values()):
                self._cancel_turn(peer, handle, "shutdown")
                if handle.task is not None:
                    turn_tasks.append(handle.task)
        if self._writer is not None:
            await self._writer.flush(timeout_s=_SHUTDOWN_FLUSH_S)
        if turn_tasks:
            _done, pending = await asyncio.wait(turn_tasks, timeout=_SHUTDOWN_TURNS_S)
            if pending:
                _LOGGER.warning("%d turn(s) still finishing an engine step at shutdown",
                                len(pending))
        for task in (*tasks, *self._background):
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        self._trimmer.close()
        if self._connections is not None:
            self._connections.close()
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _running_turn_count(self) -> int:
        return sum(len(peer.turns) for peer in self._peers.values())

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        """Read messages and connection events until cancelled; nothing a client sends
        can end it (every failure becomes an error reply and a log line)."""
        assert self._socket is not None and self._connections is not None
        poller = zmq.asyncio.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._connections.monitor, zmq.POLLIN)
        while True:
            await poller.poll()
            self._connections.drain()
            self._forget_closed_connections()
            for _ in range(_READ_BATCH):
                received = await self._receive_nowait()
                if received is None:
                    break
                try:
                    self._on_message(*received)
                except Exception:  # a bug must not take the daemon down with it
                    _LOGGER.exception("error handling a client message")
            # Yield between batches: a client flooding messages shares the loop.
            await asyncio.sleep(0)

    async def _receive_nowait(self) -> tuple[list[zmq.Frame], int] | None:
        """The next message's first `_MAX_FRAMES` frames and how many more it had."""
        assert self._socket is not None
        try:
            frame = self._socket.recv(flags=zmq.NOBLOCK, copy=False).result()
        except zmq.Again:
            return None
        frames = [frame]
        extra = 0
        # libzmq delivers a multipart message whole: its other frames are there already.
        while frame.more:
            frame = self._socket.recv(flags=zmq.NOBLOCK, copy=False).result()
            if len(frames) < _MAX_FRAMES:
                frames.append(frame)
            else:
                extra += 1
                if extra % 65536 == 0:
                    await asyncio.sleep(0)  # millions of empty frames: share the loop
        return frames, extra

    def _on_message(self, frames: list[zmq.Frame], extra_frames: int) -> None:
        assert self._connections is not None
        identity = frames[0].bytes
        if len(frames) > 1:
            self._connections.bind(identity, frames[-1].get(zmq.SRCFD))
            self._forget_closed_connections()
        peer = self._peers.get(identity)
        if peer is None:
            peer = Peer(identity, self._config.server.send_queue_bytes)
            self._peers[identity] = peer
            _LOGGER.info("client %s connected", identity.hex())
        if peer.stalled:
            return  # it reads nothing we send: ignore it until it does (Peer.stalled)
        payload = [frame.bytes for frame in frames[1:]]
        if extra_frames:
            self._trimmer.request()  # libzmq held every frame until the message was whole
            self.reject(peer, ErrorCode.BAD_FRAME,
                        f"a client message is 1 frame (2 for mic_audio), got "
                        f"{len(payload) + extra_frames}")
            return
        try:
            message = client_message_from_frames(payload, MAX_CONTROL_FRAME_BYTES)
        except FrameError as exc:
            _LOGGER.warning("client %s sent a bad message: %r", peer.label, str(exc))
            self.reject(peer, exc.code, str(exc), rejected_turn_id=exc.rejected_turn_id)
            return
        try:
            self._dispatch(peer, message)
        except Exception:  # a bug must not take the daemon down with it
            _LOGGER.exception("error handling %s from %s", type(message).__name__, peer.label)
            self.send(peer, Error(code=ErrorCode.INVALID_MESSAGE,
                                  message="the daemon failed to handle this message"))

    def _forget_closed_connections(self) -> None:
        assert self._connections is not None
        for identity in self._connections.take_closed():
            peer = self._peers.get(identity)
            if peer is not None:
                self._peer_gone(peer)

    def _dispatch(self, peer: Peer, message: object) -> None:
        match message:
            case Hello():
                self._handle_hello(peer, message)
            case _ if not peer.welcomed:
                self.reject(peer, ErrorCode.HANDSHAKE_REQUIRED,
                             "send a `hello` message before anything else")
            case Say():
                self._handle_say(peer, message)
            case Cancel(turn_id=turn_id):
                handle = peer.turns.get(turn_id)
                if handle is None or handle.held is not None:
                    self.reject(peer, ErrorCode.UNKNOWN_TURN,
                                 f"no unfinished turn {turn_id} to cancel")
                else:
                    self._cancel_turn(peer, handle, "cancel")
            case ListenStart() | DecodedMic() | ListenStop() if self._voice is None:
                self.reject(peer, ErrorCode.VOICE_INPUT_UNAVAILABLE,
                            "voice input is off in this daemon (config [asr] enabled, or "
                            "the `voice` extra is not installed)")
            case ListenStart():
                self._voice.listen_start(peer, message)
            case DecodedMic():
                self._voice.mic_audio(peer, message)
            case ListenStop():
                self._voice.listen_stop(peer)

    def _handle_hello(self, peer: Peer, hello: Hello) -> None:
        server = self._config.server
        if hello.protocol != PROTOCOL_VERSION:
            self.reject(peer, ErrorCode.UNSUPPORTED_PROTOCOL,
                         f"this daemon speaks protocol {PROTOCOL_VERSION}, "
                         f"the client asked for {hello.protocol}")
            return
        if server.token and not hmac.compare_digest(hello.token.encode("utf-8"),
                                                    server.token.encode("utf-8")):
            if not peer.bad_token_logged:  # once per connection: no log flood
                peer.bad_token_logged = True
                _LOGGER.warning("client %s sent a wrong token", peer.label)
            self.reject(peer, ErrorCode.BAD_TOKEN,
                         "the token in `hello` does not match the daemon's")
            return
        peer.welcomed = True
        peer.client_name = hello.client[:64]
        peer.sample_rate_hz = hello.sample_rate_hz
        npcs = []
        for npc_id, npc in self._config.npcs.items():
            voice = self._engines.voices[npc.voice]
            profile_name, _ = self._config.npc_profiles(npc_id)  # its replies start with it
            profile = self._config.profile(profile_name)
            npcs.append(NpcInfo(
                npc_id=npc_id, display_name=npc.display_name, profile=profile_name,
                sample_rate_hz=hello.sample_rate_hz or voice.sample_rate_hz,
                prebuffer_ms=profile.prebuffer_ms))
        _LOGGER.info("client %s completed the handshake", peer.label)
        self.send(peer, Welcome(
            protocol=PROTOCOL_VERSION, daemon=daemon_version(),
            sample_rate_hz=hello.sample_rate_hz,
            limits=Limits(max_text_chars=server.max_text_chars,
                          max_message_bytes=MAX_CONTROL_FRAME_BYTES,
                          max_turns_in_flight=server.max_turns_in_flight),
            npcs=npcs))

    @property
    def max_text_chars(self) -> int:
        """Longest accepted player line."""
        return self._config.server.max_text_chars

    def npc_problem(self, npc_id: str, profile: str | None) -> tuple[str, str] | None:
        """(code, message) if `npc_id` or `profile` is unknown, else None."""
        config = self._config
        if npc_id not in config.npcs:
            return ErrorCode.UNKNOWN_NPC, (
                f"no NPC {npc_id!r}; known: {', '.join(sorted(config.npcs))}")
        if profile is not None and profile not in config.profile_names():
            return ErrorCode.UNKNOWN_PROFILE, (
                f"no profile {profile!r}; known: {', '.join(config.profile_names())}")
        return None

    def turn_limit_problem(self, peer: Peer, npc_id: str) -> tuple[str, str] | None:
        """(code, message) if `peer` may not start another turn with `npc_id` now."""
        barge_in = peer.active_turn_for(npc_id) is not None
        limit = self._config.server.max_turns_in_flight
        if len(peer.turns) - barge_in >= limit:
            return ErrorCode.TOO_MANY_TURNS, (
                f"{len(peer.turns)} turns are unfinished; the limit is {limit}")
        total_limit = self._config.server.max_turns_total
        if self._running_turn_count() - barge_in >= total_limit:
            return ErrorCode.TOO_MANY_TURNS, (
                f"the daemon has {self._running_turn_count()} unfinished turns (all clients); "
                f"the limit is {total_limit}")
        return None

    def _say_problem(self, peer: Peer, say: Say) -> tuple[str, str] | None:
        """(code, message) if the `say` cannot start a turn, else None."""
        text = say.text.strip()
        if not text:
            return ErrorCode.EMPTY_TEXT, "the player's line is empty"
        if len(text) > self.max_text_chars:
            return ErrorCode.TEXT_TOO_LONG, (
                f"the player's line has {len(text)} characters; "
                f"the limit is {self.max_text_chars}")
        return self.npc_problem(say.npc_id, say.profile) or self.turn_limit_problem(
            peer, say.npc_id)

    def _handle_say(self, peer: Peer, say: Say) -> None:
        received_at = time.perf_counter()
        if say.turn_id <= peer.last_turn_id:
            # Not a terminal event for say.turn_id: that id may be a live turn.
            self.reject(peer, ErrorCode.TURN_ID_REUSED,
                        f"turn id {say.turn_id} is not greater than the last one "
                        f"({peer.last_turn_id}); turn ids must increase",
                        rejected_turn_id=say.turn_id)
            return
        peer.last_turn_id = say.turn_id
        problem = self._say_problem(peer, say)
        if problem is not None:
            code, text = problem
            self.send(peer, Error(code=code, message=text, turn_id=say.turn_id))
            return
        self.start_turn(peer, say, received_at)

    def start_turn(self, peer: Peer, say: Say, received_at: float,
                   held: bool = False) -> TurnHandle:
        """Start a validated turn (a typed `say`, or a recognised voice utterance).

        Args:
          peer: The client.
          say: The request; its turn id must already be accepted for this peer.
          received_at: `time.perf_counter()` of the complete utterance (TTFA zero).
          held: Keep everything the turn sends (terminal event included) until
            `release_turn`, or drop it with `abandon_turn`: a speculative start.

        Returns:
          The running turn's handle.
        """
        previous = peer.active_turn_for(say.npc_id)
        if previous is not None:
            self._cancel_turn(peer, previous, "barge_in")
        npc = self._config.npcs[say.npc_id]
        profile_name, continuation_name = self._config.npc_profiles(say.npc_id, say.profile)
        voice = self._engines.voices[npc.voice]
        conversation = peer.conversations.get(say.npc_id)
        if conversation is None:
            conversation = Conversation(npc.persona, self._config.llm.history_turns)
            peer.conversations[say.npc_id] = conversation
        spec = TurnSpec(
            turn_id=say.turn_id, npc_id=say.npc_id, utterance=say.text.strip(),
            profile_name=profile_name,
            profile=voice.shape_profile(self._config.profile(profile_name)),
            voice=voice, conversation=conversation,
            conversation_key=conversation_key(say.npc_id, peer.identity),
            out_rate_hz=peer.sample_rate_hz or voice.sample_rate_hz,
            received_at=received_at, tiers=self._config.npc_tiers(say.npc_id),
            continuation_profile=(self._config.profile(continuation_name)
                                  if continuation_name else None))

        def send_for_turn(message: DaemonMessage, pcm: bytes | None) -> None:
            if turn.stop.is_set():  # set by a cancel: nothing of the turn after it
                return
            if handle.held is not None:
                handle.held.append((message, pcm))
            else:
                self.send(peer, message, pcm)

        turn = Turn(spec, self._engines.llm, send_for_turn)
        handle = TurnHandle(turn, held=[] if held else None)
        peer.turns[say.turn_id] = handle
        handle.task = asyncio.create_task(
            self._drive_turn(peer, handle), name=f"turn-{peer.identity.hex()}-{say.turn_id}")
        return handle

    def assign_turn_id(self, peer: Peer, handle: TurnHandle) -> int:
        """Give a held turn its client-visible id (the next one of `peer`) and return it.

        Held turns run under a provisional negative id, so a speculative start that is
        abandoned never uses up an id the client could be about to send.
        """
        spec = handle.turn.spec
        turn_id = peer.last_turn_id = peer.last_turn_id + 1
        peer.turns.pop(spec.turn_id, None)
        peer.turns[turn_id] = handle
        spec.turn_id = turn_id
        handle.held = [(msgspec.structs.replace(message, turn_id=turn_id), pcm)
                       for message, pcm in handle.held or []]
        if handle.pending_terminal is not None:
            handle.pending_terminal = msgspec.structs.replace(handle.pending_terminal,
                                                              turn_id=turn_id)
        return turn_id

    def release_turn(self, peer: Peer, handle: TurnHandle) -> None:
        """Send a held turn's messages so far and let the rest flow (endpoint confirmed)."""
        held, handle.held = handle.held or [], None
        if handle.finished:
            return  # abandoned meanwhile
        progress = handle.turn.progress
        if progress.block_count:  # its first block leaves now, not when it was made
            now_ms = (time.perf_counter() - handle.turn.spec.received_at) * 1000.0
            first = progress.timings.first_block_ms or 0.0
            progress.timings.first_block_ms = round(max(first, now_ms), 2)
        for message, pcm in held:
            self.send(peer, message, pcm)
        if handle.pending_terminal is not None:
            self._finish(peer, handle, handle.pending_terminal)

    def abandon_turn(self, peer: Peer, handle: TurnHandle) -> None:
        """Drop a held turn without a word to the client (the player kept speaking)."""
        if handle.finished:
            return
        handle.finished = True
        handle.held = None
        handle.turn.stop.set()
        peer.turns.pop(handle.turn.spec.turn_id, None)
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()
        _LOGGER.info("speculative turn %s of %s abandoned", handle.turn.spec.turn_id, peer.label)

    def barge_in(self, peer: Peer, npc_id: str) -> None:
        """The player started speaking to `npc_id`: stop its unheld turn, if any."""
        handle = peer.active_turn_for(npc_id)
        if handle is not None and handle.held is None:
            self._cancel_turn(peer, handle, "barge_in")

    # ------------------------------------------------------------------ turns

    async def _drive_turn(self, peer: Peer, handle: TurnHandle) -> None:
        turn = handle.turn
        spec, progress = turn.spec, turn.progress
        try:
            await turn.run()
        except asyncio.CancelledError:
            return  # the canceller has already sent the terminal event
        except ClientTooSlow as exc:
            _LOGGER.warning("turn %s of %s: %s", spec.turn_id, peer.label, exc)
            peer.drop_queued(spec.turn_id)
            self._finish(peer, handle, Error(code=ErrorCode.CLIENT_TOO_SLOW,
                                             message=str(exc), turn_id=spec.turn_id))
        except Exception as exc:
            _LOGGER.exception("turn %s of %s failed", spec.turn_id, peer.label)
            self._finish(peer, handle, Error(
                code=ErrorCode.ENGINE_FAILED, turn_id=spec.turn_id,
                message=f"{type(exc).__name__}: {exc}"))
        else:
            self._finish(peer, handle, Done(
                turn_id=spec.turn_id, block_count=progress.block_count,
                sample_count=progress.sample_count, reply_text=progress.spoken_text,
                profile=spec.profile_name, timings=progress.timings))

    def _cancel_turn(self, peer: Peer, handle: TurnHandle, reason: CancelReason) -> None:
        if handle.finished:
            return
        if handle.held is not None:  # the client never heard of it
            self.abandon_turn(peer, handle)
            return
        turn = handle.turn
        turn.stop.set()
        dropped_blocks = peer.drop_queued(turn.spec.turn_id)
        self._finish(peer, handle, Cancelled(
            turn_id=turn.spec.turn_id, reason=reason,
            block_count=turn.progress.block_count - dropped_blocks,
            timings=turn.progress.timings))
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()

    def _finish(self, peer: Peer, handle: TurnHandle, terminal: DaemonMessage) -> None:
        """Send the turn's one terminal event and forget the turn."""
        if handle.held is not None:  # finished before its endpoint was confirmed
            handle.pending_terminal = terminal
            return
        handle.finished = True
        spec, progress = handle.turn.spec, handle.turn.progress
        peer.turns.pop(spec.turn_id, None)
        self.send(peer, terminal)
        history_cut = spec.conversation.record(spec.utterance, progress.spoken_text)
        if not peer.gone and (history_cut or (spec.tiers == "both" and len(spec.conversation))):
            self.start_background(
                self._engines.llm.after_turn(spec.conversation_key,
                                             spec.conversation.messages_for(""), spec.tiers,
                                             history_cut),
                name=f"prefill-{spec.conversation_key}")
        self._telemetry.turn_finished(peer.label, spec, progress, terminal)
        if not self._running_turn_count():
            self._trimmer.request()  # idle: give the turns' buffers back to the OS

    def start_background(self, coroutine: Coroutine[object, object, None],
                         name: str) -> asyncio.Task[None]:
        """Run work off the critical path; failures are logged, never raised.

        The task is kept in a registry and cancelled at shutdown.
        """
        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("background task %s failed", name)

        task = asyncio.create_task(guarded(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------------ writing

    def reject(self, peer: Peer, code: str, message: str,
               rejected_turn_id: int | None = None) -> None:
        """Send a connection-level error (one that ends no turn) to `peer`."""
        self._telemetry.input_rejected(code)
        self.send(peer, Error(code=code, message=message, rejected_turn_id=rejected_turn_id))

    def send(self, peer: Peer, message: DaemonMessage, pcm: bytes | None = None) -> None:
        """Queue `message` (and its PCM) for `peer`; dropped if the peer is gone."""
        if peer.gone:
            return
        if not peer.queue(message, pcm):
            if peer.dropped_replies in (1, 100, 10_000):
                _LOGGER.warning("client %s is not reading: %d repl(ies) dropped, %d bytes "
                                "waiting", peer.label, peer.dropped_replies, peer.queued_bytes)
            return
        if self._writer is not None:
            self._writer.wake()

    def _peer_gone(self, peer: Peer) -> None:
        """The client disconnected: cancel its turns quietly and forget everything it owns
        (its outbox, microphone, conversations and their saved KV states)."""
        if peer.gone:
            return
        _LOGGER.info("client %s disconnected; cancelling %d turn(s)",
                     peer.label, len(peer.turns))
        peer.gone = True
        turn_tasks = [handle.task for handle in peer.turns.values() if handle.task is not None]
        for handle in list(peer.turns.values()):
            self._cancel_turn(peer, handle, "cancel")
        peer.clear_outbox()
        self._peers.pop(peer.identity, None)
        if self._voice is not None:
            self._voice.peer_gone(peer)
        keys = [conversation_key(npc_id, peer.identity) for npc_id in peer.conversations]
        peer.conversations.clear()
        self.start_background(self._forget_conversations(keys, turn_tasks),
                              name=f"forget-{peer.identity.hex()}")

    async def _forget_conversations(self, keys: list[str],
                                    turn_tasks: list[asyncio.Task[None]]) -> None:
        """Drop the saved KV states of `keys` once the cancelled turns have ended: an
        engine saves a conversation's state when its job ends, which may be after the
        cancel."""
        await asyncio.gather(*turn_tasks, return_exceptions=True)
        self._engines.llm.forget(keys)
        self._trimmer.request()
