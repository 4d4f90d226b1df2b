"""Loading and warming every engine the configuration names, with timings logged.

The daemon says "ready" only after this finishes, so the first player line never pays
for model loading, ONNX initialisation, espeak-ng start-up or persona prefill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from daemon.asr.engines import AsrEngines
from daemon.asr.routing import asr_routes
from daemon.asr.smart_turn import SmartTurn
from daemon.asr.transcriber import Transcriber, resolve_whisper
from daemon.asr.vad import SileroVad
from daemon.config import AsrConfig, Config, LlmConfig, VoiceConfig
from daemon.engines.thread import EngineThread
from daemon.llm.base import TierEngine
from daemon.llm.conversation import persona_messages
from daemon.llm.gguf import llm_gguf
from daemon.llm.openai import OpenAiTier, api_key
from daemon.llm.pool import LlmPool
from daemon.llm.server_process import LlamaServerProcess
from daemon.llm.tiers import TieredLlm
from daemon.models import resolve_piper_voice
from daemon.pipeline.timings import ms_since
from daemon.tts.base import TtsEngine, Voice
from daemon.tts.hibari import HibariEngine
from daemon.tts.piper import PiperEngine
from daemon.tts.xtts.engine import XttsEngine, XttsStartup, XttsVoice, XttsWorker, start_xtts

_LOGGER = logging.getLogger(__name__)


@dataclass
class Engines:
    """The loaded engines.

    Attributes:
      llm: The LLM stage: the fast tier's llama.cpp pool, plus the narrative tier's
        when `[llm_narrative]` is configured.
      voices: Voice by the config's voice name.
      tts_threads: One owner thread per loaded TTS model (shared by its voices).
      xtts_worker: The XTTS worker process, when an XTTS voice is in use.
      llm_servers: llama-server child processes (tiers with backend "llama_server").
    """

    llm: TieredLlm
    voices: dict[str, Voice]
    tts_threads: list[EngineThread]
    xtts_worker: XttsWorker | None = None
    llm_servers: list[LlamaServerProcess] = field(default_factory=list)

    def close(self) -> None:
        """Stop every engine thread, the XTTS worker and the llama-servers started."""
        self.llm.close()
        for server in self.llm_servers:
            server.close()
        for thread in self.tts_threads:
            thread.shutdown()
        if self.xtts_worker is not None:
            self.xtts_worker.close()


async def load_engines(config: Config) -> Engines:
    """Load the LLM and every voice the NPCs use, then warm them up.

    Raises:
      ModelNotFoundError: a configured model file is missing.
      ValueError, RuntimeError: an engine failed to load.
    """
    started = time.perf_counter()
    used_voices = {npc.voice for npc in config.npcs.values()}
    xtts_names = sorted(name for name in used_voices if config.voices[name].engine == "xtts")
    xtts_thread: EngineThread | None = None
    xtts_startup = None
    if xtts_names:
        # XTTS loads in its own process, so it loads while llama.cpp and Piper do. If
        # loading them fails the daemon exits, and the worker with it (its stdin closes).
        _LOGGER.info("starting XTTS for voices %s (a large model: loads in the background)",
                     ", ".join(xtts_names))
        xtts_thread = EngineThread("xtts")
        xtts_startup = asyncio.ensure_future(xtts_thread.call(start_xtts, config, xtts_names))
    servers: list[LlamaServerProcess] = []
    fast = await load_tier(config.llm, "llm", servers)
    narrative = None
    if config.llm_narrative is not None:
        try:
            narrative = await load_tier(config.llm_narrative, "llm-narrative", servers)
        except BaseException:
            fast.close()
            for server in servers:
                server.close()
            raise
    llm = TieredLlm(fast, config.llm, narrative, config.llm_narrative)

    # Fallbacks are loaded up front: falling back must never load a model mid-game.
    piper_names = sorted((used_voices - set(xtts_names))
                         | {config.voices[name].fallback or "" for name in xtts_names})
    engines_by_model: dict[Path, tuple[TtsEngine, EngineThread]] = {}
    voices: dict[str, Voice] = {}
    hibari: tuple[TtsEngine, EngineThread] | None = None
    for voice_name in piper_names:
        settings = config.voices[voice_name]
        if settings.engine == "hibari":  # one engine serves every hibari voice
            hibari = hibari or await _load_hibari(config.tts.onnx_threads)
            voices[voice_name] = Voice(hibari[0], hibari[1], settings)
            continue
        onnx_path, json_path = resolve_piper_voice(settings.model)
        if onnx_path not in engines_by_model:
            thread: EngineThread = EngineThread(f"piper-{onnx_path.stem}")
            piper = await thread.call(PiperEngine, onnx_path, json_path, config.tts.onnx_threads,
                                      config.tts.piper_streaming)
            warm_started = time.perf_counter()
            await thread.call(piper.warm_up)
            _LOGGER.info("warmed %s in %.0f ms", piper.name, ms_since(warm_started))
            engines_by_model[onnx_path] = (piper, thread)
        engine, thread = engines_by_model[onnx_path]
        voices[voice_name] = Voice(engine, thread, settings)
    tts_threads = [thread for _, thread in engines_by_model.values()]
    if hibari is not None:
        tts_threads.append(hibari[1])
    xtts_worker = None
    if xtts_thread is not None and xtts_startup is not None:
        tts_threads.append(xtts_thread)
        xtts_worker = _use_xtts_voices(config, xtts_names, xtts_thread, await xtts_startup,
                                       voices)

    await llm.prefill(
        {npc_id: persona_messages(config.npc_system_prompt(npc_id)) for npc_id in config.npcs},
        {npc_id: config.npc_tiers(npc_id) for npc_id in config.npcs})
    _LOGGER.info("engines ready in %.2f s", time.perf_counter() - started)
    return Engines(llm, voices, tts_threads, xtts_worker, servers)


async def _load_hibari(onnx_threads: int) -> tuple[TtsEngine, EngineThread]:
    """Load and warm the hibari "heart" voice on a thread of its own (like a Piper model).

    Raises:
      ModelNotFoundError: hibari-tts is not installed.
    """
    thread: EngineThread = EngineThread("hibari")
    try:
        engine = await thread.call(HibariEngine, onnx_threads)
        warm_started = time.perf_counter()
        await thread.call(engine.warm_up)
    except BaseException:
        thread.shutdown()
        raise
    _LOGGER.info("warmed %s in %.0f ms", engine.name, ms_since(warm_started))
    return engine, thread


def xtts_voice_settings(config: Config, name: str) -> VoiceConfig:
    """XTTS voice `name`'s settings with its language resolved.

    XTTS speaks many languages: a voice without its own `language` speaks that of the
    NPCs using it (the config checks they agree), as a BCP 47 tag that the engine turns
    into XTTS's code ("pt-BR" -> "pt").
    """
    settings = config.voices[name]
    if settings.language is not None:
        return settings
    users = [npc_id for npc_id, npc in config.npcs.items() if npc.voice == name]
    return msgspec.structs.replace(
        settings, language=config.npc_language(users[0]) if users else config.language)


async def load_tier(config: LlmConfig, name: str, servers: list[LlamaServerProcess]
                    ) -> TierEngine:
    """One LLM tier as its config says: in process, a llama-server child, or a remote server.

    A llama-server started here is appended to `servers` (the caller stops it).

    Raises:
      ModelNotFoundError: a configured model file is missing.
      LlamaServerError, LlmServerError, ValueError: the engine could not start.
    """
    if config.backend == "openai":
        model = config.model_name or config.model
        _LOGGER.info("%s: streaming from the OpenAI-compatible server %s (model %s)", name,
                     config.url, model)
        return OpenAiTier(config.url, model, config, api_key(config))
    model_path = llm_gguf(config.model)
    if config.backend == "llama_server":
        server = LlamaServerProcess(name)
        servers.append(server)
        url = await server.start(model_path, config)
        return OpenAiTier(url, model_path.name, config)
    _LOGGER.info("loading %s %s x%d", name, model_path, config.instances)
    return await LlmPool.load(model_path, config, name=name)


def _use_xtts_voices(config: Config, names: list[str], thread: EngineThread,
                     startup: XttsStartup, voices: dict[str, Voice]) -> XttsWorker | None:
    """Add the XTTS voices `names` to `voices`, or their fallbacks, with one warning.

    Returns:
      The worker, or None when no XTTS voice could be served.
    """
    worker = startup.worker
    for name in names:
        settings = xtts_voice_settings(config, name)
        fallback = voices[settings.fallback or ""]
        if name in startup.voices and worker is not None:
            voices[name] = XttsVoice(XttsEngine(worker, name, config.xtts), thread, settings,
                                     fallback)
        else:
            voices[name] = fallback
    if startup.failed:
        npcs = sorted(npc_id for npc_id, npc in config.npcs.items() if npc.voice in startup.failed)
        reasons = sorted(set(startup.failed.values()))
        _LOGGER.warning(
            "XTTS cannot serve voice(s) %s, so NPC(s) %s speak with the Piper fallback "
            "voice(s) %s. Why: %s",
            ", ".join(sorted(startup.failed)), ", ".join(npcs),
            ", ".join(sorted({config.voices[n].fallback or "" for n in startup.failed})),
            " | ".join(reasons))
    if worker is not None and not startup.voices:
        worker.close()
        return None
    return worker


async def load_asr_engines(config: AsrConfig, npc_languages: dict[str, str] | None = None
                           ) -> AsrEngines | None:
    """Load and warm Whisper and the VAD model; None (with one warning) if unavailable.

    A missing `voice` extra or model is not fatal: typed lines still work, and
    `listen_start` is answered with `voice_input_unavailable`.

    Args:
      config: The `[asr]` section.
      npc_languages: Each NPC's BCP 47 tag; the multilingual Whisper is loaded only if
        an NPC needs it (`daemon.asr.routing`). None = every NPC speaks English.
    """
    if not config.enabled:
        return None
    try:
        model_path = resolve_whisper(config.model)
        vad = SileroVad()
    except (ImportError, FileNotFoundError) as exc:
        _LOGGER.warning("voice input disabled: %s (install it with pip install "
                        "'npc-voice-bridge[voice]', or set asr.enabled = false)", exc)
        return None
    thread: EngineThread = EngineThread("asr")
    transcriber = await thread.call(Transcriber, model_path, config.cpu_threads,
                                    config.compute_type, config.device)
    started = time.perf_counter()
    await thread.call(transcriber.warm_up, config.encoder_window_s)
    _LOGGER.info("warmed Whisper in %.0f ms", (time.perf_counter() - started) * 1000)
    engines = AsrEngines(transcriber, thread, vad,
                         routes=asr_routes(config.language, npc_languages or {},
                                           config.multilingual_beam_size))
    if any(route.multilingual for route in engines.routes.values()):
        engines.multilingual = await _load_multilingual(config, model_path, engines)
    if config.smart_turn:
        await _load_smart_turn(engines)
    return engines


async def _load_multilingual(config: AsrConfig, english_path: Path, engines: AsrEngines
                             ) -> Transcriber | None:
    """The multilingual Whisper on the ASR thread; None (one warning) if it is missing.

    The bundled base is joined into the model cache on first use (a few hundred ms, off
    the event loop). When it is the same model as `asr.model`, that one is reused.
    """
    npcs = sorted(npc_id for npc_id, route in engines.routes.items() if route.multilingual)
    try:
        path = await asyncio.to_thread(resolve_whisper, config.multilingual_model)
    except FileNotFoundError as exc:  # ModelNotFoundError included
        _LOGGER.warning("voice input disabled for NPC(s) %s, which need a multilingual "
                        "Whisper: %s", ", ".join(npcs), exc)
        return None
    if path == english_path:  # both from resolve_whisper: equal paths, same model
        return engines.transcriber
    transcriber = await engines.thread.call(Transcriber, path, config.cpu_threads,
                                            config.compute_type, config.device)
    started = time.perf_counter()
    await engines.thread.call(transcriber.warm_up)
    _LOGGER.info("warmed the multilingual Whisper (%s) for NPC(s) %s in %.0f ms",
                 config.multilingual_model, ", ".join(npcs), ms_since(started))
    return transcriber


async def _load_smart_turn(engines: AsrEngines) -> None:
    """Add the end-of-turn model to `engines`; without it, one warning (silence decides)."""
    turn_thread: EngineThread = EngineThread("smart-turn")
    try:
        smart_turn = await turn_thread.call(SmartTurn)
        await turn_thread.call(smart_turn.warm_up)
    except (ImportError, OSError, RuntimeError) as exc:  # no model, or ONNX Runtime refused it
        turn_thread.shutdown()
        _LOGGER.warning("end of turn decided by silence alone: %s", exc)
        return
    engines.smart_turn, engines.smart_turn_thread = smart_turn, turn_thread
