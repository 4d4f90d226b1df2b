"""A second llama.cpp thread for the part of a turn the player waits on, while a core is free.

One llama.cpp thread is the safe default on a small CPU: the other core runs the TTS,
the ASR and the game. But from the moment a line arrives until the first chunk reaches
the TTS, nothing else of the daemon runs, and the prompt and the first reply tokens are
exactly what the player waits for. Measured on the 2-core dev box (llama.cpp's own
thread pool, `GGML_OPENMP=OFF`; BENCHMARKS.md "Threads"): prompt + first token 134 ->
88 ms and 19.5 -> 13.0 ms per decoded token with two threads, quiet; but with one core
kept busy by another process, 203 ms and 43 ms per token, twice as slow as one thread.
So the extra threads ("a burst") are used only while they find a free core:

- before each llama.cpp step, no other thread of this process is running (a TTS
  synthesis, Whisper, another llama.cpp context: once the first chunk is with the TTS,
  the burst ends by itself), read from the threads' states in /proc;
- the other processes left a core free since the previous look (/proc/stat, less this
  process's own CPU time): the game's steady load shows there;
- the steps stay fast: a step slower than `SLOW_STEP_FACTOR` times the fastest recent
  one means the second thread waited for a busy core, and ends the reply's burst (the
  next reply looks again: a pause of several seconds was tried, and the daemon's own
  bursts of Python work, as a voice's grapheme-to-phoneme step, paused it needlessly);
- at most `burst_tokens` reply tokens (the first chunk of the FAST profile is 30
  characters, ~7-10 tokens).

Bursts need llama.cpp's own thread pool: OpenMP's spin barriers stalled for seconds when
a core was taken (first token 3981 vs 324 ms, BENCHMARKS.md), so with an OpenMP build
`LlamaContext` turns them off with a warning. Linux only (/proc); elsewhere no bursts.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

SLOW_STEP_FACTOR = 1.5
"""A burst decoding step this many times slower than the fastest of the recent ones was
contended (quiet: steps of one turn differ by < 1.2x; contended: 2.2x, measured)."""

SPARE_MARGIN_CORES = 0.25
"""Other processes may use this much of the burst's cores (background noise, the
game's idle loop) and still count as leaving them free."""

_THREAD_LOOKS = 3
"""Looks at the other threads' states before deciding that one of them is busy."""

_MIN_SAMPLE_S = 0.2
"""/proc/stat readings closer than this keep the previous estimate (too few ticks)."""


@dataclass(frozen=True)
class Threads:
    """llama.cpp thread counts for the next step: generation and prompt batches."""

    decode: int
    batch: int


class OtherProcessesCpu:
    """Cores used by other processes, averaged since the previous reading (Linux /proc).

    Reads the machine's busy time from /proc/stat and this process's own CPU time from
    /proc/self/stat; their difference over the interval is the other processes' use.
    """

    def __init__(self) -> None:
        self._cpus = max(1, _stat_cpu_count())
        self._last = _read_ticks()
        self._last_at = time.monotonic()
        self._estimate: float | None = None

    def cores_busy(self) -> float | None:
        """Cores the other processes kept busy, on average, since the previous reading.

        Returns:
          0.0 .. CPU count; None where /proc cannot be read. Readings less than 0.2 s
          apart return the previous figure.
        """
        now_at = time.monotonic()
        if self._last is None or now_at - self._last_at < _MIN_SAMPLE_S:
            return self._estimate
        now = _read_ticks()
        if now is None:
            return None
        busy, total, own = (new - old for new, old in zip(now, self._last, strict=True))
        self._last, self._last_at = now, now_at
        if total > 0:
            ticks_per_cpu = total / self._cpus
            self._estimate = min(float(self._cpus), max(0.0, (busy - own) / ticks_per_cpu))
        return self._estimate


def other_threads_running(own_thread_id: int) -> int:
    """Threads of this process other than `own_thread_id` that are running now ("R").

    A snapshot of /proc/self/task/*/stat: an engine thread waiting for work sleeps
    ("S"); one synthesizing or transcribing runs. 0 where /proc cannot be read.
    """
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    running = 0
    for task in tasks:
        if task == str(own_thread_id):
            continue
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                line = stat.read()
        except OSError:  # the thread ended meanwhile
            continue
        state_at = line.rfind(b")") + 2  # the name, in parentheses, may hold spaces
        if line[state_at:state_at + 1] == b"R":
            running += 1
    return running


