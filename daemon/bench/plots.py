"""PNG plots of a `npc-voice bench` report (matplotlib, the `bench` extra).

Figures are built as `matplotlib.figure.Figure` objects and written with the Agg
canvas directly: no pyplot, no global backend switch, nothing changed at import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from daemon.bench.stats import SEGMENTS

_LOGGER = logging.getLogger(__name__)

_SEGMENT_LABELS = {
    "queue": "queue (wait for an LLM context)",
    "llm_first_token": "prefill + first token",
    "first_chunk": "LLM up to the first chunk",
    "tts_first_audio": "TTS of the first chunk",
    "first_block": "first block out",
    "ipc": "IPC both ways",
}
_MODE_COLOURS = {"streaming": "#2a7ab9", "typing": "#7a4fb0", "naive": "#d9822b",
                 "realtimetts": "#5c9e3d"}
_SIZE_IN = (7.0, 4.2)
_DPI = 100


def _new_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _ttfa_by_mode(report: dict, path: Path) -> None:
    modes = {name: mode for name, mode in report["modes"].items() if mode.get("turns")}
    figure = _new_figure()
    axes = figure.add_subplot()
    names = list(modes)
    values = [[t["ttfa_ms"] for t in modes[n]["turns"] if t["ttfa_ms"] is not None]
              for n in names]
    axes.boxplot(values, tick_labels=names, whis=(5, 95), showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    for index, (name, ttfa) in enumerate(zip(names, values, strict=True), start=1):
        jitter = rng.uniform(-0.12, 0.12, len(ttfa))
        axes.scatter(np.full(len(ttfa), index) + jitter, ttfa, s=12, alpha=0.6,
                     color=_MODE_COLOURS.get(name, "grey"), zorder=3)
        p50 = modes[name]["summary"]["ttfa_ms"]["p50"]
        if p50 is not None:
            axes.annotate(f"p50 {p50:.0f} ms", (index + 0.28, p50), va="center", fontsize=8)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_ylabel("TTFA (ms, log scale)")
    axes.set_title("TTFA per turn, by mode (box: p25-p75, whiskers: p5-p95)", fontsize=10)
    axes.grid(axis="y", which="both", alpha=0.3)
    figure.savefig(path)


def _stages_by_mode(report: dict, path: Path) -> None:
    modes = {name: mode["summary"]["segments_p50_ms"] for name, mode in report["modes"].items()
             if mode.get("summary") and mode["summary"]["turns_done"]}
    figure = _new_figure()
    axes = figure.add_subplot()
    names = list(modes)
    left = np.zeros(len(names))
    colours = ["#9e9e9e", "#4e79a7", "#76b7b2", "#f28e2b", "#e15759", "#b07aa1"]
    for segment, colour in zip(SEGMENTS, colours, strict=True):
        widths = np.array([modes[n].get(segment) or 0.0 for n in names])
        axes.barh(names, widths, left=left, color=colour, label=_SEGMENT_LABELS[segment])
        left += widths
    for index, total in enumerate(left):
        axes.annotate(f"{total:.0f} ms", (total, index), xytext=(4, 0),
                      textcoords="offset points", va="center", fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("median of each stage (ms); the sum is a typical turn's TTFA")
    axes.set_xlim(0, max(left.max(), 1.0) * 1.18)
    axes.set_title("Where the time to first audio goes (median turn)", fontsize=10)
    figure.legend(fontsize=7, loc="outside lower center", ncol=3, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path)


def _load(report: dict, path: Path) -> None:
    load = report["load"]
    levels = load["levels"]
    clients = [level["clients"] for level in levels]
    figure = _new_figure()
    axes = figure.add_subplot()
    for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
        axes.plot(clients, [level["summary"]["ttfa_ms"][key] or np.nan for level in levels],
                  style, label=f"TTFA {key}", color="#2a7ab9")
    axes.set_xscale("log", base=2)
    axes.set_xticks(clients, [str(k) for k in clients])
    axes.set_xlabel("simultaneous clients K (one daemon)")
    axes.set_ylabel("TTFA (ms)")
    axes.grid(alpha=0.3)
    underruns = axes.twinx()
    underruns.bar(clients, [level["summary"]["underruns_total"] for level in levels],
                  width=[k * 0.25 for k in clients], alpha=0.35, color="#e15759",
                  label="underruns (blocks)")
    underruns.set_ylabel("underruns (blocks)")
    most = max(level["summary"]["underruns_total"] for level in levels)
    underruns.set_ylim(0, max(most * 1.15, 1))
    best = load["max_clients_without_underruns"]
    if best is not None:
        axes.axvline(best, color="#5c9e3d", linestyle="-.",
                     label=f"largest K without underruns: {best}")
    handles = axes.get_legend_handles_labels()
    extra = underruns.get_legend_handles_labels()
    axes.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8, loc="upper left")
    axes.set_title(f"K conversations on one daemon ({load['turns_per_client']} turn(s) "
                   "per client)", fontsize=10)
    figure.savefig(path)


def write_plots(report: dict, out_dir: Path) -> list[Path]:
    """Write the report's PNGs into `out_dir`; return their paths.

    ttfa_by_mode.png (TTFA distribution per mode), stages_by_mode.png (stacked mean
    stage durations per mode) and load.png (TTFA and underruns against K), each only
    when the report has the data for it.

    Raises:
      ImportError: matplotlib is not installed (the `bench` extra).
    """
    import matplotlib  # noqa: PLC0415, F401 - fail early, before any figure

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if any(mode.get("turns") for mode in report["modes"].values()):
        for name, draw in (("ttfa_by_mode.png", _ttfa_by_mode),
                           ("stages_by_mode.png", _stages_by_mode)):
            draw(report, out_dir / name)
            written.append(out_dir / name)
    if report.get("load") and report["load"]["levels"]:
        _load(report, out_dir / "load.png")
        written.append(out_dir / "load.png")
    _LOGGER.debug("wrote %s", ", ".join(map(str, written)))
    return written
