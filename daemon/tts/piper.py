"""Piper (VITS, ONNX Runtime) on the CPU: the default TTS engine.

Piper phonemizes a chunk with espeak-ng and synthesises it sentence by sentence (espeak's
clause split), as piper-tts 1.8's `PiperVoice.synthesize` does. Two ways to run a
sentence (config `[tts] piper_streaming`):

* streaming (the default): the voice split into a frontend graph and a decoder graph
  (daemon.tts.piper_split). The frontend (text encoder, durations, alignment, noise ->
  z_p) runs once per sentence; the decoder (flow + HiFi-GAN, most of the cost) runs on
  overlapping frame windows (daemon.tts.piper_windows), each emitted as soon as it is
  decoded. The windows concatenate to what a one-shot decode of the same z_p gives, so
  the first audio of a chunk comes after the frontend and one small window instead of
  after the whole sentence.
* whole: the original graph, one ONNX run per sentence, as piper does.

Both give the voice's phoneme durations (the frontend's `w_ceil`; in whole mode the
graph with piper's alignment output added), from which `synthesize` can report word
and viseme timing (daemon.tts.visemes) before the audio it covers.

Sessions are built by hand, not with `PiperVoice.load`, so that thread counts are set
explicitly (`load` uses ONNX Runtime's default: every core); `PiperVoice` is kept for
its phonemizer.

Licence: piper-tts is GPL-3.0-or-later (OHF-Voice/piper1-gpl).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from daemon.config import VoiceConfig
from daemon.tts.base import Int16Emit, TimingEmit, float_to_int16
from daemon.tts.piper_split import SplitVoice, ensure_split
from daemon.tts.piper_windows import Prior, WindowDecoder, WindowPlan, plan_for
from daemon.tts.visemes import ChunkAligner

_LOGGER = logging.getLogger(__name__)

_WORD_SEPARATOR = ", "
"""Joins words phonemized together: a comma ends an espeak clause, so each word is
phonemized as if alone, in one espeak call instead of one per word."""


def _session(model: str | bytes, onnx_threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = onnx_threads
    options.inter_op_num_threads = 1
    # No CPU memory arena: ONNX Runtime's arena keeps the largest buffers any chunk
    # ever needed (VITS tensors scale with the chunk's length) and never shrinks;
    # without it, a turn's buffers go back to the allocator when it ends.
    options.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(model, sess_options=options,
                                        providers=["CPUExecutionProvider"])


class PiperEngine:
    """One loaded Piper voice model. Not thread-safe: use from its owner thread only.

    Args:
      model_path: The voice's .onnx file.
      config_path: Its .onnx.json file.
      onnx_threads: ONNX Runtime intra-op threads of each session (inter-op is 1).
      streaming: Decode each sentence in frame windows (see the module docstring);
        False = one ONNX run per sentence (also what a voice whose graph cannot be split
        falls back to, with a warning).
      split_cache: Folder of cached split graphs (default:
        `daemon.tts.piper_split.split_cache_root()`).

    Attributes:
      name: For logs, e.g. "piper:en_US-joe-medium".
      sample_rate_hz: The voice's rate (22050 Hz for the medium voices).
      gives_timing: Word and viseme timing is available (the graph has the duration
        tensor piper's alignment patch looks for; every Piper export so far has).
      streaming: Whether sentences are decoded in windows.
      plan: The window plan (margins and sizes), when streaming.

    Raises:
      FileNotFoundError, onnxruntime errors: the model cannot be loaded.
    """

    def __init__(self, model_path: Path, config_path: Path, onnx_threads: int = 1,
                 streaming: bool = True, split_cache: Path | None = None) -> None:
        started = time.perf_counter()
        with open(config_path, encoding="utf-8") as config_file:
            config = PiperConfig.from_dict(json.load(config_file))
        self._config = config
        self.sample_rate_hz: int = config.sample_rate
        self.name = f"piper:{model_path.stem}"
        self.streaming = streaming
        self.plan: WindowPlan | None = None
        self._split: SplitVoice | None = None
        self._frontend: onnxruntime.InferenceSession | None = None
        self._decoder: WindowDecoder | None = None
        split = None
        if streaming:
            try:
                split = ensure_split(model_path, split_cache)
            except (ValueError, OSError) as exc:  # not a VITS graph we can cut, or no cache
                _LOGGER.warning("%s: speaking whole sentences, no streaming inside a chunk "
                                "(%s)", model_path.name, exc)
                self.streaming = False
        if split is not None:
            self._split = split
            self._frontend = _session(str(split.frontend_path), onnx_threads)
            self._decoder = WindowDecoder(split, _session(str(split.decoder_path), onnx_threads))
            self.plan = plan_for(split)
            self.gives_timing = True
            session = self._frontend
        else:
            session, self.gives_timing = self._whole_session(model_path, onnx_threads)
        # PiperVoice phonemizes and, in whole mode, runs `session`; in streaming mode its
        # session is never run (the frontend and decoder are run here).
        self._voice = PiperVoice(session=session, config=config)
        _LOGGER.info(
            "loaded %s (%d Hz, %d ONNX threads, %s) in %.0f ms",
            self.name, self.sample_rate_hz, onnx_threads,
            f"streaming, margins {self.plan.left_frames}/{self.plan.right_frames} frames"
            if self.plan else "whole sentences",
            (time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _whole_session(model_path: Path, onnx_threads: int
                       ) -> tuple[onnxruntime.InferenceSession, bool]:
        """The original graph with piper's alignment output added, if it has one."""
        # onnx (18 MB of RSS) loads only here and for a split (daemon.tts.piper_split).
        import onnx  # noqa: PLC0415
        from piper.patch_voice_with_alignment import add_alignment_output  # noqa: PLC0415

        model = onnx.load(str(model_path))
        try:
            add_alignment_output(model)
        except ValueError as exc:  # no single Ceil tensor: audio without timing
            _LOGGER.warning("%s: no word timing (%s)", model_path.name, exc)
            return _session(str(model_path), onnx_threads), False
        return _session(model.SerializeToString(), onnx_threads), True

    def synthesize(
        self, text: str, voice: VoiceConfig, emit: Int16Emit, stop: threading.Event,
        turn_start: bool = False, on_timing: TimingEmit | None = None,
    ) -> None:
        """Speak `text` sentence by sentence; see `TtsEngine.synthesize`.

        Streaming: each sentence's frontend runs first, then its decoder windows, each
        emitted when decoded; `stop` is checked between windows. `turn_start` picks a
        smaller first window (first audio sooner). Whole: one piece per sentence.

        Peak normalisation is off (`normalize_audio=False`): Piper would otherwise
        scale every sentence to full scale and loudness would jump between chunks.

        Args:
          text: One chunk of reply text.
          voice: The voice's settings (speaker, speed, noise, volume).
          emit: Receives 1-D int16 arrays at `sample_rate_hz`.
          stop: Checked between sentences and windows.
          turn_start: `text` is the first chunk of a turn.
          on_timing: Receives each sentence's `SpeechTiming` (native samples from the
            chunk's start) before its first audio; None = no timing work at all.
        """
        sentences = self.phonemize(text)
        aligner = None
        if on_timing is not None and self.gives_timing and sentences:
            aligner = ChunkAligner(text, sentences, self.phonemize_words,
                                   self._config.phoneme_id_map)
        offset = 0
        for index, phonemes in enumerate(sentences):
            if stop.is_set():
                return
            ids = self._voice.phonemes_to_ids(phonemes)
            if self.streaming:
                offset += self._stream_sentence(ids, voice, emit, stop, turn_start and index == 0,
                                                aligner, index, offset, on_timing)
            else:
                offset += self._whole_sentence(ids, voice, emit, aligner, index, offset,
                                               on_timing)

    def _whole_sentence(self, ids: list[int], voice: VoiceConfig, emit: Int16Emit,
                        aligner: ChunkAligner | None, index: int, offset: int,
                        on_timing: TimingEmit | None) -> int:
        syn_config = SynthesisConfig(
            speaker_id=voice.speaker_id, length_scale=voice.length_scale,
            noise_scale=voice.noise_scale, noise_w_scale=voice.noise_w_scale,
            normalize_audio=False)
        result = self._voice.phoneme_ids_to_audio(ids, syn_config,
                                                  include_alignments=self.gives_timing)
        audio, id_samples = result if isinstance(result, tuple) else (result, None)
        audio = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if aligner is not None and on_timing is not None and id_samples is not None:
            self._report(aligner, index, [int(n) for n in id_samples], offset, on_timing)
        emit(float_to_int16(audio, voice.volume))
        return int(audio.size)

    def _stream_sentence(self, ids: list[int], voice: VoiceConfig, emit: Int16Emit,
                         stop: threading.Event, turn_start: bool,
                         aligner: ChunkAligner | None, index: int, offset: int,
                         on_timing: TimingEmit | None) -> int:
        assert self._split is not None
        prior, frames_per_id = self.frontend(ids, voice)
        hop = self._split.hop_samples
        if aligner is not None and on_timing is not None:
            self._report(aligner, index, [int(f) * hop for f in frames_per_id], offset,
                         on_timing)
        for audio in self.decode_windows(prior, turn_start):
            if stop.is_set():
                break
            emit(float_to_int16(np.clip(audio, -1.0, 1.0), voice.volume))
        return prior.frames * hop

    def decode_windows(self, prior: Prior, turn_start: bool) -> Iterator[np.ndarray]:
        """Decode a sentence window by window (streaming mode only).

        Args:
          prior: The sentence's frontend output (`frontend`).
          turn_start: Use the smaller first window of a turn's first chunk.

        Yields:
          float32 audio of each window's kept frames, in order; concatenated, a one-shot
          decode of `prior` (`decode_all`).
        """
        assert self._decoder is not None and self.plan is not None
        plan = self.plan
        for start, end in plan.windows(prior.frames, turn_start):
            yield self._decoder.decode(prior, start, end, plan.left_frames, plan.right_frames)

    def decode_all(self, prior: Prior) -> np.ndarray:
        """One-shot decode of a sentence (streaming mode only): the windows' reference."""
        assert self._decoder is not None
        return self._decoder.decode_all(prior)

    def phonemize(self, text: str) -> list[list[str]]:
        """Piper's phonemes (espeak-ng IPA codepoints) of each sentence of `text`.

        Empty sentences are dropped: these are the sentences `synthesize` speaks.
        """
        return [s for s in self._voice.phonemize(text) if s]

    def phoneme_ids(self, text: str) -> list[list[int]]:
        """Piper's phoneme ids of each sentence of `text` (as `phonemize` splits it)."""
        return [self._voice.phonemes_to_ids(s) for s in self.phonemize(text)]

    @property
    def phoneme_id_map(self) -> dict[str, list[int]]:
        """The voice's phoneme -> ids map (its .onnx.json)."""
        return {k: list(v) for k, v in self._config.phoneme_id_map.items()}

    def frontend(self, ids: Sequence[int], voice: VoiceConfig) -> tuple[Prior, np.ndarray]:
        """Run the frontend graph on one sentence's phoneme ids (streaming mode only).

        Returns:
          The prior the decoder windows read, and the frames of each phoneme id
          (int64 [len(ids)], summing to the prior's frames).
        """
        assert self._split is not None and self._frontend is not None
        config = self._config
        feed: dict[str, np.ndarray] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([
                config.noise_scale if voice.noise_scale is None else voice.noise_scale,
                config.length_scale if voice.length_scale is None else voice.length_scale,
                config.noise_w_scale if voice.noise_w_scale is None else voice.noise_w_scale,
            ], dtype=np.float32),
        }
        if "sid" in self._split.frontend_inputs:  # a multi-speaker voice
            speaker = config.default_speaker_id if voice.speaker_id is None else voice.speaker_id
            feed["sid"] = np.array([speaker], dtype=np.int64)
        outputs = self._frontend.run(None, {k: v for k, v in feed.items()
                                            if k in self._split.frontend_inputs})
        speaker_embedding = outputs[2] if self._split.speaker is not None else None
        frames_per_id = np.asarray(outputs[-1]).reshape(-1).astype(np.int64)
        return Prior(outputs[0], outputs[1], speaker_embedding), frames_per_id

    def _report(self, aligner: ChunkAligner, index: int, id_samples: list[int], offset: int,
                on_timing: TimingEmit) -> None:
        try:
            on_timing(aligner.sentence_timing(index, id_samples, offset))
        except ValueError as exc:  # durations that do not fit the ids: audio goes on
            _LOGGER.warning("%s: no timing for a sentence (%s)", self.name, exc)

    def phonemize_words(self, words: list[str]) -> list[list[str]]:
        """Each word phonemized on its own (for word timing), one espeak call if possible.

        Args:
          words: Words without edge punctuation.

        Returns:
          One phoneme list per word (sentence splits flattened; may be empty).
        """
        if not words:
            return []
        joined = [p for sentence in self._voice.phonemize(_WORD_SEPARATOR.join(words))
                  for p in sentence]
        groups: list[list[str]] = [[]]
        for previous, phoneme in zip([""] + joined, joined, strict=False):
            if phoneme == " " and previous == ",":
                groups[-1].pop()  # the separator's comma
                groups.append([])
            else:
                groups[-1].append(phoneme)
        if len(groups) == len(words):
            return groups
        # A word that espeak split or merged across the separator: one call per word.
        return [[p for sentence in self._voice.phonemize(word) for p in sentence]
                for word in words]

    def warm_up(self) -> None:
        """Run one synthesis so espeak-ng and ONNX Runtime initialise before turn one."""
        pieces: list[np.ndarray] = []
        self.synthesize("Hello there, traveller.", VoiceConfig(), pieces.append, threading.Event(),
                        turn_start=True, on_timing=lambda _timing: None)