class ThreadBurst:
    """Decides, step by step, whether a reply runs with the burst's threads or the floor's.

    Use from the owner thread of one llama.cpp context only. `start_reply()` gives the
    counts for the prompt step; `after_step()` after each decoded token gives the counts
    for the next one.

    Args:
      floor: The configured counts (`[llm] n_threads`, `n_threads_batch`).
      burst_threads: Threads for both while bursting (> the floor's to matter).
      burst_tokens: Most reply tokens decoded with the burst's threads.
      others_busy: Cores other processes use (default: `OtherProcessesCpu`).
      threads_running: Other threads of this process running now, given this thread's
        native id (default: `other_threads_running`).
    """

    def __init__(self, floor: Threads, burst_threads: int, burst_tokens: int,
                 others_busy: Callable[[], float | None] | None = None,
                 threads_running: Callable[[int], int] = other_threads_running) -> None:
        self.floor = floor
        """The configured counts, used outside bursts."""
        self.threads = Threads(burst_threads, max(burst_threads, floor.batch))
        """The counts while bursting."""
        self._burst_tokens = burst_tokens
        self._others_busy = others_busy or OtherProcessesCpu().cores_busy
        self._threads_running = threads_running
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        self._recent_steps_s: deque[float] = deque(maxlen=32)
        self._bursting = False
        self.burst_steps = 0
        """Steps of the current reply run with the burst's threads (for logs)."""
        self.reason = ""
        """Why the current reply's burst ended or never began (for logs)."""

    @property
    def bursting(self) -> bool:
        """The current reply's next step runs with the burst's threads."""
        return self._bursting

    def start_reply(self) -> Threads:
        """Counts for the prompt step of a new reply."""
        self.burst_steps = 0
        self._bursting = self._core_free()
        if self._bursting:
            self.burst_steps = 1
        return self.threads if self._bursting else self.floor

    def after_step(self, tokens_sampled: int, step_s: float | None) -> Threads:
        """Counts for the next step (decoding the reply's `tokens_sampled`-th token).

        Args:
          tokens_sampled: Reply tokens sampled so far (1 after the prompt step).
          step_s: Wall time of the step just done if it decoded one token (None for
            the prompt step, which is not comparable).
        """
        if not self._bursting:
            return self.floor
        if tokens_sampled > self._burst_tokens or not self._no_other_thread_running():
            # Done, or another engine of the daemon runs (the first chunk's synthesis
            # has started): the step just done may have been slowed by it, which says
            # nothing about the rest of the machine.
            self._bursting = False
            self.reason = ("token cap" if tokens_sampled > self._burst_tokens
                           else "another engine running")
        elif step_s is not None:
            fastest = min(self._recent_steps_s, default=step_s)
            self._recent_steps_s.append(step_s)
            if step_s > SLOW_STEP_FACTOR * fastest:  # another process took the core
                self._bursting = False
                self.reason = f"slow step ({step_s * 1000:.1f} vs {fastest * 1000:.1f} ms)"
        if self._bursting:
            self.burst_steps += 1
        return self.threads if self._bursting else self.floor

    def end_reply(self) -> Threads | None:
        """The reply ended: the floor's counts if its burst was still on, else None."""
        if not self._bursting:
            return None
        self._bursting = False
        self.reason = "the reply ended"
        return self.floor

    def _core_free(self) -> bool:
        if self.threads.decode <= self.floor.decode and self.threads.batch <= self.floor.batch:
            return False
        if not self._no_other_thread_running():
            self.reason = "another engine running"
            return False
        others = self._others_busy()
        if others is None:
            self.reason = "no /proc reading"
            return False
        self.reason = f"other processes used {others:.2f} cores"
        return others <= self._cpus - self.threads.decode + SPARE_MARGIN_CORES

    def _no_other_thread_running(self) -> bool:
        # A few looks a millisecond apart: the event loop that handed this reply over
        # may still be finishing its iteration; a synthesis runs for tens of ms.
        own = threading.get_native_id()
        for attempt in range(_THREAD_LOOKS):
            if self._threads_running(own) == 0:
                return True
            if attempt + 1 < _THREAD_LOOKS:
                time.sleep(0.001)
        return False


def _stat_cpu_count() -> int:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return sum(1 for line in stat if line.startswith("cpu") and line[3:4].isdigit())
    except OSError:
        return os.cpu_count() or 1


def _read_ticks() -> tuple[int, int, int] | None:
    """(machine busy ticks, machine total ticks, this process's ticks), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        with open("/proc/self/stat", "rb") as own_stat:
            line = own_stat.read()
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user/nice)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    own_fields = line[line.rfind(b")") + 2:].split()
    own = int(own_fields[11]) + int(own_fields[12])  # utime, stime (fields 14 and 15)
    return total - idle, total, own
