"""Every message of the npc-voice-bridge wire contract, as msgspec Structs.

Why one module: a game-engine developer (or the Godot addon) implements exactly what
is listed here, and nothing else travels on the socket. Control messages are one JSON
frame each; an audio block is a multipart message whose first frame is the JSON
header below (`AudioBlock`) and whose second frame is raw s16le mono PCM
(see `bridge_protocol.framing` and PROTOCOL.md).

Schema evolution rules (msgspec docs, "Schema Evolution"): new fields always get
defaults, existing annotations never change, unknown fields are ignored on decode,
and a breaking change bumps `PROTOCOL_VERSION`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PROTOCOL_VERSION = 1
"""Version stated in `Hello.protocol` / `Welcome.protocol`; bumped on breaking changes."""

SAMPLE_FORMAT = "s16le"
"""The only PCM encoding on the wire: signed 16-bit little-endian, mono."""

TurnId = Annotated[int, Meta(ge=0, le=2**53 - 1)]
"""Client-chosen turn id: a non-negative integer, unique and increasing per connection.

The upper bound keeps ids exact in GDScript and JavaScript, whose JSON numbers are doubles.
"""

NpcId = Annotated[str, Meta(min_length=1, max_length=64)]

Priority = Literal["ambient", "normal", "high"]
"""Which turn goes first when several compete for the engines.

