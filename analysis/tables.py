"""Table 1 (and the smaller tables) as a tidy frame, Markdown, LaTeX and CSV.

Marks follow the paper's Table 1 and are decided on the values as printed (two decimals):

* **best**: the highest IQM of the architecture on the benchmark (ties all marked; gold in
  the paper, bold in Markdown, ``\\best{}`` in LaTeX);
* **improves on dense**: a higher IQM than the architecture's Dense cell on the benchmark (blue
  in the paper, an arrow in Markdown, ``\\better{}`` in LaTeX).

A sweep with grid axes gets one row per architecture x treatment x combination of axis values:
the tidy frame has the ``axes`` label and one column per axis field, the rendered tables one
column per axis field; both marks compare cells of the same axis values only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.aggregate import Interval
from analysis.paper import (
    PAPER_TABLE_1,
    arch_long_name,
    arch_name,
    arch_sort_key,
    task_sort_key,
    treatment_name,
    treatment_sort_key,
)
from analysis.scores import ScoreMatrix
from mtrl_plasticity.results import Cell, format_value, label_display

DECIMALS = 2
TABLE1_COLUMNS = ["arch", "treatment", "axes", "benchmark", "iqm", "ci_low", "ci_high", "n_runs", "expected_runs",
                  "n_unfinished", "n_tasks", "best", "improves_on_dense", "paper_iqm", "paper_ci_low", "paper_ci_high"]
"""Table 1's tidy columns; a sweep with grid axes has one more per axis field, after ``axes``."""
BETTER_MARK = "↑"


def _r(value: float) -> float:
    return round(float(value), DECIMALS) if value is not None and not math.isnan(value) else math.nan


