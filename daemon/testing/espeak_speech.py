"""Speech in many languages with no model download: espeak-ng's formant synthesiser.

piper-tts's wheel links all of espeak-ng into `piper/espeakbridge.so` (GPL-3.0-or-later,
as piper) with its voice data (`piper/espeak-ng-data`: pt-BR, es, fr, de...), and exports
espeak-ng's C API. Piper itself only phonemises with it; here it speaks, through ctypes,
so tests and benchmarks have Portuguese and Spanish utterances offline. The voice is
robotic (formant synthesis, not neural), a harder input for Whisper than a person.

Synthesis runs in a child process: espeak-ng keeps global state, and the daemon's own
Piper phonemiser shares it when both live in one process.

    python -m daemon.testing.espeak_speech --voice pt-BR OUT_DIR "Bom dia." "Até logo."
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: samples go to the callback
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
ESPEAK_RATE = 1  # espeak_PARAMETER: words per minute
DEFAULT_RATE_WPM = 150


def _piper_dir() -> Path:
    spec = importlib.util.find_spec("piper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("espeak-ng speech needs piper-tts (it ships espeak-ng)")
    return Path(next(iter(spec.submodule_search_locations)))


def _synthesize_here(voice: str, lines: list[str], out_dir: Path, rate_wpm: int) -> None:
    """Speak each line into out_dir/<index>.wav (s16le mono, espeak-ng's 22050 Hz)."""
    piper = _piper_dir()
    lib = ctypes.CDLL(str(piper / "espeakbridge.so"))
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                     ctypes.c_int, ctypes.c_void_p)
    rate_hz = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                    str(piper / "espeak-ng-data").encode(), 0)
    if rate_hz <= 0:
        raise RuntimeError(f"espeak-ng failed to initialise ({rate_hz})")
    pieces: list[np.ndarray] = []

    def on_samples(wav: ctypes._Pointer, count: int, _events: int) -> int:
        if count > 0:
            pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    callback = callback_type(on_samples)  # kept referenced while espeak-ng may call it
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"espeak-ng has no voice {voice!r}")
    lib.espeak_SetParameter(ESPEAK_RATE, rate_wpm, 0)
    for index, line in enumerate(lines):
        pieces.clear()
        text = line.encode("utf-8")
        lib.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None,
                         None)
        lib.espeak_Synchronize()
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        with wave.open(str(out_dir / f"{index}.wav"), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate_hz)
            out.writeframes(audio.astype("<i2").tobytes())


def speak(lines: list[str], voice: str, rate_wpm: int = DEFAULT_RATE_WPM
          ) -> tuple[list[np.ndarray], int]:
    """Speak `lines` with espeak-ng voice `voice` ("pt-BR", "es"), in a child process.

    Args:
      lines: Text to speak, one utterance each.
      voice: espeak-ng voice name (its language tags: "pt-BR", "pt", "es", "fr"...).
      rate_wpm: Speaking rate in words per minute (espeak-ng's default is 175).

    Returns:
      (utterances, rate_hz): 1-D int16 arrays, one per line, at `rate_hz` (22050).

    Raises:
      RuntimeError: piper-tts is missing, or espeak-ng failed (its message).
    """
    with tempfile.TemporaryDirectory(prefix="espeak-") as folder:
        done = subprocess.run(
            [sys.executable, "-m", "daemon.testing.espeak_speech", "--voice", voice,
             "--rate", str(rate_wpm), folder, *lines],
            capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"espeak-ng speech failed: {done.stderr.strip()[-500:]}")
        utterances, rate_hz = [], 0
        for index in range(len(lines)):
            with wave.open(str(Path(folder) / f"{index}.wav"), "rb") as wav:
                rate_hz = wav.getframerate()
                utterances.append(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"))
        return utterances, rate_hz


def main(argv: list[str] | None = None) -> None:
    """`python -m daemon.testing.espeak_speech --voice V OUT_DIR LINE...`."""
    parser = argparse.ArgumentParser(prog="python -m daemon.testing.espeak_speech",
                                     description="Speak lines with espeak-ng into WAV files.")
    parser.add_argument("--voice", required=True)
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE_WPM)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("lines", nargs="+")
    args = parser.parse_args(argv)
    _synthesize_here(args.voice, args.lines, args.out_dir, args.rate)


if __name__ == "__main__":
    main()