"high": a line the player is waiting for; "normal" (the default): an ordinary line;
"ambient": barks and background chatter, which never delay the others (the daemon
keeps LLM capacity free for non-ambient turns and lets them overtake ambient ones).
"""
SampleRateHz = Annotated[int, Meta(ge=8000, le=192000)]

MAX_MIC_SAMPLES = 192000
"""Most samples in one `mic_audio` block (one second at the highest rate)."""


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Message(msgspec.Struct, tag_field="type", tag=_snake_case, kw_only=True):
    """Base of every bridge message; `type` carries the snake_case class name."""


class Record(msgspec.Struct, kw_only=True):
    """Base of the untagged records nested inside messages."""


# --------------------------------------------------------------------------- client -> daemon


class Hello(Message, kw_only=True):
    """First message of every connection; nothing else is accepted before it.

    Attributes:
      protocol: `PROTOCOL_VERSION` the client speaks.
      client: Free-form client name for logs, e.g. "godot-4.3 my-game".
      token: Shared secret; required when the daemon is configured with one.
      sample_rate_hz: Rate the client wants PCM in; None = each voice's native rate
        (Piper voices 22050 Hz, XTTS 24000 Hz). The daemon resamples with soxr.
      timing: Send `timing` messages ahead of the audio they describe (word timing and
        visemes, or a mouth-open value per block; see `NpcInfo.lip_sync`).
    """

    protocol: int
    client: str = ""
    token: str = ""
    sample_rate_hz: SampleRateHz | None = None
    timing: bool = False


class Say(Message, kw_only=True):
    """A player utterance (typed text) to an NPC; starts a turn.

    Attributes:
      turn_id: Client-chosen id, greater than every earlier turn id of this connection.
      npc_id: One of the NPC ids listed in `Welcome.npcs`.
      text: The player's line, UTF-8, at most `Limits.max_text_chars` characters.
      profile: Speech profile override for this turn ("fast", "cinematic", ...);
        None = the NPC's configured profile.
      priority: "high", "normal" (default) or "ambient" (see `Priority`).
      scene_id: The player speaks into this scene (see `SceneStart`): the NPC speaking
        stops at its next clause boundary and `npc_id` (one of the scene's NPCs, the one
        the player addresses) answers next; the answer is this turn.
    """

    turn_id: TurnId
    npc_id: NpcId
    text: str
    profile: str | None = None
    priority: Priority = "normal"
    scene_id: Annotated[int, Meta(ge=0)] | None = None


class Typing(Message, kw_only=True):
    """The line the player is typing to an NPC, so far (optional; sent while typing).

    The daemon evaluates the conversation's prompt up to the line's last complete word
    in the background, so that when the `say` comes only its last words are new. Send
    it debounced (e.g. 150-300 ms after the last keystroke) with the whole text typed
    so far; nothing is answered, and a line never sent costs nothing visible.

    A text that ends a sentence ("Where is the smithy?") starts its reply at once, held
    back until a `say` with the same text (NPC, profile and priority) takes it; send
    such a text without waiting for the debounce. A changed text, another `say`, or
    10 s without one drop it unheard (`TurnTimings.speculative_lead_ms`).

    Attributes:
      npc_id: The NPC the line is for.
      text: The text typed so far, at most `Limits.max_text_chars` characters.
    """

    npc_id: NpcId
    text: str


class Cancel(Message, kw_only=True):
    """Barge-in from the game: stop `turn_id` end to end (LLM, TTS, queued blocks)."""

    turn_id: TurnId


class ListenStart(Message, kw_only=True):
    """Open the microphone stream of this connection, addressed to one NPC.

    Attributes:
      npc_id: The NPC the player talks to.
      mode: "push_to_talk": the utterance is everything until `listen_stop` (the key
        release is the end of the utterance); "open_mic": the daemon finds each
        utterance's start and end itself (voice activity detection), until `listen_stop`.
      sample_rate_hz: Rate of the `mic_audio` PCM that follows (16000 recommended;
        other rates are resampled with soxr).
      profile: Speech profile override for the turns this stream starts.
      priority: Priority of the turns this stream starts (see `Priority`).
    """

    npc_id: NpcId
    mode: Literal["push_to_talk", "open_mic"] = "push_to_talk"
    sample_rate_hz: SampleRateHz = 16000
    profile: str | None = None
    priority: Priority = "normal"


class MicAudio(Message, kw_only=True):
    """Header frame of microphone audio; the next frame holds s16le mono PCM.

    Attributes:
      seq: 0-based, contiguous index of the block since `listen_start`.
      sample_count: Samples in the PCM frame (the frame is 2x bytes).
    """

    seq: Annotated[int, Meta(ge=0)]
    sample_count: Annotated[int, Meta(ge=0, le=MAX_MIC_SAMPLES)]


class ListenStop(Message, kw_only=True):
    """Close the microphone stream (push-to-talk released, or open mic switched off).

    In push-to-talk mode, what was heard since `listen_start` becomes the utterance.
    """


class SceneStart(Message, kw_only=True):
    """Start a scene: 2-6 NPCs talk with each other, one at a time, until `scene_end`.

    The daemon picks who speaks next (the NPC named in the last line, else the next in
    turn, never the same twice in a row). Each line is an ordinary turn on the wire,
    announced by `scene_line`; the next line is prepared while the current one plays.

    Attributes:
      scene_id: Client-chosen id, unique among this connection's open scenes.
      npc_ids: The NPCs of the scene, 2 to 6, all different; the first speaks first.
      situation: What the scene is about ("The blacksmith and the innkeeper argue
        about the price of ale."); "" = none.
      max_exchanges: Lines before the scene ends by itself; None = the daemon's
        `[scenes] max_exchanges`.
    """

    scene_id: Annotated[int, Meta(ge=0)]
    npc_ids: Annotated[list[NpcId], Meta(min_length=2, max_length=6)]
    situation: Annotated[str, Meta(max_length=2000)] = ""
    max_exchanges: Annotated[int, Meta(ge=1, le=200)] | None = None


class SceneEnd(Message, kw_only=True):
    """End a scene: its line in progress is cancelled, nothing more is said."""

    scene_id: Annotated[int, Meta(ge=0)]


ClientMessage = (Hello | Say | Typing | Cancel | ListenStart | MicAudio | ListenStop
                 | SceneStart | SceneEnd)
"""Union of everything a client may send."""


# --------------------------------------------------------------------------- daemon -> client


class Limits(Record, kw_only=True):
    """Limits the daemon enforces, stated in the handshake so a client can respect them.

    Attributes:
      max_text_chars: Longest accepted `Say.text`, in characters.
      max_message_bytes: Largest accepted control frame, in bytes.
      max_turns_in_flight: Unfinished turns one connection may have at once.
    """

    max_text_chars: int
    max_message_bytes: int
    max_turns_in_flight: int


class NpcInfo(Record, kw_only=True):
    """One NPC the daemon can voice.

    Attributes:
      npc_id: Id to use in `Say.npc_id`.
      display_name: Name for UI and subtitles.
      profile: Default speech profile name.
      sample_rate_hz: Rate of this NPC's blocks on this connection.
      prebuffer_ms: Client pre-buffer the profile recommends before starting playback.
      language: BCP 47 tag of the language the NPC speaks and understands ("en",
        "pt-BR"): its replies, and what voice input addressed to it is recognised as.
      lip_sync: What this NPC's `timing` messages carry: "visemes" (words and visemes
        from the synthesis' own phoneme durations: Piper voices) or "energy" (a
        mouth-open value per block from the audio's loudness: voices without an
        alignment, such as XTTS).
    """

    npc_id: str
    display_name: str
    profile: str
    sample_rate_hz: int
    prebuffer_ms: int
    language: str = "en"
    lip_sync: Literal["visemes", "energy"] = "energy"


class Welcome(Message, kw_only=True):
    """Answer to a valid `Hello`; the connection is ready for turns.

    Attributes:
      protocol: `PROTOCOL_VERSION` of the daemon.
      daemon: Daemon name and version, e.g. "npc-voice-bridge 0.1.0".
      sample_format: Always "s16le" (signed 16-bit little-endian).
      channels: Always 1 (mono).
      sample_rate_hz: The rate requested in `Hello`, or None when blocks carry each
        voice's native rate (always stated per block in `AudioBlock.sample_rate_hz`).
      limits: What the daemon enforces.
      npcs: The NPCs that can be addressed.
    """

    protocol: int
    daemon: str
    sample_format: str = SAMPLE_FORMAT
    channels: int = 1
    sample_rate_hz: int | None = None
    limits: Limits
    npcs: list[NpcInfo] = []


class Subtitle(Message, kw_only=True):
    """Text of the chunk whose audio follows; sent before that chunk's first block.

    Attributes:
      turn_id: Turn the text belongs to.
      chunk_index: 0-based index of the chunk within the turn.
      text: Exactly the text handed to TTS for this chunk.
    """

    turn_id: int
    chunk_index: int
    text: str


class WordTiming(Record, kw_only=True):
    """A word of a chunk and where it is spoken.

    Attributes:
      text: The word as written in the chunk, punctuation included (the chunk's words
        joined by spaces give its text back).
      start_sample: Its first sample in the turn's audio (see `Timing`).
      end_sample: One past its last sample; a pause after it is not included. Equal to
        `start_sample` for a word the voice gives no time of its own (said with its
        neighbour, or its phonemes given no frames, as a quick "a").
    """

    text: str
    start_sample: int
    end_sample: int


class VisemeTiming(Record, kw_only=True):
    """A viseme and where it starts; it holds until the next one.

    Attributes:
      viseme: One of the 15 visemes of OVRLipSync: "sil", "PP", "FF", "TH", "DD", "kk",
        "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou".
      start_sample: Its first sample in the turn's audio (see `Timing`).
      weight: How far the mouth goes to the shape, 0..1 (stressed vowels 1.0, unstressed
        0.6, consonants and "sil" 1.0).
    """

    viseme: str
    start_sample: int
    weight: float = 1.0


class MouthTiming(Record, kw_only=True):
    """How open the mouth is during one block (voices with `lip_sync` "energy").

    Attributes:
      start_sample: The block's first sample in the turn's audio (see `Timing`).
      open: 0 (closed: silence) .. 1 (wide: loud speech), from the block's RMS level:
        -50 dBFS and below -> 0, -10 dBFS and above -> 1, linear in dB between.
    """

    start_sample: int
    open: float


class Timing(Message, kw_only=True):
    """When words and mouth shapes happen in the audio that follows (clients that asked).

    Sent only to a client whose `hello` had `timing: true`, always before the first
    block holding a sample it describes: for a Piper voice ("visemes") once per
    sentence of a chunk, after the chunk's `subtitle`; for an "energy" voice once per
    group of blocks. Offsets count samples of the turn's audio at `sample_rate_hz` (the
    blocks' rate) from 0 at the turn's first sample: offset n is reached when a client
    has played n samples of the turn. With resampling, native offset m becomes
    floor(m * sample_rate_hz / native rate), and the blocks carry exactly that many
    samples before it.

    Attributes:
      turn_id: The turn.
      chunk_index: The chunk (see `Subtitle`) whose audio this describes.
      sample_rate_hz: Rate of the offsets (that of the blocks).
      start_sample: First sample described.
      end_sample: One past the last sample described.
      source: "visemes" (words and visemes) or "energy" (mouth values).
      words: "visemes": the words spoken in [start_sample, end_sample), in order.
      visemes: "visemes": the viseme track there, in order; the first ("sil") starts at
        `start_sample`, the last ("sil") lasts until `end_sample`.
      mouth: "energy": one value per block in [start_sample, end_sample).
    """

    turn_id: int
    chunk_index: int
    sample_rate_hz: int
    start_sample: int
    end_sample: int
    source: Literal["visemes", "energy"]
    words: list[WordTiming] = []
    visemes: list[VisemeTiming] = []
    mouth: list[MouthTiming] = []


class AudioBlock(Message, kw_only=True):
    """Header frame of an audio message; the next frame holds the PCM.

    Attributes:
      turn_id: Turn the block belongs to; blocks of a finished turn never follow its
        terminal event.
      seq: 0-based, contiguous index of the block within the turn (gaps mean loss).
      sample_rate_hz: Samples per second of the PCM frame.
      sample_count: Number of mono samples in the PCM frame (the frame is 2x bytes).
      chunk_index: Chunk (see `Subtitle`) the samples were synthesised from.
      final: True on the last block of a turn that completes normally.
    """

    turn_id: int
    seq: int
    sample_rate_hz: int
    sample_count: int
    chunk_index: int = 0
    final: bool = False


class TurnTimings(Record, kw_only=True):
    """Where a turn's time went, in milliseconds since the daemon had the utterance.

    Every field is measured on the daemon's monotonic clock; None = the stage never
    happened (e.g. no token before a cancel). `first_block_ms` is the daemon-side TTFA.

    Attributes:
      queued_ms: Waiting for a free LLM instance.
      llm_first_token_ms: First reply token out of llama.cpp (includes prefill).
      first_chunk_ms: First text chunk handed to TTS.
      tts_first_audio_ms: First PCM out of the TTS engine.
      first_block_ms: First audio block handed to the socket (daemon TTFA).
      llm_done_ms: Last reply token.
      last_block_ms: Last audio block handed to the socket.
      prompt_tokens: Tokens in the LLM prompt (summed over both tiers of a two-tier turn).
      prefill_tokens: Prompt tokens actually evaluated (the rest came from the KV cache).
      reply_tokens: Tokens the LLM generated.
      audio_ms: Duration of the audio sent.
      tts_busy_ms: Wall time spent inside TTS synthesis.
      rtf: Real-time factor of TTS, tts_busy_ms / audio_ms.
      endpoint_ms: Voice turns: end of speech -> endpoint decided (the silence wait).
      asr_ms: Voice turns: speech recognition time of the transcript used.
      speculative: The reply started before the line was certain: on a pause, before
        the endpoint (voice turns), or on a `typing` message whose text ended a
        sentence, before the `say` (typed turns).
      speculative_lead_ms: Typed turns started on a `typing` message: how long before
        the `say` the reply began. The milestones count from the `say`; one reached
        before it is 0.
      endpoint_by: Voice turns: what ended the utterance: "smart_turn" (a short silence
        and the end-of-turn model judged it complete), "silence" (the full silence
        wait), "listen_stop" (push-to-talk released) or "max_length".
      turn_complete: Voice turns: the end-of-turn model's probability that the player
        had finished, at the first pause (None when it did not run).
      narrative_first_token_ms: Two-tier turns: first token of the narrative tier's
        continuation (None = single tier, or no continuation).
      handoff_chunk_index: Two-tier turns: `chunk_index` of the continuation's first
        chunk; earlier chunks are the fast tier's opener (None = no continuation spoken).
      handoff_gap_ms: Two-tier turns: silence at the hand-off for a client that started
        playing at the first block plus the profile's pre-buffer, i.e. how late the
        continuation's first block was after the opener's audio ran out (0 = seamless).
    """

    queued_ms: float | None = None
    llm_first_token_ms: float | None = None
    first_chunk_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_block_ms: float | None = None
    llm_done_ms: float | None = None
    last_block_ms: float | None = None
    prompt_tokens: int = 0
    prefill_tokens: int = 0
    reply_tokens: int = 0
    audio_ms: float = 0.0
    tts_busy_ms: float = 0.0
    rtf: float | None = None
    endpoint_ms: float | None = None
    asr_ms: float | None = None
    speculative: bool = False
    speculative_lead_ms: float | None = None
    endpoint_by: str | None = None
    turn_complete: float | None = None
    narrative_first_token_ms: float | None = None
    handoff_chunk_index: int | None = None
    handoff_gap_ms: float | None = None


class Done(Message, kw_only=True):
    """Terminal event: the turn completed and every block was sent.

    Attributes:
      turn_id: The finished turn.
      block_count: Blocks sent (seq 0 .. block_count-1).
      sample_count: Total samples over all blocks.
      reply_text: The whole reply as spoken (all chunks joined).
      profile: Speech profile the turn used.
      timings: Per-stage timings.
    """

    turn_id: int
    block_count: int
    sample_count: int
    reply_text: str = ""
    profile: str = ""
    timings: TurnTimings = msgspec.field(default_factory=TurnTimings)


CancelReason = Literal["cancel", "barge_in", "shutdown", "scene_end"]


class Cancelled(Message, kw_only=True):
    """Terminal event: the turn was stopped; no block of it follows.

    Attributes:
      turn_id: The stopped turn.
      reason: "cancel" (client `Cancel`, or the client disconnected), "barge_in" (a
        new `Say` to the same NPC on this connection, or the player started speaking
        to it), "shutdown" (daemon stopping) or "scene_end" (its scene ended).
      block_count: Blocks sent before the stop.
      timings: Per-stage timings up to the stop.
    """

    turn_id: int
    reason: CancelReason
    block_count: int = 0
    timings: TurnTimings = msgspec.field(default_factory=TurnTimings)


class Error(Message, kw_only=True):
    """Something was wrong. With a `turn_id` it is that turn's terminal event.

    Attributes:
      code: Machine-readable code, one of `ErrorCode`.
      message: Human-readable explanation naming what was wrong.
      turn_id: Turn the error ends, or None for a connection-level error (a bad frame,
        a message before the handshake...), which ends no turn.
      rejected_turn_id: With `turn_id_reused`: the id of the refused `say` (which
        started no turn; another turn may hold that id).
    """

    code: str
    message: str
    turn_id: int | None = None
    rejected_turn_id: int | None = None


class SpeechStarted(Message, kw_only=True):
    """The player started speaking (voice activity), e.g. to show "listening".

    Attributes:
      npc_id: NPC of the microphone stream.
      at_ms: Position in the input timeline (ms of audio since `listen_start`).
    """

    npc_id: str
    at_ms: float


class SpeechEnded(Message, kw_only=True):
    """The player's utterance ended (endpoint, or push-to-talk released).

    Attributes:
      npc_id: NPC of the microphone stream.
      at_ms: End of speech in the input timeline (ms since `listen_start`).
      turn_id: The turn this utterance started, or None when nothing was recognised.
    """

    npc_id: str
    at_ms: float
    turn_id: int | None = None


class Transcript(Message, kw_only=True):
    """What the player said, as recognised; the first message of a voice turn.

    The turn then proceeds as a typed line would (subtitles, blocks, one terminal
    event). Its `turn_id` is chosen by the daemon: greater than every earlier turn id
    of the connection, so a client's next `say` must use a greater one still.

    Attributes:
      turn_id: The turn started by this utterance.
      npc_id: The NPC answering.
      text: The recognised utterance (the player's subtitle).
      speech_end_ms: End of speech in the input timeline (ms since `listen_start`).
    """

    turn_id: int
    npc_id: str
    text: str
    speech_end_ms: float = 0.0


class SceneLine(Message, kw_only=True):
    """The next line of a scene: turn `turn_id`, spoken by `npc_id`.

    Its subtitles, blocks and terminal event follow, as for any turn. Sent when the line
    may start playing (the previous line's audio has ended, plus the scene's pause).

    Attributes:
      scene_id: The scene.
      turn_id: The line's turn: chosen by the daemon (greater than every earlier id of
        the connection), or the player's `say` when the line answers it.
      npc_id: Who speaks.
      answers_player: The line answers the player's `say` (`turn_id` is that say's).
    """

    scene_id: int
    turn_id: int
    npc_id: str
    answers_player: bool = False


class SceneCut(Message, kw_only=True):
    """The player spoke into a scene: stop playing `turn_id` after chunk `after_chunk_index`.

    The daemon may have sent audio well ahead of playback; this tells the client where
    the line now ends: play its blocks up to the end of chunk `after_chunk_index` (the
    clause playing when the player spoke) and drop every later block and subtitle of
    the turn, queued or still to come (-1: stop the line now). The turn still ends with
    its one terminal event. The answer's `scene_line` follows once the cut line has
    played to there, plus the scene's pause.

    Attributes:
      scene_id: The scene.
      turn_id: The line cut.
      after_chunk_index: Last chunk to play; -1 = none (stop at once).
    """

    scene_id: int
    turn_id: int
    after_chunk_index: int


SceneEndReason = Literal["scene_end", "max_exchanges", "cancel", "error"]


class SceneEnded(Message, kw_only=True):
    """A scene is over; no line of it follows.

    Attributes:
      scene_id: The scene.
      reason: "scene_end" (the client asked), "max_exchanges" (it said its lines),
        "cancel" (the client cancelled a line of it) or "error" (a line failed).
      lines: Lines spoken.
    """

    scene_id: int
    reason: SceneEndReason
    lines: int = 0


DaemonMessage = (
    Welcome | Subtitle | Timing | AudioBlock | Done | Cancelled | Error | SpeechStarted
    | SpeechEnded | Transcript | SceneLine | SceneCut
    | SceneEnded
)
"""Union of everything the daemon sends."""


class ErrorCode:
    """Values of `Error.code`. Clients should branch on these, never on `message`."""

    BAD_FRAME = "bad_frame"
    """Wrong number of frames or an oversized frame."""
    BAD_JSON = "bad_json"
    """The frame is not valid UTF-8 JSON."""
    UNKNOWN_TYPE = "unknown_type"
    """The `type` field names no client message."""
    INVALID_MESSAGE = "invalid_message"
    """Known type, but a field is missing or has the wrong type or range."""
    HANDSHAKE_REQUIRED = "handshake_required"
    """A message other than `hello` arrived before a successful handshake."""
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    """`Hello.protocol` is not a version this daemon speaks."""
    BAD_TOKEN = "bad_token"
    """The daemon requires a token and `Hello.token` does not match."""
    TEXT_TOO_LONG = "text_too_long"
    EMPTY_TEXT = "empty_text"
    UNKNOWN_NPC = "unknown_npc"
    UNKNOWN_PROFILE = "unknown_profile"
    TURN_ID_REUSED = "turn_id_reused"
    """`Say.turn_id` is not greater than every earlier turn id of this connection."""
    UNKNOWN_TURN = "unknown_turn"
    """`Cancel.turn_id` names no unfinished turn of this connection."""
    TOO_MANY_TURNS = "too_many_turns"
    """The connection already has `Limits.max_turns_in_flight` unfinished turns."""
    CLIENT_TOO_SLOW = "client_too_slow"
    """The client did not read its audio and its send queue overflowed."""
    ENGINE_FAILED = "engine_failed"
    """The LLM or TTS engine raised during the turn; details in `message`."""
    VOICE_INPUT_UNAVAILABLE = "voice_input_unavailable"
    """Voice input is off in the daemon's config, or its extra is not installed."""
    NOT_LISTENING = "not_listening"
    """`mic_audio` or `listen_stop` without a `listen_start`."""
    BAD_SCENE = "bad_scene"
    """`scene_start` with an NPC twice, an unknown NPC, or a scene id already open."""
    UNKNOWN_SCENE = "unknown_scene"
    """`scene_end`, or a `say` with `scene_id`, naming no open scene (or an NPC not in it)."""
    MIC_AUDIO_TOO_FAST = "mic_audio_too_fast"
    """`mic_audio` arrives so much faster than real time that blocks were dropped."""


