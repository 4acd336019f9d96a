"""The paper's figures with matplotlib's Agg canvas (no pyplot, no global backend change).

Every function returns a :class:`matplotlib.figure.Figure` (display it in a notebook, or save
it with :func:`save`). Sizes are fixed by the grid, so a figure of ``rows x cols`` panels is
always :func:`figure_pixels` pixels: fixed panel sizes, margins and gaps (:data:`LAYOUTS`) and
no layout engine, which also keeps drawing fast.

* :func:`learning_curves_figure` — paper Figures 3/4: IQM normalised score over training steps
  with 95% bootstrap bands, rows = architectures, columns = benchmarks, the final IQM of
  single-task PPO on the benchmark's tasks as a dashed horizontal line.
* :func:`plasticity_figure` — paper Figures 5-10: dormant neurons (actor, critic), effective
  rank, Fisher trace and sparsity over training (mean over runs, 95% t-interval), rows =
  architectures, one figure per benchmark.

A panel that lacks one of the treatments it should show says so ("no data: ...").
A sweep with grid axes (``axes:``) gets one line per treatment and combination of axis values:
the treatment's colour, one line style per combination, the values in the legend. A variant of
a treatment (a label that is not a registered name) is shown in the legend as its label and,
when ``variants`` gives it, its long form (``redo.tau-0.001: ReDo (tau=0.001)``).
* :func:`single_task_curves_figure` — the single-task PPO runs, one panel per task.
* :func:`profiles_figure` — performance profiles (fraction of runs x tasks above each score).
* :func:`poi_figure` — probability of improvement over the Dense agent with 95% CIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.aggregate import Band, Interval
from analysis.paper import arch_name, arch_sort_key, task_sort_key, treatment_name, treatment_sort_key
from analysis.plasticity import INTERVAL_LABEL, PLASTICITY_METRICS, Metric
from analysis.scores import single_task_key
from mtrl_plasticity.results import Cell, label_display

DPI = 100
POI_PAD = 0.05
"""Room on either side of the [0, 1] probability axis of :func:`poi_figure`."""
MISSING_COLOR = "#b22222"
"""Colour of the "no data" notes that mark a missing cell in a panel."""


@dataclass(frozen=True)
class Layout:
    """Fixed geometry of a figure kind, in inches (no layout engine: drawing stays fast)."""

    panel: tuple[float, float]
    """Width and height each panel adds to the figure (axes plus its share of the gaps)."""
    left: float
    right: float
    top: float
    """Room for the title."""
    bottom: float
    """Room for the x label and the legend."""
    wgap: float
    hgap: float


LAYOUTS = {
    "curves": Layout(panel=(4.2, 3.1), left=0.75, right=0.2, top=0.75, bottom=1.3, wgap=0.55, hgap=0.55),
    "plasticity": Layout(panel=(3.4, 2.6), left=0.7, right=0.2, top=0.75, bottom=1.2, wgap=0.65, hgap=0.55),
    "profiles": Layout(panel=(4.2, 3.2), left=0.75, right=0.2, top=0.75, bottom=1.3, wgap=0.45, hgap=0.5),
    "poi": Layout(panel=(3.6, 0.3), left=2.4, right=0.25, top=0.8, bottom=0.6, wgap=0.3, hgap=0.0),
}

TREATMENT_COLORS = {
    "dense": "#222222",
    "gmp80": "#74add1",
    "gmp95": "#2166ac",
    "gmp99": "#053061",
    "set95": "#1a9850",
    "redo": "#d73027",
    "reset": "#f46d43",
    "wd": "#8e44ad",
}
_SPARE_COLORS = ["#b8860b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22", "#8c564b"]
AXES_LINESTYLES = ("-", "--", ":", "-.")
"""Line style of the first, second, ... combination of grid-axis values in a figure."""
SINGLE_TASK_STYLE = {"color": "#555555", "linestyle": "--", "linewidth": 1.5}


def treatment_color(treatment: str) -> str:
    """A fixed colour per treatment (label), the same in every figure."""
    if treatment in TREATMENT_COLORS:
        return TREATMENT_COLORS[treatment]
    return _SPARE_COLORS[sum(map(ord, treatment)) % len(_SPARE_COLORS)]


def line_label(treatment: str, axes: str = "", variants: Mapping[str, str] | None = None) -> str:
    """The legend entry of a treatment (label) with grid-axis values ``axes``: ``"ReDo"``,
    ``"redo.tau-0.001: ReDo (tau=0.001)"`` (a variant with its long form from ``variants``),
    ``"ReDo, actor_lr=0.0003"``."""
    long = (variants or {}).get(treatment)
    text = f"{treatment}: {long}" if long and long != treatment else treatment_name(treatment)
    return f"{text}, {label_display(axes)}" if axes else text


def _axes_values(cells) -> list[str]:
    """The grid-axis labels of ``cells``, sorted (``[""]`` for a sweep without axes)."""
    return sorted({c.axes for c in cells}) or [""]


def figure_inches(kind: str, rows: int, cols: int) -> tuple[float, float]:
    """``(width, height)`` in inches of a figure of ``kind`` with ``rows x cols`` panels."""
    layout = LAYOUTS[kind]
    return (layout.left + layout.right + layout.panel[0] * cols,
            layout.top + layout.bottom + layout.panel[1] * rows)


def figure_pixels(kind: str, rows: int, cols: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a figure of ``kind`` with ``rows x cols`` panels."""
    width, height = figure_inches(kind, rows, cols)
    return int(round(width * DPI)), int(round(height * DPI))


