"""Stand-in Piper voices for languages that have no voice offline.

No registry package ships a Portuguese or Spanish Piper voice (DESIGN.md, "Models"), and
tests never fetch. A stand-in is the bundled Joe's weights with a config that declares
another language and phonemises with that language's espeak-ng voice: Joe then reads
Portuguese phonemes in his American voice. It lets an NPC of that language pass the
voice/language check and speak through the real pipeline; its speech is not a good
Portuguese voice, and the tests use it only where what is said does not matter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from daemon.models import resolve_piper_voice


def standin_piper_voice(folder: Path, language_code: str, espeak_voice: str) -> Path:
    """Write `<folder>/<language_code>-standin.onnx` (+ .onnx.json); return the .onnx path.

    Args:
      folder: Where to write (created if missing).
      language_code: Piper's `language.code`, e.g. "pt_BR".
      espeak_voice: espeak-ng voice for the phonemes, e.g. "pt-br".
    """
    onnx, config_path = resolve_piper_voice("joe")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{language_code}-standin.onnx"
    shutil.copyfile(onnx, target)
    config = json.loads(config_path.read_text("utf-8"))
    config["espeak"] = {"voice": espeak_voice}
    config["language"] = {"code": language_code}
    Path(f"{target}.json").write_text(json.dumps(config), "utf-8")
    return target