TERMINAL_TYPES = (Done, Cancelled)
"""Terminal events besides `Error` with a turn id (see `is_terminal`)."""


def is_terminal(message: DaemonMessage) -> bool:
    """Return True if `message` ends its turn (done, cancelled, or error with a turn id)."""
    if isinstance(message, TERMINAL_TYPES):
        return True
    return isinstance(message, Error) and message.turn_id is not None


encode = msgspec.json.Encoder().encode
"""Encode any message to compact UTF-8 JSON bytes."""

_client_decoder = msgspec.json.Decoder(ClientMessage)
_daemon_decoder = msgspec.json.Decoder(DaemonMessage)


def decode_client(data: bytes) -> ClientMessage:
    """Decode one client control frame.

    Raises:
      msgspec.DecodeError: not JSON (its subclass msgspec.ValidationError: wrong schema).
    """
    return _client_decoder.decode(data)


def decode_daemon(data: bytes) -> DaemonMessage:
    """Decode one daemon control or audio-header frame (raises like `decode_client`)."""
    return _daemon_decoder.decode(data)


def json_schemas() -> dict[str, dict]:
    """JSON Schema (2020-12) of both directions, for implementers in other languages."""
    return {
        "client_to_daemon": msgspec.json.schema(ClientMessage),
        "daemon_to_client": msgspec.json.schema(DaemonMessage),
    }
