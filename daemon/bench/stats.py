"""The figures of `npc-voice bench`: per-turn records, percentiles, summaries, tables.

Every mode (the streaming daemon, the naive pipeline, RealtimeTTS, the load levels)
produces the same `TurnRecord`, built from a `TurnResult` (arrival time and size of
each block) and a `TurnTimings` (daemon-side milestones), so TTFA, time to playback,
underruns and the per-stage split are computed one way for all of them.
"""

from __future__ import annotations

import contextlib
import json
import platform
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec
import numpy as np
import psutil

from bridge_protocol.client import TurnResult
from bridge_protocol.messages import TurnTimings
from daemon.pipeline.timings import MILESTONES, TTFA_STAGES, stage_durations_ms

KEPT_MILESTONES = (*MILESTONES, "llm_done_ms")
"""Milestones of a turn (ms since the utterance) kept per turn, from `TurnTimings`."""

SEGMENTS = (*TTFA_STAGES, "ipc")
"""The stacked parts of client-side TTFA: the daemon's TTFA stages, then IPC both ways
(client TTFA - daemon first block; ~0 for the in-process modes)."""

DEFAULT_PREBUFFER_MS = 240


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/mean/max of `values`, rounded to 0.1 (None when empty)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "mean": round(float(array.mean()), 1),
        "max": round(float(array.max()), 1),
    }


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of process `pid` in MiB (Linux VmHWM; else current RSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def resident_mb(pid: int, settle_s: float = 2.0) -> float | None:
    """Resident memory of process `pid` now, in MiB; None if it is gone.

    Args:
      pid: The process (the daemon).
      settle_s: Wait this long first: the daemon trims its heap (`malloc_trim`) within
        a second after its last turn ends (`daemon.server.memory`), and issue 16's
        memory goal is read after that, as a game would see it between two lines.
    """
    time.sleep(settle_s)
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


class ProcessTreeMeter:
    """CPU and memory of a process and its children (the daemon and its llama-server).

    Args:
      pid: The root process; None = measure nothing (`stop` returns None values).
    """

    def __init__(self, pid: int | None) -> None:
        self._root = psutil.Process(pid) if pid is not None else None
        self._cpu_s = 0.0
        self._wall = 0.0

    def _tree(self) -> list[psutil.Process]:
        assert self._root is not None
        return [self._root, *self._root.children(recursive=True)]

    def _cpu(self) -> float:
        total = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def start(self) -> None:
        """Begin a measurement."""
        if self._root is not None:
            self._cpu_s, self._wall = self._cpu(), time.perf_counter()

    def stop(self) -> dict[str, float | None]:
        """CPU since `start` in % of one core, and the tree's resident memory now (MB)."""
        if self._root is None:
            return {"cpu_percent": None, "rss_mb": None}
        elapsed = max(time.perf_counter() - self._wall, 1e-6)
        rss = 0
        for process in self._tree():
            try:
                rss += process.memory_info().rss
            except psutil.Error:
                pass
        return {"cpu_percent": round((self._cpu() - self._cpu_s) / elapsed * 100.0, 1),
                "rss_mb": round(rss / 2**20, 1)}


def write_report(path: Path, report: dict) -> None:
    """Write a bench's figures as indented JSON at `path` (folders made) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {path}")


def machine_description() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {psutil.cpu_count(logical=True)} logical cores, "
            f"{round(psutil.virtual_memory().total / 2**30)} GiB, {platform.system()} "
            f"{platform.machine()}, Python {platform.python_version()}")


def machine_load() -> dict[str, float]:
    """How busy the machine is right now: load averages and CPU use over 1 s (%)."""
    load_1m, load_5m, load_15m = psutil.getloadavg()
    return {"loadavg_1m": round(load_1m, 2), "loadavg_5m": round(load_5m, 2),
            "loadavg_15m": round(load_15m, 2),
            "cpu_percent_1s": psutil.cpu_percent(interval=1.0)}


class LoadSampler:
    """How busy the machine is with work other than this benchmark, sampled while it runs.

    Every `interval_s` it reads the machine's busy CPU time and this process tree's
    own (the bench, the daemon it started, reaped children such as RealtimeTTS's piper
    runs); the difference is what other processes used. Figures are percent of the
    whole machine (100 = every core busy). Use as a context manager.

    Args:
      interval_s: Sampling period.
    """

    def __init__(self, interval_s: float = 2.0) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load-sampler",
                                        daemon=True)
        self.other_cpu_percent: list[float] = []
        self.loadavg_1m: list[float] = []

    @staticmethod
    def _busy_s() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def _own_s() -> float:
        me = psutil.Process()
        times = me.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return total

    def _run(self) -> None:
        cores = psutil.cpu_count(logical=True) or 1
        busy, own, at = self._busy_s(), self._own_s(), time.monotonic()
        while not self._stop.wait(self._interval_s):
            busy_now, own_now, now = self._busy_s(), self._own_s(), time.monotonic()
            others = max((busy_now - busy) - (own_now - own), 0.0)
            self.other_cpu_percent.append(round(100.0 * others / ((now - at) * cores), 1))
            self.loadavg_1m.append(round(psutil.getloadavg()[0], 2))
            busy, own, at = busy_now, own_now, now

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | int | None]:
        """Mean and max CPU of other processes (% of the machine), max 1-min load average."""
        others = self.other_cpu_percent
        mean = round(float(np.mean(others)), 1) if others else None
        return {
            "samples": len(others),
            "other_processes_cpu_percent_mean": mean,
            "other_processes_cpu_percent_max": max(others) if others else None,
            "loadavg_1m_max": max(self.loadavg_1m) if self.loadavg_1m else None,
        }


@dataclass
class TurnRecord:
    """The figures kept of one benchmark turn (times in ms since the utterance).

    Attributes:
      mode: "streaming", "typing", "naive", "realtimetts" or "load-K".
      npc_id: The NPC addressed.
      line: The player's line.
      outcome: "done", "cancelled", "error" (or "none": no terminal event).
      ttfa_ms: Utterance -> first audio ready to play at the client (client side for
        the daemon, so IPC both ways is included).
      last_block_ms: Utterance -> last audio at the client.
      audio_s: Seconds of reply audio.
      underruns: Blocks late for real-time playback started at the first block plus
        the NPC profile's pre-buffer (`prebuffer_ms`).
      prebuffer_ms: That pre-buffer.
      milestones: `KEPT_MILESTONES` of the turn (None where it never happened).
      rtf: TTS synthesis time / audio duration.
      reply_tokens: Tokens the LLM generated.
      prefill_tokens: Prompt tokens evaluated (the rest came from the KV cache).
      reply: The reply text spoken.
    """

    mode: str
    npc_id: str
    line: str
    outcome: str
    ttfa_ms: float | None
    last_block_ms: float | None
    audio_s: float
    underruns: int
    prebuffer_ms: int
    milestones: dict[str, float | None]
    rtf: float | None
    reply_tokens: int
    prefill_tokens: int
    reply: str

    @classmethod
    def build(cls, mode: str, npc_id: str, line: str, result: TurnResult,
              timings: TurnTimings | None, outcome: str, prebuffer_ms: int,
              reply: str) -> TurnRecord:
        """Summarise a turn from its client-side blocks and daemon-side timings."""
        ttfa = result.ttfa_ms
        last = result.last_block_ms
        return cls(
            mode=mode, npc_id=npc_id, line=line, outcome=outcome,
            ttfa_ms=round(ttfa, 2) if ttfa is not None else None,
            last_block_ms=round(last, 2) if last is not None else None,
            audio_s=round(result.audio_s, 3), underruns=result.underruns(prebuffer_ms),
            prebuffer_ms=prebuffer_ms,
            milestones={m: getattr(timings, m) if timings else None for m in KEPT_MILESTONES},
            rtf=timings.rtf if timings else None,
            reply_tokens=timings.reply_tokens if timings else 0,
            prefill_tokens=timings.prefill_tokens if timings else 0,
            reply=reply,
        )

    def segments_ms(self) -> dict[str, float]:
        """`SEGMENTS` of this turn's TTFA that happened (see `stage_durations_ms`)."""
        timings = msgspec.convert({m: v for m, v in self.milestones.items() if v is not None},
                                  TurnTimings)
        segments = {s: v for s, v in stage_durations_ms(timings).items() if s in TTFA_STAGES}
        first_block = self.milestones["first_block_ms"]
        if self.ttfa_ms is not None and first_block is not None:
            segments["ipc"] = round(max(self.ttfa_ms - first_block, 0.0), 2)
        return segments

    def to_json(self) -> dict:
        """Plain dict for the JSON report."""
        return asdict(self)


def summarise(records: list[TurnRecord]) -> dict:
    """Aggregate figures of one mode or load level (what the table prints, the JSON holds)."""
    ok = [r for r in records if r.outcome == "done" and r.ttfa_ms is not None]
    ttfa_ms = [r.ttfa_ms for r in ok if r.ttfa_ms is not None]
    segments = [r.segments_ms() for r in ok]
    return {
        "turns": len(records),
        "turns_done": len(ok),
        "ttfa_ms": percentiles(ttfa_ms),
        "time_to_playback_ms": percentiles([r.ttfa_ms + r.prebuffer_ms for r in ok
                                            if r.ttfa_ms is not None]),
        "milestones_ms": {m: percentiles([value for r in ok
                                          if (value := r.milestones[m]) is not None])
                          for m in KEPT_MILESTONES},
        "segments_mean_ms": {s: round(float(np.mean([seg.get(s, 0.0) for seg in segments])), 1)
                             if segments else None for s in SEGMENTS},
        "segments_p50_ms": {s: round(float(np.median([seg.get(s, 0.0) for seg in segments])), 1)
                            if segments else None for s in SEGMENTS},
        "last_block_ms": percentiles([r.last_block_ms for r in ok if r.last_block_ms]),
        "rtf": percentiles([r.rtf for r in ok if r.rtf is not None]),
        "audio_s": percentiles([r.audio_s for r in ok]),
        "reply_tokens": percentiles([float(r.reply_tokens) for r in ok]),
        "underruns_total": sum(r.underruns for r in ok),
        "turns_with_underruns": sum(1 for r in ok if r.underruns),
    }


def ttfa_ratios(modes: dict[str, dict], baseline: str = "streaming") -> dict[str, dict]:
    """TTFA p50 and p95 of every other mode divided by the baseline mode's."""
    base = modes.get(baseline, {}).get("summary")
    if not base or base["ttfa_ms"]["p50"] is None:
        return {}
    ratios = {}
    for name, mode in modes.items():
        summary = mode.get("summary")
        if name == baseline or not summary or summary["ttfa_ms"]["p50"] is None:
            continue
        ratios[f"{name}/{baseline}"] = {
            key: round(summary["ttfa_ms"][key] / base["ttfa_ms"][key], 2)
            if base["ttfa_ms"][key] else None
            for key in ("p50", "p95")
        }
    return ratios


def _row(name: str, stats: dict[str, float | None], unit: str = "ms") -> str:
    cells = " ".join(f"{stats[k]:>8.1f}" if stats[k] is not None else f"{'-':>8}"
                     for k in ("p50", "p95", "p99", "mean"))
    return f"  {name:32} {cells}  {unit}"


def format_summary(summary: dict, title: str) -> str:
    """The terminal table of one mode."""
    lines = [f"{title}: {summary['turns_done']}/{summary['turns']} turns done",
             f"  {'':32} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}",
             _row("TTFA", summary["ttfa_ms"]),
             _row("time to playback", summary["time_to_playback_ms"])]
    for milestone in KEPT_MILESTONES:
        lines.append(_row(f"  at {milestone.removesuffix('_ms')}",
                          summary["milestones_ms"][milestone]))
    for kind in ("p50", "mean"):
        split = summary[f"segments_{kind}_ms"]
        if split.get("ipc") is not None:
            lines.append(f"  {f'TTFA split ({kind}, ms)':32} " + ", ".join(
                f"{s} {split[s]:.1f}" for s in SEGMENTS if split[s] is not None))
    lines.append(_row("time to last audio", summary["last_block_ms"]))
    lines.append(_row("TTS RTF", summary["rtf"], unit=""))
    lines.append(_row("reply audio", summary["audio_s"], unit="s"))
    lines.append(f"  underruns: {summary['underruns_total']} blocks in "
                 f"{summary['turns_with_underruns']} turns (at each profile's pre-buffer)")
    return "\n".join(lines)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float | None:
    """Word error rate of a set of transcripts, as a fraction (0.0 = every word right).

    (substitutions + deletions + insertions) / reference words, summed over the set, by
    jiwer after Unicode NFC normalisation, lower-casing and removing punctuation (any
    Unicode category P*), so "Bom dia, senhor." and "bom dia senhor" match. May exceed 1.0
    when the hypotheses insert many words. Rounded to 4 places. None when jiwer (the
    `test` extra, installed by the daemon lock) is missing.

    Raises:
        ValueError: the two lists differ in length, or every reference is empty.
    """
    try:
        import jiwer  # noqa: PLC0415 - installed with the daemon lock; optional elsewhere
    except ImportError:
        return None
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    normalise = jiwer.Compose([jiwer.RemovePunctuation(), jiwer.ToLowerCase(),
                               jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
                               jiwer.ReduceToListOfListOfWords()])
    nfc = [unicodedata.normalize("NFC", text) for text in references]
    hyp = [unicodedata.normalize("NFC", text) for text in hypotheses]
    return round(float(jiwer.wer(nfc, hyp, reference_transform=normalise,
                                 hypothesis_transform=normalise)), 4)

