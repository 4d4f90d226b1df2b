"""PyAV imported on first use, not with faster-whisper: the daemon never decodes files.

faster-whisper imports PyAV (`av`, FFmpeg's libraries) at import time for `decode_audio`,
which reads audio files; the daemon hands Whisper float32 arrays and never calls it.
Importing PyAV cost 16 MiB of resident memory (one-off reading: importing faster-whisper
after numpy, ONNX Runtime and llama-cpp-python added 30.6 MiB with PyAV, 14.8 without).

`defer_pyav` puts a stand-in module under the name `av` until something reads an
attribute of it; that first read imports the real PyAV in its place and answers from
it, so `faster_whisper.decode_audio` (or any other user) still works, one import later.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

PYAV = "av"


class _DeferredModule(types.ModuleType):
    """Stands for a module not imported yet; imports it at its first attribute read.

    `import av` on a name already in `sys.modules` reads only attributes every module
    has (`__spec__`), so it does not trigger the import; `av.open` does.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._import_lock = threading.Lock()

    def __getattr__(self, attribute: str) -> object:
        with self._import_lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, attribute)


def defer_pyav() -> bool:
    """Make the next `import av` cheap until PyAV is used. Call before importing faster_whisper.

    Returns:
      True if the stand-in was installed; False when PyAV is imported already (or its
      stand-in is), or not installed (then `import av` fails as it would have).
    """
    if PYAV in sys.modules or importlib.util.find_spec(PYAV) is None:
        return False
    sys.modules[PYAV] = _DeferredModule(PYAV)
    return True
