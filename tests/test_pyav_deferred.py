"""PyAV is imported on first use, not with faster-whisper (`daemon.asr.pyav`).

Real faster-whisper, PyAV and Whisper tiny.en, each case in a fresh interpreter (the
point is what gets imported).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("faster_whisper")


def _run(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()


def test_whisper_loads_and_transcribes_without_importing_pyav() -> None:
    loaded, after = _run("""
        import sys
        import numpy as np
        from daemon.asr.transcriber import DecodeOptions, Transcriber, resolve_whisper
        transcriber = Transcriber(resolve_whisper("tiny.en"))
        transcriber.transcribe(np.zeros(16000, np.float32), DecodeOptions())
        print("av.audio" in sys.modules, type(sys.modules["av"]).__name__)
    """)
    assert (loaded, after) == ("False", "_DeferredModule")


def test_without_it_importing_faster_whisper_imports_pyav() -> None:
    """The control: faster-whisper's own import loads PyAV."""
    assert _run("import sys, faster_whisper; print('av.audio' in sys.modules)") == ["True"]


def test_decode_audio_still_works_and_imports_the_real_pyav(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    samples = 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)
    soundfile.write(wav, tone.astype(np.float32), 16000)
    size, real = _run(f"""
        import sys
        from daemon.asr.pyav import defer_pyav
        assert defer_pyav()
        import faster_whisper
        audio = faster_whisper.decode_audio({str(wav)!r})
        print(audio.size, "av.audio" in sys.modules)
    """)
    assert abs(int(size) - samples) <= 160 and real == "True"
