"""The client's playback of a turn, as the daemon and the benchmarks model it.

Two rules for when playback starts, both then running in real time and stalling on a
block that arrives after its play time:

* the Godot addon's (`voice_output.gd`): once `prebuffer_ms` of audio is queued, or the
  turn's last block has arrived;
* DESIGN.md "underrun": at the first block's arrival plus the pre-buffer.

A line the daemon held back and then released arrives with seconds of audio at once:
the addon starts it at once, the DESIGN rule a pre-buffer later. The daemon releases
a scene's next line the pause after the addon's end and no sooner than a pre-buffer
before the DESIGN end, so that no client following either rule ever hears two lines at
once; the scenes benchmark reports the gap a client following the addon's rule hears
(`end_s`).
"""

from __future__ import annotations


class PlaybackClock:
    """When the client will have played every block it was sent so far.

    Feed it each block as it reaches the client. Times are in the caller's clock,
    seconds (the daemon and the benchmarks use `time.perf_counter()`).

    Args:
      prebuffer_s: The client's pre-buffer, in seconds of audio (or of time, DESIGN rule).
    """

    def __init__(self, prebuffer_s: float) -> None:
        self._prebuffer_s = prebuffer_s
        self._queued_s = 0.0  # audio waiting while the pre-buffer fills (addon rule)
        self._last_at: float | None = None
        self._start_s: float | None = None
        self._end_s: float | None = None  # addon rule, once playback started
        self._design_end_s: float | None = None

    def block(self, at_s: float, sample_count: int, sample_rate_hz: int) -> None:
        """A block of `sample_count` samples at `sample_rate_hz` reached the client at `at_s`."""
        duration_s = sample_count / sample_rate_hz if sample_rate_hz else 0.0
        if self._design_end_s is None:
            self._design_end_s = at_s + self._prebuffer_s
        self._design_end_s = max(self._design_end_s, at_s) + duration_s
        self._last_at = at_s
        if self._end_s is not None:
            self._end_s = max(self._end_s, at_s) + duration_s
            return
        self._queued_s += duration_s
        # The addon compares whole milliseconds (blocks are whole milliseconds long).
        if round(self._queued_s * 1000.0) >= round(self._prebuffer_s * 1000.0):
            self._start_s = at_s
            self._end_s = at_s + self._queued_s

    @property
    def start_s(self) -> float | None:
        """When playback starts, by the addon's rule (None before any block)."""
        return self._start_s if self._start_s is not None else self._last_at

    @property
    def end_s(self) -> float | None:
        """When the last sample so far finishes playing, by the addon's rule.

        A line shorter than the pre-buffer starts at its last block. None before any
        block.
        """
        if self._end_s is not None:
            return self._end_s
        if self._last_at is None:
            return None
        return self._last_at + self._queued_s

    @property
    def design_end_s(self) -> float | None:
        """When the last sample so far finishes playing, by the DESIGN rule."""
        return self._design_end_s

    @property
    def latest_end_s(self) -> float | None:
        """The later of the two rules' ends (None before any block)."""
        if self._design_end_s is None:
            return None
        end = self.end_s
        return self._design_end_s if end is None else max(self._design_end_s, end)