def _fmt(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def _ci(low: float, high: float) -> str:
    return f"({_fmt(low)}, {_fmt(high)})"


def table1_frame(results: Mapping[Cell, Interval], n_runs: Mapping[Cell, int], n_tasks: Mapping[Cell, int],
                 expected_runs: int | None = None, paper: bool = False,
                 n_unfinished: Mapping[Cell, int] | None = None,
                 axis_values: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The long (tidy) form of Table 1: one row per architecture x treatment x axis values x benchmark.

    Args:
        results: cell -> IQM with its CI (multi-task cells; single-task cells are ignored).
        n_runs, n_tasks: cell -> runs and tasks behind the estimate.
        expected_runs: seeds each cell should have (for the ``[n=...]`` marks), if known.
        paper: add the draft paper's numbers (:data:`analysis.paper.PAPER_TABLE_1`; cells
            without grid axes only).
        n_unfinished: cell -> runs behind the estimate that were scored below the table's
            step (``include_unfinished``); marked ``[K unfinished]``.
        axis_values: axes label -> ``{field: value}`` (one column per field); default: none.

    Every architecture x treatment x axis values present appears on every benchmark present; a
    combination without runs has NaN in ``iqm``.
    """
    cells = [c for c in set(results) | set(n_runs) if c.arch != "single"]
    benchmarks = sorted({c.benchmark for c in cells}, key=_benchmark_key)
    order = list(axis_values or {})
    rows_of = sorted({(c.arch, c.treatment, c.axes) for c in cells},
                     key=lambda p: (arch_sort_key(p[0]), treatment_sort_key(p[1]),
                                    order.index(p[2]) if p[2] in order else len(order), p[2]))
    fields = list(dict.fromkeys(name for values in (axis_values or {}).values() for name in values))
    rows = []
    for arch, treatment, axes in rows_of:
        for benchmark in benchmarks:
            cell = Cell(benchmark, arch, treatment, axes)
            est = results.get(cell)
            ref = PAPER_TABLE_1.get((arch, treatment, benchmark)) if paper and not axes else None
            rows.append({
                "arch": arch, "treatment": treatment, "axes": axes,
                **{name: (axis_values or {}).get(axes, {}).get(name) for name in fields},
                "benchmark": benchmark,
                "iqm": est.point if est else math.nan,
                "ci_low": est.low if est else math.nan,
                "ci_high": est.high if est else math.nan,
                "n_runs": int(n_runs.get(cell, 0)),
                "expected_runs": expected_runs if expected_runs is not None else pd.NA,
                "n_unfinished": int((n_unfinished or {}).get(cell, 0)),
                "n_tasks": int(n_tasks.get(cell, 0)),
                "paper_iqm": ref.point if ref else math.nan,
                "paper_ci_low": ref.low if ref else math.nan,
                "paper_ci_high": ref.high if ref else math.nan,
            })
    base = [c for c in TABLE1_COLUMNS if c not in ("best", "improves_on_dense")]
    at = base.index("axes") + 1
    frame = pd.DataFrame(rows, columns=base[:at] + fields + base[at:])
    shown = frame["iqm"].map(_r)
    best = shown.groupby([frame["arch"], frame["axes"], frame["benchmark"]]).transform("max")
    frame["best"] = shown.notna() & (shown == best)
    dense = frame.loc[frame["treatment"] == "dense"].set_index(["arch", "axes", "benchmark"])["iqm"].map(_r)
    dense_shown = pd.Series([dense.get(key, math.nan)
                             for key in zip(frame["arch"], frame["axes"], frame["benchmark"], strict=True)])
    frame["improves_on_dense"] = (frame["treatment"] != "dense") & shown.notna() & (shown > dense_shown)
    if not paper:
        frame = frame.drop(columns=["paper_iqm", "paper_ci_low", "paper_ci_high"])
    columns = [c for c in TABLE1_COLUMNS[:at] + fields + TABLE1_COLUMNS[at:] if c in frame.columns]
    return frame[columns]


def axis_fields(frame: pd.DataFrame) -> list[str]:
    """The grid-axis columns of a Table 1 or P(improvement) frame (between ``axes`` and ``benchmark``)."""
    names = list(frame.columns)
    if "axes" not in names or not frame["axes"].astype(bool).any():
        return []
    return names[names.index("axes") + 1:names.index("benchmark")]


def _benchmark_key(name: str) -> tuple[int, str]:
    order = ["MT3", "MT5", "MT7"]
    return (order.index(name), name) if name in order else (len(order), name)


def _layout(frame: pd.DataFrame) -> tuple[list[str], list[tuple[str, str, str]]]:
    benchmarks = list(dict.fromkeys(frame["benchmark"]))
    rows = list(dict.fromkeys(zip(frame["arch"], frame["treatment"], _axes_of(frame), strict=True)))
    return benchmarks, rows


def _axes_of(frame: pd.DataFrame) -> pd.Series:
    return frame["axes"] if "axes" in frame.columns else pd.Series([""] * len(frame), index=frame.index)


def _axis_cells(frame: pd.DataFrame, arch: str, treatment: str, axes: str) -> list[str]:
    """The axis fields' values of a row, as the rendered tables show them."""
    fields = axis_fields(frame)
    if not fields:
        return []
    row = frame.loc[(frame["arch"] == arch) & (frame["treatment"] == treatment) & (_axes_of(frame) == axes)].iloc[0]
    return ["—" if pd.isna(row[name]) else format_value(_plain(row[name])) or str(row[name]) for name in fields]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class _Entry:
    """One benchmark's part of a Table 1 row, as both renderers print it before their own markup."""

    value: str | None
    """The IQM with two decimals; ``None`` for a cell without runs."""
    best: bool
    improves: bool
    interval: str
    """``(low, high)`` and the run-count note."""
    paper: str | None
    """The paper's ``IQM (low, high)``; ``None`` where it has none."""


def _table1_rows(frame: pd.DataFrame) -> tuple[list[str], bool, list[tuple[str, str, str, list[_Entry]]]]:
    """``(benchmarks, with the paper column, [(arch, treatment, axes, one entry per benchmark)])`` of Table 1."""
    benchmarks, triples = _layout(frame)
    paper = "paper_iqm" in frame.columns
    index = frame.assign(axes=_axes_of(frame)).set_index(["arch", "treatment", "axes", "benchmark"])
    rows = []
    for arch, treatment, axes in triples:
        entries = []
        for b in benchmarks:
            row = index.loc[(arch, treatment, axes, b)]
            missing = math.isnan(row["iqm"])
            reference = None
            if paper and not math.isnan(row["paper_iqm"]):
                reference = f"{_fmt(row['paper_iqm'])} {_ci(row['paper_ci_low'], row['paper_ci_high'])}"
            entries.append(_Entry(None if missing else _fmt(row["iqm"]), bool(row["best"]),
                                  bool(row["improves_on_dense"]),
                                  "" if missing else _ci(row["ci_low"], row["ci_high"]) + run_count_note(row),
                                  reference))
        rows.append((arch, treatment, axes, entries))
    return benchmarks, paper, rows


def run_count_note(row: pd.Series) -> str:
    """``[n=K]`` for fewer runs than expected, ``K unfinished`` for runs scored below the table's step."""
    parts = []
    expected = row.get("expected_runs")
    if expected is not None and not pd.isna(expected) and row["n_runs"] < int(expected):
        parts.append(f"n={int(row['n_runs'])}")
    if row.get("n_unfinished", 0):
        parts.append(f"{int(row['n_unfinished'])} unfinished")
    return f" [{', '.join(parts)}]" if parts else ""


def table1_markdown(frame: pd.DataFrame, caption: str | None = None) -> str:
    """Table 1 in Markdown: one row per architecture x treatment, IQM and CI per benchmark."""
    if frame.empty:
        return (f"{caption}\n\n" if caption else "") + "_No multi-task runs: Table 1 has nothing to show._\n"
    benchmarks, paper, rows = _table1_rows(frame)
    fields = axis_fields(frame)
    header = ["Architecture", "Treatment", *fields]
    for b in benchmarks:
        header += [f"{b} IQM", f"{b} 95% CI"] + ([f"{b} paper IQM (95% CI)"] if paper else [])
    lines = []
    if caption:
        lines += [caption, ""]
    left = 2 + len(fields)
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|"]
    for arch, treatment, axes, entries in rows:
        cells = [arch_name(arch), treatment_name(treatment), *_axis_cells(frame, arch, treatment, axes)]
        for entry in entries:
            if entry.value is None:
                cells += ["—", "missing"]
            else:
                value = f"**{entry.value}**" if entry.best else entry.value
                cells += [value + (f" {BETTER_MARK}" if entry.improves else ""), entry.interval]
            if paper:
                cells.append(entry.paper or "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Bold**: best IQM of the architecture on the benchmark (gold in the paper); {BETTER_MARK}: higher "
              "IQM than the architecture's Dense agent (blue in the paper); both judged on the two-decimal values. "
              "[n=K]: only K runs behind the estimate (fewer than the seeds expected: missing, failed, or "
              "unfinished and left out); [K unfinished]: K runs stopped before the table's step and enter at "
              "their own last evaluation (--include-unfinished)."]
    return "\n".join(lines) + "\n"


_LATEX_PREAMBLE = r"""% Table 1. Needs \usepackage{booktabs} and \usepackage{xcolor} in the preamble.
\providecommand{\best}[1]{\textbf{\textcolor[HTML]{B8860B}{#1}}}
\providecommand{\better}[1]{\textbf{\textcolor[HTML]{1F6FB4}{#1}}}
"""


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    return text


def table1_latex(frame: pd.DataFrame, caption: str | None = None) -> str:
    """Table 1 as a LaTeX ``table`` (booktabs), grouped by architecture like the paper."""
    if frame.empty:
        return "% Table 1: no multi-task runs, nothing to show.\n"
    benchmarks, paper, rows = _table1_rows(frame)
    fields = axis_fields(frame)
    per = 3 if paper else 2
    first = 1 + len(fields)
    ncols = first + per * len(benchmarks)
    lines = [_LATEX_PREAMBLE.rstrip(), r"\begin{table}[t]", r"\centering"]
    if caption:
        text = caption.removeprefix("Table 1: ")  # LaTeX numbers the table itself
        lines.append(r"\caption{" + _tex(text[:1].upper() + text[1:]) + "}")
    lines.append(r"\begin{tabular}{l" + "l" * len(fields) + ("cc" + ("c" if paper else "")) * len(benchmarks) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(["Agent Treatment", *map(_tex, fields)]) + " & "
                 + " & ".join(rf"\multicolumn{{{per}}}{{c}}{{{_tex(b)}}}" for b in benchmarks) + r" \\")
    lines.append(" ".join(rf"\cmidrule(lr){{{first + 1 + per * i}-{first + per * (i + 1)}}}"
                          for i in range(len(benchmarks))))
    sub = [r"IQM ($\uparrow$)", r"95\% CI"] + (["Paper"] if paper else [])
    lines.append(" & " * first + " & ".join(sub * len(benchmarks)) + r" \\")
    current = None
    for arch, treatment, axes, entries in rows:
        if arch != current:
            lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{_tex(arch_long_name(arch))}}}}} \\")
            current = arch
        cells = [_tex(treatment_name(treatment)), *map(_tex, _axis_cells(frame, arch, treatment, axes))]
        for entry in entries:
            if entry.value is None:
                cells += ["--", "missing"]
            else:
                value = entry.value
                if entry.best:
                    value = rf"\best{{{value}}}"
                elif entry.improves:
                    value = rf"\better{{{value}}}"
                cells += [value, _tex(entry.interval)]
            if paper:
                cells.append(rf"\textcolor{{gray}}{{{entry.paper}}}" if entry.paper else "--")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV with a fixed float format, so equal inputs give byte-identical files."""
    frame.to_csv(path, index=False, float_format="%.6f", lineterminator="\n")


# --- smaller tables --------------------------------------------------------------------


def poi_frame(results: Mapping[Cell, Interval], n_runs: Mapping[Cell, int]) -> pd.DataFrame:
    """Probability that each treatment beats its architecture's Dense agent, per benchmark."""
    rows = [{"benchmark": c.benchmark, "arch": c.arch, "treatment": c.treatment, "axes": c.axes, "poi": v.point,
             "ci_low": v.low, "ci_high": v.high, "n_runs": int(n_runs.get(c, 0)),
             "n_dense_runs": int(n_runs.get(Cell(c.benchmark, c.arch, "dense", c.axes), 0))}
            for c, v in results.items()]
    frame = pd.DataFrame(rows, columns=["benchmark", "arch", "treatment", "axes", "poi", "ci_low", "ci_high",
                                        "n_runs", "n_dense_runs"])
    if frame.empty:
        return frame
    order = sorted(frame.index, key=lambda i: (_benchmark_key(frame.at[i, "benchmark"]),
                                               arch_sort_key(frame.at[i, "arch"]),
                                               treatment_sort_key(frame.at[i, "treatment"]), frame.at[i, "axes"]))
    return frame.loc[order].reset_index(drop=True)


