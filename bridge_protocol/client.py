"""The reference client: an asyncio ZeroMQ DEALER speaking the bridge protocol.

Used by `npc-voice say`, the tests and the benchmarks, and meant as the model for
clients in other engines. One reader task routes incoming messages to per-turn
queues by `turn_id`, so several turns can stream at once over one connection.

Example:
    async with BridgeClient("tcp://127.0.0.1:5557") as client:
        result = await client.run_turn("blacksmith", "Can you fix my sword?")
        print(result.ttfa_ms, len(result.pcm))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import zmq
import zmq.asyncio

from bridge_protocol.framing import DecodedAudio, daemon_message_from_frames, to_frames
from bridge_protocol.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Cancelled,
    DaemonMessage,
    Done,
    Error,
    Hello,
    ListenStart,
    ListenStop,
    MicAudio,
    Say,
    SceneCut,
    SceneEnd,
    SceneEnded,
    SceneLine,
    SceneStart,
    SpeechEnded,
    SpeechStarted,
    Subtitle,
    Timing,
    Transcript,
    Typing,
    Welcome,
    is_terminal,
)

TurnEvent = Transcript | Subtitle | Timing | DecodedAudio | Done | Cancelled | Error
"""What a turn's stream yields: (for voice turns, the transcript first,) subtitles,
timing (only if asked for), audio, then exactly one terminal event."""


class BridgeError(RuntimeError):
    """The daemon refused the connection or a request (carries the `Error` message)."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


@dataclass
class TurnResult:
    """One turn as the client saw it. Times are `time.perf_counter()` seconds.

    Attributes:
      turn_id: The turn.
      sent_at: When the `say` was sent.
      terminal: The terminal event (Done, Cancelled or Error).
      subtitles: Subtitle texts in arrival order.
      pcm: All audio, s16le mono bytes at `sample_rate_hz`.
      sample_rate_hz: Rate of the audio (0 if none arrived).
      block_arrivals: (arrival time, sample_count) per block, in seq order.
      block_chunks: `chunk_index` of each block, in seq order.
      seqs: Sequence numbers in arrival order (contiguity check).
      final_flags: `final` of each block in arrival order.
      first_subtitle_at: Arrival of the first subtitle.
      terminal_at: Arrival of the terminal event.
      timing: The `timing` messages in arrival order (a client created with
        `timing=True`; each arrived before the blocks it describes).
    """

    turn_id: int
    sent_at: float
    terminal: Done | Cancelled | Error | None = None
    subtitles: list[str] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    sample_rate_hz: int = 0
    block_arrivals: list[tuple[float, int]] = field(default_factory=list)
    block_chunks: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    final_flags: list[bool] = field(default_factory=list)
    first_subtitle_at: float | None = None
    terminal_at: float | None = None
    transcript: str | None = None
    timing: list[Timing] = field(default_factory=list)

    @property
    def ttfa_ms(self) -> float | None:
        """Client-side TTFA: `say` sent -> first block received (includes IPC both ways)."""
        if not self.block_arrivals:
            return None
        return (self.block_arrivals[0][0] - self.sent_at) * 1000.0

    @property
    def last_block_ms(self) -> float | None:
        """`say` sent -> last block received, in ms."""
        if not self.block_arrivals:
            return None
        return (self.block_arrivals[-1][0] - self.sent_at) * 1000.0

    @property
    def audio_s(self) -> float:
        """Seconds of audio received."""
        return len(self.pcm) / 2 / self.sample_rate_hz if self.sample_rate_hz else 0.0

    def underruns(self, prebuffer_ms: float) -> int:
        """Blocks that arrived after their play time.

        Playback starts at the first block's arrival plus `prebuffer_ms` and runs in
        real time (DESIGN.md "underrun"); each late block counts once.
        """
        if not self.block_arrivals or not self.sample_rate_hz:
            return 0
        start = self.block_arrivals[0][0] + prebuffer_ms / 1000.0
        played_samples = 0
        late = 0
        for arrival, samples in self.block_arrivals:
            if arrival > start + played_samples / self.sample_rate_hz:
                late += 1
            played_samples += samples
        return late