def _figure(kind: str, rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    layout = LAYOUTS[kind]
    width, height = figure_inches(kind, rows, cols)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # Each panel's share includes one gap; the outer margins absorb the missing last gap.
    axes_w = layout.panel[0] - layout.wgap * (cols - 1) / cols
    axes_h = layout.panel[1] - layout.hgap * (rows - 1) / rows
    fig.subplots_adjust(left=layout.left / width, right=1 - layout.right / width,
                        bottom=layout.bottom / height, top=1 - layout.top / height,
                        wspace=layout.wgap / axes_w if cols > 1 else 0.0,
                        hspace=layout.hgap / axes_h if rows > 1 else 0.0)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG of exactly :func:`figure_pixels` size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def _title(fig: Figure, text: str) -> None:
    """A figure title that fits the width (smaller font for long titles on narrow figures)."""
    fits = 0.95 * fig.get_figwidth() * 72 / (0.55 * max(len(text), 1))  # ~0.55 em per character
    fig.suptitle(text, y=1.0 - 0.12 / fig.get_figheight(), va="top", fontsize=max(7.0, min(12.0, fits)))


def _steps_formatter(value: float, _pos: int) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _legend(fig: Figure, handles_labels: dict[str, Artist], ncol: int | None = None) -> None:
    if not handles_labels:
        return
    labels = list(handles_labels)
    fits = max(1, int(fig.get_figwidth() / 2.4))  # entries of ~2.4 inches side by side
    fig.legend([handles_labels[k] for k in labels], labels, loc="lower center", bbox_to_anchor=(0.5, 0.01),
               ncol=ncol or min(len(labels), fits), frameon=False, fontsize=10)


def _sorted_archs(cells) -> list[str]:
    return sorted({c.arch for c in cells if c.arch != "single"}, key=arch_sort_key)


def _sorted_benchmarks(cells) -> list[str]:
    order = ["MT3", "MT5", "MT7"]
    names = {c.benchmark for c in cells if c.arch != "single"}
    return sorted(names, key=lambda b: (order.index(b), b) if b in order else (len(order), b))


def _mark_missing(ax, missing: Sequence[tuple[str, str]], top: bool = True) -> None:
    """Say in the panel which of its expected (treatment, axes) lines have no data (a missing cell);
    ``top`` puts the note in the upper left corner, else the lower left (where the curves leave room)."""
    if missing:
        ax.text(0.02, 0.97 if top else 0.03, "no data: " + "; ".join(line_label(t, x) for t, x in missing),
                ha="left", va="top" if top else "bottom", transform=ax.transAxes, fontsize=8, color=MISSING_COLOR)


def _plot_band(ax, band: Band | None, treatment: str, legend: dict[str, Artist], *,
               linewidth: float, alpha: float, axes: str = "", style: int = 0,
               variants: Mapping[str, str] | None = None) -> None:
    """A line's point estimate with its shaded interval; the first line per label goes in the legend."""
    if band is None:
        return
    color = treatment_color(treatment)
    (line,) = ax.plot(band.x, band.point, color=color, linewidth=linewidth,
                      linestyle=AXES_LINESTYLES[style % len(AXES_LINESTYLES)])
    ax.fill_between(band.x, band.low, band.high, color=color, alpha=alpha, linewidth=0)
    legend.setdefault(line_label(treatment, axes, variants), line)


def learning_curves_figure(bands: Mapping[Cell, Band], treatments: Sequence[str],
                           single_task: Mapping[str, Interval] | None = None, title: str = "",
                           variants: Mapping[str, str] | None = None) -> Figure:
    """IQM learning curves, rows = architectures, columns = benchmarks (paper Figures 3 and 4).

    Args:
        bands: cell -> IQM band over steps (:func:`analysis.aggregate.iqm_curves_with_ci`).
        treatments: which treatments (labels) to draw, in legend order (others are ignored); a
            panel lacking one of them says so ("no data: ..."). Each is drawn once per
            combination of grid-axis values in ``bands``.
        single_task: :func:`single_task_key` -> final single-task PPO IQM (dashed line), where available.
        title: the figure title.
        variants: label -> long form of the treatment variants (legend).
    """
    cells = [c for c in bands if c.treatment in treatments and c.arch != "single"]
    archs, benchmarks = _sorted_archs(cells), _sorted_benchmarks(cells)
    axes_values = _axes_values(cells)
    fig, axes = _figure("curves", max(len(archs), 1), max(len(benchmarks), 1))
    legend: dict[str, Artist] = {}
    for i, arch in enumerate(archs):
        for j, benchmark in enumerate(benchmarks):
            ax = axes[i, j]
            for treatment in treatments:
                for k, axes_label in enumerate(axes_values):
                    _plot_band(ax, bands.get(Cell(benchmark, arch, treatment, axes_label)), treatment, legend,
                               linewidth=1.8, alpha=0.18, axes=axes_label, style=k, variants=variants)
            _mark_missing(ax, [(t, x) for t in treatments for x in axes_values
                               if Cell(benchmark, arch, t, x) not in bands])
            for k, axes_label in enumerate(axes_values):
                key = single_task_key(benchmark, axes_label)
                if single_task and key in single_task:
                    style = SINGLE_TASK_STYLE if k == 0 else {**SINGLE_TASK_STYLE, "linestyle": (0, (5, 2 + 2 * k))}
                    line = ax.axhline(single_task[key].point, **style)
                    legend.setdefault("Single-task PPO (final IQM)" + (f", {label_display(axes_label)}"
                                                                       if axes_label else ""), line)
            ax.set_title(f"{arch_name(arch)} — {benchmark}", fontsize=11)
            ax.set_ylim(0.0, 1.0)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
            if i == len(archs) - 1:
                ax.set_xlabel("Training steps per task")
            if j == 0:
                ax.set_ylabel("IQM normalised score")
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no data", ha="center", va="center", transform=axes[0, 0].transAxes)
    if title:
        _title(fig, title)
    _legend(fig, legend)
    return fig


def single_task_grid(n_tasks: int) -> tuple[int, int]:
    """``(rows, cols)`` of :func:`single_task_curves_figure` for ``n_tasks`` panels."""
    cols = min(max(n_tasks, 1), 4)
    return -(-max(n_tasks, 1) // cols), cols


def single_task_curves_figure(bands: Mapping[Cell, Band], title: str = "") -> Figure:
    """IQM learning curves of the single-task runs (``arch == "single"``), one panel per task."""
    cells = [c for c in bands if c.arch == "single"]
    tasks = sorted({c.benchmark for c in cells}, key=task_sort_key)
    treatments = sorted({c.treatment for c in cells}, key=treatment_sort_key)
    rows, cols = single_task_grid(len(tasks))
    fig, axes = _figure("curves", rows, cols)
    legend: dict[str, Artist] = {}
    axes_values = _axes_values(cells)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(tasks):
            ax.set_visible(False)
            continue
        for treatment in treatments:
            for n, axes_label in enumerate(axes_values):
                band = bands.get(Cell(tasks[k], "single", treatment, axes_label))
                if band is None:
                    continue
                color = treatment_color(treatment)
                (line,) = ax.plot(band.x, band.point, color=color, linewidth=1.8,
                                  linestyle=AXES_LINESTYLES[n % len(AXES_LINESTYLES)])
                ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.18, linewidth=0)
                legend.setdefault(f"Single-task PPO, {line_label(treatment, axes_label)}", line)
        ax.set_title(tasks[k], fontsize=11)
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
        if k + cols >= len(tasks):  # no panel below this one
            ax.set_xlabel("Training steps")
        if k % cols == 0:
            ax.set_ylabel("IQM normalised score")
    _title(fig, title or "Single-task PPO learning curves (IQM over runs, 95% stratified bootstrap CI)")
    _legend(fig, legend)
    return fig


def plasticity_figure(curves: pd.DataFrame, benchmark: str, treatments: Sequence[str],
                      metrics: Sequence[Metric] = PLASTICITY_METRICS, title: str = "",
                      variants: Mapping[str, str] | None = None) -> Figure:
    """Plasticity metrics of one benchmark over training: rows = architectures, columns = metrics.

    Args:
        curves: the frame of :func:`analysis.plasticity.plasticity_curves`.
        benchmark: which benchmark to draw.
        treatments: treatments to draw, in legend order; a panel lacking one says so.
        title: the figure title (default: names the benchmark and the treatments with data).
        variants: label -> long form of the treatment variants (legend).
    """
    if "axes" not in curves:
        curves = curves.assign(axes="")
    data = curves[(curves["benchmark"] == benchmark) & curves["treatment"].isin(list(treatments))
                  & (curves["arch"] != "single")]
    archs = sorted(data["arch"].unique(), key=arch_sort_key)
    axes_values = sorted(set(data["axes"])) or [""]
    fig, axes = _figure("plasticity", max(len(archs), 1), len(metrics))
    legend: dict[str, Artist] = {}
    groups = {key: g for key, g in data.groupby(["arch", "treatment", "axes", "metric"], sort=False)}
    for i, arch in enumerate(archs):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            drew = False
            missing = []
            for treatment in treatments:
                for k, axes_label in enumerate(axes_values):
                    g = groups.get((arch, treatment, axes_label, metric.column))
                    if g is None or g.empty:
                        missing.append((treatment, axes_label))
                        continue
                    color = treatment_color(treatment)
                    (line,) = ax.plot(g["step"], g["mean"], color=color, linewidth=1.5,
                                      linestyle=AXES_LINESTYLES[k % len(AXES_LINESTYLES)])
                    ax.fill_between(g["step"], g["low"], g["high"], color=color, alpha=0.18, linewidth=0)
                    legend.setdefault(line_label(treatment, axes_label, variants), line)
                    drew = True
            if not drew:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="#888888")
            else:
                _mark_missing(ax, missing)
            ax.set_title(f"{arch_name(arch)}: {metric.label}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
            ax.set_ylabel(metric.unit, fontsize=9)
            ax.tick_params(labelsize=8)
            if i == len(archs) - 1:
                ax.set_xlabel("Training steps per task", fontsize=9)
    if not archs:
        axes[0, 0].text(0.5, 0.5, "no data", ha="center", va="center", transform=axes[0, 0].transAxes)
    shown = [t for t in treatments if t in set(data["treatment"])]
    _title(fig, title or f"Plasticity metrics on {benchmark}: {', '.join(map(treatment_name, shown)) or 'no data'} "
                         f"({INTERVAL_LABEL})")
    _legend(fig, legend)
    return fig


def profiles_figure(profiles: Mapping[Cell, Band], benchmark: str, title: str = "",
                    treatments: Sequence[str] | None = None, variants: Mapping[str, str] | None = None) -> Figure:
    """Performance profiles of one benchmark: one panel per architecture, one line per treatment.

    ``treatments``: those each panel should show (default: those with a profile on the
    benchmark); a panel lacking one says so ("no data: ...").
    """
    cells = [c for c in profiles if c.benchmark == benchmark and c.arch != "single"]
    archs = _sorted_archs(cells)
    if treatments is None:
        treatments = sorted({c.treatment for c in cells}, key=treatment_sort_key)
    fig, axes = _figure("profiles", 1, max(len(archs), 1))
    legend: dict[str, Artist] = {}
    axes_values = _axes_values(cells)
    for j, arch in enumerate(archs):
        ax = axes[0, j]
        for treatment in treatments:
            for k, axes_label in enumerate(axes_values):
                _plot_band(ax, profiles.get(Cell(benchmark, arch, treatment, axes_label)), treatment, legend,
                           linewidth=1.6, alpha=0.15, axes=axes_label, style=k, variants=variants)
        _mark_missing(ax, [(t, x) for t in treatments for x in axes_values
                           if Cell(benchmark, arch, t, x) not in profiles], top=False)
        ax.set_title(f"{arch_name(arch)} — {benchmark}", fontsize=11)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel(r"Normalised score $\tau$")
        if j == 0:
            ax.set_ylabel(r"Fraction of runs $\times$ tasks > $\tau$")
    _title(fig, title or f"Performance profiles on {benchmark} (final scores, 95% CI)")
    _legend(fig, legend)
    return fig


def poi_rows(poi: Mapping[Cell, Interval], expected: Sequence[Cell] = ()) -> list[tuple[str, str, str]]:
    """The (arch, treatment, axes) rows of :func:`poi_figure`, top to bottom."""
    cells = list(poi) + [c for c in expected if c.treatment != "dense" and c.arch != "single"]
    return sorted({(c.arch, c.treatment, c.axes) for c in cells},
                  key=lambda p: (arch_sort_key(p[0]), treatment_sort_key(p[1]), p[2]))


def poi_figure(poi: Mapping[Cell, Interval], title: str = "", expected: Sequence[Cell] = ()) -> Figure:
    """Probability of improvement over Dense: one panel per benchmark, one row per arch x treatment.

    ``expected``: cells that should have a row (e.g. the sweep's grid); a row without an
    estimate in a panel reads "no data".
    """
    benchmarks = _sorted_benchmarks(list(poi) + list(expected))
    pairs = poi_rows(poi, expected)
    fig, axes = _figure("poi", max(len(pairs), 1), max(len(benchmarks), 1))
    gs = axes[0, 0].get_subplotspec().get_gridspec()
    for ax in axes.ravel():
        ax.remove()
    for j, benchmark in enumerate(benchmarks):
        ax = fig.add_subplot(gs[:, j])
        for k, (arch, treatment, axes_label) in enumerate(pairs):
            est = poi.get(Cell(benchmark, arch, treatment, axes_label))
            y = len(pairs) - 1 - k
            if est is None:
                ax.text(0.5, y, "no data", ha="center", va="center", fontsize=8, color=MISSING_COLOR)
                continue
            color = treatment_color(treatment)
            ax.plot([est.low, est.high], [y, y], color=color, linewidth=5, alpha=0.45, solid_capstyle="butt")
            ax.plot([est.point], [y], marker="|", color=color, markersize=12, markeredgewidth=2)
        ax.axvline(0.5, color="#888888", linestyle=":", linewidth=1)
        ax.set_xlim(-POI_PAD, 1.0 + POI_PAD)  # a P of 0 or 1 stays visible off the frame
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylim(-0.7, len(pairs) - 0.3)
        ax.set_yticks(range(len(pairs)))
        ax.set_yticklabels([f"{arch_name(a)}: {line_label(t, x)}" for a, t, x in reversed(pairs)] if j == 0 else [])
        ax.set_title(benchmark, fontsize=11)
        ax.set_xlabel("P(treatment > Dense)")
        ax.grid(axis="x", alpha=0.3)
    if not benchmarks:
        fig.text(0.5, 0.5, "no data", ha="center", va="center")
    _title(fig, title or "Probability of improvement over the architecture's Dense agent (95% CI)")
    return fig
