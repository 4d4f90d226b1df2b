"""`npc-voice voices prepare`: conditioning latents of every cloned voice, ahead of play.

Computing latents takes seconds per voice (minutes for many voices on a CPU); doing it
once at build time means the daemon's start-up only reads them from the cache.
"""

from __future__ import annotations

import sys
import time

from daemon.config import Config
from daemon.tts.xtts.engine import start_xtts


def prepare_voices(config: Config) -> int:
    """Prepare every XTTS voice used by `config`'s NPCs, printing one line per voice.

    Returns:
      0 when every voice is ready, 1 when XTTS cannot run or a voice failed, 2 when
      the config uses no XTTS voice.
    """
    used = sorted({npc.voice for npc in config.npcs.values()
                   if config.voices[npc.voice].engine == "xtts"})
    if not used:
        print('no NPC in this config uses an XTTS voice (voices.<name>.engine = "xtts")',
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    startup = start_xtts(config, used, warm_up=False)
    try:
        for name in used:
            npcs = ", ".join(sorted(n for n, npc in config.npcs.items() if npc.voice == name))
            if name in startup.voices:
                report = startup.voices[name]
                print(f"{name}: {report.cache} in {report.ms:.0f} ms -> {report.cache_path} "
                      f"(NPCs: {npcs})")
            else:
                print(f"{name}: FAILED: {startup.failed[name]} (NPCs: {npcs})")
    finally:
        if startup.worker is not None:
            startup.worker.close()
    print(f"{len(startup.voices)} of {len(used)} voice(s) ready in "
          f"{time.perf_counter() - started:.1f} s")
    return 1 if startup.failed else 0
