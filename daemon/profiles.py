"""Speech profiles (how replies are chunked and blocked) and ASR profiles.

Leaf module: the configuration, the phrase chunker, the TTS voices and the LLM tiers all
read these, and it imports nothing of the daemon.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Chars = Annotated[int, Meta(ge=1, le=2000)]


class Profile(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A speech profile: chunk sizes, block size and the client pre-buffer.

    Attributes:
      first_chunk_max_chars: Longest first chunk, in characters (FAST 30).
      first_chunk_min_chars: Shortest first chunk; a boundary before it is skipped
        (XTTS babbles on very short text; Piper does not need it).
      next_chunk_max_chars: Longest later chunk, in characters (FAST 90).
      next_chunk_min_chars: Shortest later chunk cut at a boundary.
      sentence_boundaries_after_chars: Once this much text has been chunked (about
        5 s of speech at ~15 chars/s), later chunks end only at sentence boundaries.
      block_ms: Duration of one PCM block sent to the client, in milliseconds.
      prebuffer_ms: Audio the client should hold before starting playback.
    """

    first_chunk_max_chars: Chars = 30
    first_chunk_min_chars: Annotated[int, Meta(ge=0, le=2000)] = 0
    next_chunk_max_chars: Chars = 90
    next_chunk_min_chars: Annotated[int, Meta(ge=0, le=2000)] = 20
    sentence_boundaries_after_chars: Annotated[int, Meta(ge=0)] = 75
    block_ms: Annotated[int, Meta(ge=10, le=1000)] = 50
    prebuffer_ms: Annotated[int, Meta(ge=0, le=10000)] = 240


BUILTIN_PROFILES: dict[str, Profile] = {
    # DESIGN.md "Profiles", from the original system's measurements.
    "fast": Profile(),
    "cinematic": Profile(
        first_chunk_max_chars=100,
        first_chunk_min_chars=20,
        next_chunk_max_chars=150,
        next_chunk_min_chars=40,
        block_ms=60,
        prebuffer_ms=500,
    ),
}



AsrProfileName = Literal["quality", "balanced", "responsive"]


class AsrProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Speech-recognition trade-off: beam size and the silences that end an utterance.

    Attributes:
      beam_size, best_of: Whisper decoding (the original system: beam 5, best_of 1).
      pause_ms: Silence after which the end-of-turn model judges whether the player
        has finished (and ASR and the LLM start speculatively, unless `speculate_ms`
        came first).
      speculate_ms: Silence that starts ASR and the LLM speculatively, when shorter
        than `pause_ms`; 0 = at the pause.
      end_silence_ms: Silence that ends the utterance when there is no end-of-turn
        model.
      unfinished_silence_ms: With the end-of-turn model: silence that ends an utterance
        it judged unfinished (the player may be thinking mid-sentence).
    """

    beam_size: int
    best_of: int
    pause_ms: int
    end_silence_ms: int
    unfinished_silence_ms: int
    speculate_ms: int = 0


ASR_PROFILES: dict[str, AsrProfile] = {
    # The original system waited for a 2.0 s batch window (beam 5): ~2.3 s before a reply
    # could start; its 1.0 s setting lost quality (70-80%). Here the endpoint is decided
    # by VAD silence instead of a fixed window, and a speculative start hides most of it.
    # With Smart Turn the utterance ends at the pause when the model judges it complete,
    # and only an unfinished one waits longer (pipecat waits 3 s by default; a game's
    # player expects an answer sooner, and says so by speaking again).
    "quality": AsrProfile(beam_size=5, best_of=1, pause_ms=300, end_silence_ms=700,
                          unfinished_silence_ms=1500),
    # The speculative start comes before the pause: its ASR and LLM work is on the
    # critical path, the judgement is not. 96 ms (3 VAD frames) took spoken TTFA p50
    # from ~670 to ~610 ms here, and dropped 4 starts in 31 utterances instead of 1
    # (BENCHMARKS.md, "Voice input").
    "balanced": AsrProfile(beam_size=1, best_of=1, pause_ms=200, end_silence_ms=450,
                           unfinished_silence_ms=1000, speculate_ms=96),
    "responsive": AsrProfile(beam_size=1, best_of=1, pause_ms=120, end_silence_ms=300,
                             unfinished_silence_ms=700, speculate_ms=64),
}