class BridgeClient:
    """An asyncio DEALER connected to the daemon.

    Args:
      address: e.g. "tcp://127.0.0.1:5557".
      client_name: Sent in `hello`, shown in the daemon's logs.
      token: Shared secret, if the daemon has one.
      sample_rate_hz: Ask for this PCM rate (None = native voice rates).
      context: ZeroMQ context to use (default: a private one, terminated on close).
      timing: Ask for `timing` messages (word and viseme timing, or mouth values).
    """

    def __init__(
        self,
        address: str,
        client_name: str = "npc-voice client",
        token: str = "",
        sample_rate_hz: int | None = None,
        context: zmq.asyncio.Context | None = None,
        timing: bool = False,
    ) -> None:
        self.address = address
        self._hello = Hello(
            protocol=PROTOCOL_VERSION, client=client_name, token=token,
            sample_rate_hz=sample_rate_hz, timing=timing,
        )
        self._own_context = context is None
        self._context = context or zmq.asyncio.Context()
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task[None] | None = None
        # Items are (arrival perf_counter, event): arrivals are stamped by the reader, so
        # a caller that collects late still measures when each message arrived.
        self._turn_queues: dict[int, asyncio.Queue[tuple[float, TurnEvent]]] = {}
        self._control: asyncio.Queue[DaemonMessage] = asyncio.Queue()
        self.speech_events: asyncio.Queue[SpeechStarted | SpeechEnded | Transcript] = (
            asyncio.Queue())
        self.scene_events: asyncio.Queue[SceneLine | SceneCut | SceneEnded] = asyncio.Queue()
        """Scenes: each line's announcement (its turn's events then come through
        `events(line.turn_id)`), and the end of each scene."""
        """Voice input: speech started/ended, and each transcript (its turn's events
        then come through `events(transcript.turn_id)`)."""
        self._next_turn_id = int(time.time() * 1000) % 1_000_000
        self._mic_seq = 0
        self.welcome: Welcome | None = None
        self.connection_errors: list[Error] = []
        self.unrouted: list[DaemonMessage] = []
        """Messages naming a turn nobody was waiting for (e.g. after its terminal event:
        a protocol violation), also passed to `next_control`."""

    async def __aenter__(self) -> BridgeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float = 60.0) -> Welcome:
        """Connect and perform the handshake.

        ZeroMQ connects in the background, so this also waits for a daemon that is
        still loading its models, up to `timeout_s`.

        Raises:
          TimeoutError: no welcome within `timeout_s`.
          BridgeError: the daemon refused the hello (bad token, protocol version).
        """
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(self.address)
        self._socket = sock
        self._reader = asyncio.create_task(self._read_loop(), name="bridge-client-reader")
        await self._send(self._hello)
        try:
            reply = await asyncio.wait_for(self._control.get(), timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise TimeoutError(
                f"no daemon answered at {self.address} within {timeout_s:.0f} s"
            ) from None
        if isinstance(reply, Error):
            await self.close()
            raise BridgeError(reply)
        if not isinstance(reply, Welcome):
            await self.close()
            raise RuntimeError(f"expected welcome, got {type(reply).__name__}")
        self.welcome = reply
        return reply

    async def close(self) -> None:
        """Stop reading and close the socket (and the private context)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._own_context:
            self._context.term()

    async def _send(self, message: Hello | Say | Typing | Cancel | ListenStart | ListenStop
                    | SceneStart | SceneEnd) -> None:
        assert self._socket is not None, "connect() first"
        await self._socket.send_multipart(to_frames(message))

    async def listen_start(self, npc_id: str, mode: str = "push_to_talk",
                           sample_rate_hz: int = 16000, profile: str | None = None) -> None:
        """Open the microphone stream to `npc_id` (see `ListenStart`)."""
        self._mic_seq = 0
        await self._send(ListenStart(npc_id=npc_id, mode=mode,  # type: ignore[arg-type]
                                     sample_rate_hz=sample_rate_hz, profile=profile))

    async def send_mic(self, pcm: bytes) -> None:
        """Send one block of s16le mono microphone audio."""
        assert self._socket is not None, "connect() first"
        header = MicAudio(seq=self._mic_seq, sample_count=len(pcm) // 2)
        self._mic_seq += 1
        await self._socket.send_multipart(to_frames(header, pcm))

    async def listen_stop(self) -> None:
        """Close the microphone stream (push-to-talk released)."""
        await self._send(ListenStop())

    async def send_raw(self, frames: list[bytes]) -> None:
        """Send arbitrary frames (for tests of the daemon's input checks)."""
        assert self._socket is not None, "connect() first"
        await self._socket.send_multipart(frames)

    async def next_control(self, timeout_s: float = 10.0) -> DaemonMessage:
        """Next message that belongs to no turn of ours (e.g. a connection error)."""
        return await asyncio.wait_for(self._control.get(), timeout_s)

    async def _read_loop(self) -> None:
        assert self._socket is not None
        while True:
            frames = await self._socket.recv_multipart()
            decoded = daemon_message_from_frames(frames)
            header = decoded.header if isinstance(decoded, DecodedAudio) else decoded
            turn_id = getattr(header, "turn_id", None)
            arrival = time.perf_counter()
            if isinstance(decoded, Transcript):  # a voice turn the daemon started
                self._daemon_chose(decoded.turn_id)
                self._turn_queues.setdefault(decoded.turn_id, asyncio.Queue())
                self.speech_events.put_nowait(decoded)
            elif isinstance(decoded, SceneLine):  # a scene line: a turn the daemon started
                self._daemon_chose(decoded.turn_id)
                self._turn_queues.setdefault(decoded.turn_id, asyncio.Queue())
                self.scene_events.put_nowait(decoded)
                continue
            elif isinstance(decoded, SceneCut):
                self.scene_events.put_nowait(decoded)
                continue
            elif isinstance(decoded, SceneEnded):
                self.scene_events.put_nowait(decoded)
                continue
            elif isinstance(decoded, (SpeechStarted, SpeechEnded)):
                self.speech_events.put_nowait(decoded)
                continue
            queue = self._turn_queues.get(turn_id) if turn_id is not None else None
            if queue is not None:
                queue.put_nowait((arrival, decoded))  # type: ignore[arg-type]
            else:
                if isinstance(decoded, Error):
                    self.connection_errors.append(decoded)
                if turn_id is not None:
                    self.unrouted.append(header)
                self._control.put_nowait(decoded)  # type: ignore[arg-type]

    def next_turn_id(self) -> int:
        """A fresh turn id: greater than every id used on this connection so far.

        Including the ids the daemon chose (voice turns, scene lines), which a `say`
        must exceed too.
        """
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        return turn_id

    def _daemon_chose(self, turn_id: int) -> None:
        self._next_turn_id = max(self._next_turn_id, turn_id + 1)

    async def say(
        self, npc_id: str, text: str, profile: str | None = None, turn_id: int | None = None
    ) -> int:
        """Send a player line; return its turn id (read events with `events`)."""
        turn_id = self.next_turn_id() if turn_id is None else turn_id
        self._turn_queues[turn_id] = asyncio.Queue()
        await self._send(Say(turn_id=turn_id, npc_id=npc_id, text=text, profile=profile))
        return turn_id

    async def typing(self, npc_id: str, text: str) -> None:
        """Tell the daemon the line being typed to `npc_id` so far (see `Typing`)."""
        await self._send(Typing(npc_id=npc_id, text=text))

    async def scene_start(self, scene_id: int, npc_ids: list[str], situation: str = "",
                          max_exchanges: int | None = None) -> None:
        """Start a scene (see `SceneStart`); its lines arrive on `scene_events`."""
        await self._send(SceneStart(scene_id=scene_id, npc_ids=npc_ids, situation=situation,
                                    max_exchanges=max_exchanges))

    async def scene_end(self, scene_id: int) -> None:
        """End a scene (see `SceneEnd`)."""
        await self._send(SceneEnd(scene_id=scene_id))

    async def say_in_scene(self, scene_id: int, npc_id: str, text: str) -> int:
        """The player speaks into a scene, addressing `npc_id`.

        Returns the turn id of the answer (announced by a `scene_line`; its events come
        through `events`).
        """
        turn_id = self.next_turn_id()
        self._turn_queues[turn_id] = asyncio.Queue()
        await self._send(Say(turn_id=turn_id, npc_id=npc_id, text=text, scene_id=scene_id))
        return turn_id

    async def cancel(self, turn_id: int) -> None:
        """Ask the daemon to stop `turn_id` (barge-in)."""
        await self._send(Cancel(turn_id=turn_id))

    async def events(self, turn_id: int, timeout_s: float = 60.0) -> AsyncIterator[TurnEvent]:
        """Yield the events of `turn_id` up to and including its terminal event.

        Raises:
          TimeoutError: no event for `timeout_s` seconds.
        """
        async for _arrival, event in self.timed_events(turn_id, timeout_s):
            yield event

    async def timed_events(
        self, turn_id: int, timeout_s: float = 60.0
    ) -> AsyncIterator[tuple[float, TurnEvent]]:
        """Like `events`, with each event's arrival time (`time.perf_counter()`)."""
        queue = self._turn_queues[turn_id]
        try:
            while True:
                try:
                    arrival, event = await asyncio.wait_for(queue.get(), timeout_s)
                except asyncio.TimeoutError:
                    raise TimeoutError(
                        f"turn {turn_id}: nothing from the daemon for {timeout_s:.0f} s"
                    ) from None
                yield arrival, event
                header = event.header if isinstance(event, DecodedAudio) else event
                if is_terminal(header):
                    return
        finally:
            self._turn_queues.pop(turn_id, None)

    async def run_turn(
        self,
        npc_id: str,
        text: str,
        profile: str | None = None,
        timeout_s: float = 60.0,
        on_event: Callable[[TurnEvent, TurnResult], None] | None = None,
    ) -> TurnResult:
        """Send a line and collect the whole turn.

        Args:
          npc_id: The NPC addressed.
          text: The player's line.
          profile: Speech profile override (None = the NPC's).
          timeout_s: Longest silence from the daemon before giving up.
          on_event: Called with each event as it arrives (e.g. to print subtitles or
            cancel mid-stream).

        Raises:
          TimeoutError: the daemon went silent for `timeout_s`.
        """
        sent_at = time.perf_counter()
        turn_id = await self.say(npc_id, text, profile)
        return await self.collect(turn_id, sent_at, timeout_s, on_event)

    async def collect(
        self,
        turn_id: int,
        sent_at: float,
        timeout_s: float = 60.0,
        on_event: Callable[[TurnEvent, TurnResult], None] | None = None,
    ) -> TurnResult:
        """Collect the events of `turn_id` up to its terminal event into a `TurnResult`.

        Args:
          turn_id: The turn.
          sent_at: The instant TTFA counts from (the `say`, or the end of speech).
          timeout_s: Longest silence from the daemon before giving up.
          on_event: Called with each event as it arrives.
        """
        result = TurnResult(turn_id=turn_id, sent_at=sent_at)
        async for now, event in self.timed_events(turn_id, timeout_s):
            if isinstance(event, DecodedAudio):
                result.block_arrivals.append((now, event.header.sample_count))
                result.block_chunks.append(event.header.chunk_index)
                result.seqs.append(event.header.seq)
                result.final_flags.append(event.header.final)
                result.sample_rate_hz = event.header.sample_rate_hz
                result.pcm.extend(event.pcm)
            elif isinstance(event, Subtitle):
                result.subtitles.append(event.text)
                if result.first_subtitle_at is None:
                    result.first_subtitle_at = now
            elif isinstance(event, Transcript):
                result.transcript = event.text
            elif isinstance(event, Timing):
                result.timing.append(event)
            else:
                result.terminal = event
                result.terminal_at = now
            if on_event is not None:
                on_event(event, result)
        return result