def poi_markdown(frame: pd.DataFrame) -> str:
    """Rows architecture x treatment, one column per benchmark: ``P(X > Dense) (low, high)``."""
    if frame.empty:
        return "_No treatment has a Dense counterpart to compare with._\n"
    benchmarks = sorted(frame["benchmark"].unique(), key=_benchmark_key)
    frame = frame.assign(axes=_axes_of(frame))
    triples = list(dict.fromkeys(zip(frame["arch"], frame["treatment"], frame["axes"], strict=True)))
    triples.sort(key=lambda p: (arch_sort_key(p[0]), treatment_sort_key(p[1]), p[2]))
    with_axes = bool(frame["axes"].astype(bool).any())
    index = frame.set_index(["arch", "treatment", "axes", "benchmark"])
    lines = ["| Architecture | Treatment | " + ("Axes | " if with_axes else "")
             + " | ".join(f"{b} P(X > Dense) (95% CI)" for b in benchmarks) + " |",
             "|---|---|" + ("---|" if with_axes else "") + "|".join(["---:"] * len(benchmarks)) + "|"]
    for arch, treatment, axes in triples:
        cells = [arch_name(arch), treatment_name(treatment)] + ([label_display(axes)] if with_axes else [])
        for b in benchmarks:
            if (arch, treatment, axes, b) in index.index:
                row = index.loc[(arch, treatment, axes, b)]
                cells.append(f"{_fmt(row['poi'])} {_ci(row['ci_low'], row['ci_high'])}")
            else:
                cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def single_task_frame(per_task: Mapping[str, tuple[Interval, int]],
                      per_benchmark: Mapping[str, tuple[Interval, int]]) -> pd.DataFrame:
    """Single-task PPO final scores: per task, and per benchmark (its tasks together)."""
    rows = [{"scope": "benchmark", "name": name, "iqm": v.point, "ci_low": v.low, "ci_high": v.high, "n_runs": n}
            for name, (v, n) in sorted(per_benchmark.items(), key=lambda kv: _benchmark_key(kv[0]))]
    rows += [{"scope": "task", "name": name, "iqm": v.point, "ci_low": v.low, "ci_high": v.high, "n_runs": n}
             for name, (v, n) in sorted(per_task.items(), key=lambda kv: task_sort_key(kv[0]))]
    return pd.DataFrame(rows, columns=["scope", "name", "iqm", "ci_low", "ci_high", "n_runs"])


def single_task_markdown(frame: pd.DataFrame) -> str:
    lines = ["| Scope | Benchmark or task | IQM | 95% CI | Runs |", "|---|---|---:|---:|---:|"]
    for row in frame.itertuples(index=False):
        scope = "all tasks of" if row.scope == "benchmark" else "task"
        lines.append(f"| {scope} | {row.name} | {_fmt(row.iqm)} | {_ci(row.ci_low, row.ci_high)} | {row.n_runs} |")
    return "\n".join(lines) + "\n"


def counts(finals: Mapping[Cell, ScoreMatrix]) -> tuple[dict[Cell, int], dict[Cell, int]]:
    """Runs and tasks behind each cell's final-score matrix."""
    n_runs = {c: int(m.scores.shape[0]) for c, m in finals.items()}
    n_tasks = {c: int(m.scores.shape[1]) for c, m in finals.items()}
    return n_runs, n_tasks


__all__: Sequence[str] = [
    "table1_frame", "table1_markdown", "table1_latex", "write_csv", "poi_frame", "poi_markdown",
    "single_task_frame", "single_task_markdown", "counts", "run_count_note",
]
