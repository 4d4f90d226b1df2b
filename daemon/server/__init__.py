"""The network side: one ZeroMQ ROUTER, its clients, the handshake and dispatch.

One asyncio loop owns the socket: one reader task decodes and dispatches client
messages, one writer task (`socket_io.SocketWriter`) drains the per-client outboxes
round-robin with non-blocking sends, so a full or vanished client never blocks the
others. Turns are started and ended by `turns.TurnManager`, microphone streams by
`mic.MicInput`; connections are tracked by `connections.ConnectionTracker`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from importlib.metadata import PackageNotFoundError, version

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
    Error,
    ErrorCode,
    Hello,
    Limits,
    ListenStart,
    ListenStop,
    NpcInfo,
    Say,
    SceneEnd,
    SceneStart,
    Typing,
    Welcome,
)
from daemon.asr.engines import AsrEngines
from daemon.config import Config
from daemon.llm.base import LlmStage
from daemon.metrics import Telemetry
from daemon.server.clients import Client
from daemon.server.connections import ZAP_DOMAIN, ConnectionTracker, ZapGate
from daemon.server.memory import MemoryTrimmer
from daemon.server.mic import MicInput
from daemon.server.scenes import SceneManager
from daemon.server.sender import Sender
from daemon.server.socket_io import SocketWriter, resolved
from daemon.server.tasks import BackgroundTasks
from daemon.server.turns import TurnManager
from daemon.server.typing import TypingPrefill
from daemon.tts.base import Voice

_LOGGER = logging.getLogger(__name__)

_MAX_FRAMES = 3
"""Routing id + at most two frames (`mic_audio`): more frames are read and dropped."""
_READ_BATCH = 64
"""Messages handled per wake-up before the reader yields to the writer and the turns."""
_SHUTDOWN_FLUSH_S = 0.5
_SHUTDOWN_TURNS_S = 1.0


def daemon_version() -> str:
    """The "npc-voice-bridge <version>" string of the welcome message and logs."""
    try:
        return f"npc-voice-bridge {version('npc-voice-bridge')}"
    except PackageNotFoundError:
        return "npc-voice-bridge (source)"


class BridgeServer:
    """The daemon's network side.

    Args:
      config: Validated configuration.
      llm: The LLM stage shared by every turn.
      voices: Voice by the config's voice name.
      context: ZeroMQ context (the caller owns and terminates it).
      telemetry: Receives turns, connections and rejected input (log line, metrics).
      asr: Loaded speech recognition for microphone input; None = `listen_start` is
        refused.
    """

    def __init__(
        self,
        config: Config,
        llm: LlmStage,
        voices: dict[str, Voice],
        context: zmq.asyncio.Context,
        telemetry: Telemetry | None = None,
        asr: AsrEngines | None = None,
    ) -> None:
        self._config = config
        self._voices = voices
        self._context = context
        self._telemetry = telemetry or Telemetry()
        self._clients: dict[bytes, Client] = {}
        self._socket: zmq.asyncio.Socket | None = None
        self._connections: ConnectionTracker | None = None
        self._zap: ZapGate | None = None
        self._tasks = BackgroundTasks()
        self._trimmer = MemoryTrimmer()
        self._sender = Sender(self._telemetry)
        self._turns = TurnManager(config, llm, voices, self._sender, self._tasks,
                                  self._telemetry, self._trimmer)
        self._scenes = SceneManager(config, self._turns, llm, self._sender, self._tasks)
        self._typing = TypingPrefill(config, self._turns, llm, self._sender, self._tasks,
                                     self._scenes.in_scene)
        self._mic = (MicInput(self._turns, self._sender, self._tasks, asr, config.asr,
                              config.server.max_text_chars, self._typing.prefill_words)
                     if asr is not None else None)
        self.address: str | None = None
        """The ZeroMQ address actually bound (`tcp://127.0.0.1:5557`), once bound."""

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> str:
        """Create and bind the ROUTER; return the address actually bound."""
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
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.address

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then cancel every turn and close the socket."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None and self._zap is not None
        reader = asyncio.create_task(self._read_loop(), name="zmq-reader")
        writer_loop = SocketWriter(self._socket, self._clients, self._client_gone)
        self._sender.writer = writer_loop
        writer = asyncio.create_task(writer_loop.run(), name="zmq-writer")
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
        _LOGGER.info("shutting down: cancelling %d turn(s)", self._turns.running_count)
        turn_tasks = self._turns.stop_all("shutdown")
        if self._sender.writer is not None:
            await self._sender.writer.flush(timeout_s=_SHUTDOWN_FLUSH_S)
        if turn_tasks:
            _done, pending = await asyncio.wait(turn_tasks, timeout=_SHUTDOWN_TURNS_S)
            if pending:
                _LOGGER.warning("%d turn(s) still finishing an engine step at shutdown",
                                len(pending))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._tasks.cancel_all()
        self._trimmer.close()
        if self._connections is not None:
            self._connections.close()
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        """Read messages and connection events until cancelled.

        Nothing a client sends can end it: every failure becomes an error reply and a
        log line.
        """
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
            frame = resolved(self._socket.recv(flags=zmq.NOBLOCK, copy=False)).result()
        except zmq.Again:
            return None
        frames = [frame]
        extra = 0
        # libzmq delivers a multipart message whole: its other frames are there already.
        while frame.more:
            frame = resolved(self._socket.recv(flags=zmq.NOBLOCK, copy=False)).result()
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
        client = self._clients.get(identity)
        if client is None:
            client = Client(identity, self._config.server.send_queue_bytes)
            self._clients[identity] = client
            _LOGGER.info("client %s connected", identity.hex())
        if client.stalled:
            return  # it reads nothing we send: ignore it until it does (Client.stalled)
        payload = [frame.bytes for frame in frames[1:]]
        if extra_frames:
            self._trimmer.request()  # libzmq held every frame until the message was whole
            self._sender.reject(client, ErrorCode.BAD_FRAME,
                        f"a client message is 1 frame (2 for mic_audio), got "
                        f"{len(payload) + extra_frames}")
            return
        try:
            message = client_message_from_frames(payload, MAX_CONTROL_FRAME_BYTES)
        except FrameError as exc:
            _LOGGER.warning("client %s sent a bad message: %r", client.label, str(exc))
            self._sender.reject(client, exc.code, str(exc), rejected_turn_id=exc.rejected_turn_id)
            return
        try:
            self._dispatch(client, message)
        except Exception:  # a bug must not take the daemon down with it
            _LOGGER.exception("error handling %s from %s", type(message).__name__, client.label)
            self._sender.send(client, Error(code=ErrorCode.INVALID_MESSAGE,
                                  message="the daemon failed to handle this message"))

    def _forget_closed_connections(self) -> None:
        assert self._connections is not None
        for identity in self._connections.take_closed():
            client = self._clients.get(identity)
            if client is not None:
                self._client_gone(client)

    def _dispatch(self, client: Client, message: object) -> None:
        mic = self._mic
        match message:
            case Hello():
                self._hello(client, message)
            case _ if not client.welcomed:
                self._sender.reject(client, ErrorCode.HANDSHAKE_REQUIRED,
                             "send a `hello` message before anything else")
            case Say():
                # A reply started while the line was typed: this say settles it.
                speculation = self._typing.take_speculation(client, message.npc_id)
                if message.scene_id is None:
                    self._turns.say(client, message, speculation)
                else:
                    if speculation is not None:  # started before the scene: not its line
                        self._turns.drop(client, speculation)
                    self._scenes.player_says(client, message)
            case Typing():
                self._typing.typing(client, message)
            case SceneStart():
                self._scenes.start(client, message)
            case SceneEnd(scene_id=scene_id):
                self._scenes.end(client, scene_id)
            case Cancel(turn_id=turn_id):
                self._turns.cancel(client, turn_id)
            case ListenStart() | DecodedMic() | ListenStop() if mic is None:
                self._sender.reject(client, ErrorCode.VOICE_INPUT_UNAVAILABLE,
                                    "voice input is off in this daemon (config [asr] enabled, "
                                    "or the `voice` extra is not installed)")
            case ListenStart() if mic is not None:
                mic.listen_start(client, message)
            case DecodedMic() if mic is not None:
                mic.mic_audio(client, message)
            case ListenStop() if mic is not None:
                mic.listen_stop(client)

    def _hello(self, client: Client, hello: Hello) -> None:
        server = self._config.server
        if hello.protocol != PROTOCOL_VERSION:
            self._sender.reject(client, ErrorCode.UNSUPPORTED_PROTOCOL,
                         f"this daemon speaks protocol {PROTOCOL_VERSION}, "
                         f"the client asked for {hello.protocol}")
            return
        if server.token and not hmac.compare_digest(hello.token.encode("utf-8"),
                                                    server.token.encode("utf-8")):
            if not client.bad_token_logged:  # once per connection: no log flood
                client.bad_token_logged = True
                _LOGGER.warning("client %s sent a wrong token", client.label)
            self._sender.reject(client, ErrorCode.BAD_TOKEN,
                         "the token in `hello` does not match the daemon's")
            return
        client.welcomed = True
        client.client_name = hello.client[:64]
        client.sample_rate_hz = hello.sample_rate_hz
        client.timing = hello.timing
        npcs = []
        for npc_id, npc in self._config.npcs.items():
            voice = self._voices[npc.voice]
            profile_name, _ = self._config.npc_profiles(npc_id)  # its replies start with it
            profile = self._config.profile(profile_name)
            npcs.append(NpcInfo(
                npc_id=npc_id, display_name=npc.display_name, profile=profile_name,
                sample_rate_hz=hello.sample_rate_hz or voice.sample_rate_hz,
                prebuffer_ms=profile.prebuffer_ms, language=self._config.npc_language(npc_id),
                lip_sync=voice.lip_sync))
        _LOGGER.info("client %s completed the handshake", client.label)
        self._sender.send(client, Welcome(
            protocol=PROTOCOL_VERSION, daemon=daemon_version(),
            sample_rate_hz=hello.sample_rate_hz,
            limits=Limits(max_text_chars=server.max_text_chars,
                          max_message_bytes=MAX_CONTROL_FRAME_BYTES,
                          max_turns_in_flight=server.max_turns_in_flight),
            npcs=npcs))

    def _client_gone(self, client: Client) -> None:
        """Forget a disconnected client and everything it owns.

        Its turns are cancelled quietly; its outbox, microphone, conversations and their
        cached LLM state are freed.
        """
        if client.gone:
            return
        _LOGGER.info("client %s disconnected; cancelling %d turn(s)",
                     client.label, len(client.turns))
        client.gone = True
        self._scenes.client_gone(client)
        self._typing.client_gone(client)
        self._turns.client_gone(client)
        client.clear_outbox()
        self._clients.pop(client.identity, None)
        if self._mic is not None:
            self._mic.client_gone(client)
