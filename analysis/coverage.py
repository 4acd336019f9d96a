"""What a results folder is missing: cells, seeds, evaluation points, unfinished runs.

The analysis never averages silently over what happens to be there. :func:`coverage` compares
the evaluation rows with the grid they imply and lists every gap; the report and the terminal
summary print :meth:`Coverage.lines`.

When the results folder holds a ``sweep.yaml``, the grid is the sweep's own
(:mod:`analysis.grid` expands it with the project's spec code): every cell and seed it lists
is expected, a treatment (or architecture, or benchmark) with no run in any cell is named,
and runs outside the grid are listed. Only folders of ad-hoc trials (no ``sweep.yaml``) fall
back to the grid the rows imply:

* multi-task cells: every benchmark x architecture x treatment x grid-axis values seen among
  multi-task runs (``arch != "single"``), each expected to hold seeds ``0..max`` where ``max``
  is the largest seed of any multi-task run;
* single-task baselines (``arch == "single"``, benchmark = task): when any exist, every task of
  the multi-task benchmarks seen x every single-task treatment seen, seeds ``0..max`` likewise;
* evaluation points: each run is expected at every step that any run of its benchmark reached
  (up to its own last step), for every task of its benchmark; a run that stops before the
  benchmark's last step is reported as unfinished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mtrl_plasticity.benchmarks import MULTI_TASK_BENCHMARKS, get_benchmark
from mtrl_plasticity.errors import AnalysisError, UnknownName
from mtrl_plasticity.results import Cell, run_key

if TYPE_CHECKING:  # pandas only types the arguments: `import analysis` stays light
    import pandas as pd

__all__ = ["CELL_COLUMNS", "SINGLE", "Cell", "Coverage", "benchmark_tasks", "coverage"]

SINGLE = "single"
"""The architecture name of single-task baselines."""
CELL_COLUMNS = ["benchmark", "arch", "treatment", "axes"]
"""The columns that name a row's cell."""


@dataclass
class Coverage:
    """Gaps between the rows present and the grid they imply (see the module docstring)."""

    n_runs: int = 0
    n_rows: int = 0
    cells: list[Cell] = field(default_factory=list)
    """Cells with at least one run, sorted."""
    expected_seeds: dict[str, list[int]] = field(default_factory=dict)
    """``"multi-task"`` / ``"single-task"`` -> the seeds each cell of that kind should hold."""
    missing_cells: list[Cell] = field(default_factory=list)
    missing_seeds: dict[Cell, list[int]] = field(default_factory=dict)
    """Present cells -> the expected seeds they lack."""
    unfinished_runs: dict[str, tuple[int, int]] = field(default_factory=dict)
    """run_key -> (its last evaluation step, the benchmark's last evaluation step)."""
    missing_points: dict[str, int] = field(default_factory=dict)
    """run_key -> number of (step, task) evaluation rows missing up to its last step."""
    unexpected_tasks: dict[str, list[str]] = field(default_factory=dict)
    """run_key -> tasks in its rows that its benchmark does not have (ignored by the scores)."""
    inconsistent_run_keys: list[str] = field(default_factory=list)
    """Run keys that do not match their rows' benchmark, arch, treatment, axes and seed
    (:func:`mtrl_plasticity.results.run_key`)."""
    missing_single_tasks: list[str] = field(default_factory=list)
    """Tasks of the benchmarks present with no single-task baseline run at all."""
    grid_source: str = "rows"
    """Where the expected grid comes from: ``"sweep.yaml"`` or ``"rows"`` (inferred)."""
    grid_seeds: dict[Cell, tuple[int, ...]] = field(default_factory=dict)
    """The sweep's grid (cell -> seeds) when it came from ``sweep.yaml``; empty when inferred."""
    missing_axis_values: list[tuple[str, str, int]] = field(default_factory=list)
    """(axis, value, cells) for a treatment, architecture, benchmark or grid-axis values of the
    sweep's grid with no run in any of its ``cells`` cells (a treatment that failed everywhere)."""
    outside_grid: dict[Cell, list[int]] = field(default_factory=dict)
    """Cells with runs (seeds) that the sweep's grid does not list -> those seeds."""
    outside_grid_left_out: bool = False
    """Whether the runs of :attr:`outside_grid` were left out of the scores (the default)."""
    has_single_task: bool = False
    duplicates_dropped: int = 0
    conflicting_duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    """Other findings, one line each (added by later stages, e.g. normalisation checks)."""

    @property
    def complete(self) -> bool:
        """True when nothing is missing (unfinished runs and duplicates count as gaps)."""
        return not (self.missing_cells or self.missing_seeds or self.unfinished_runs or self.missing_points
                    or self.unexpected_tasks or self.inconsistent_run_keys or self.missing_single_tasks
                    or self.conflicting_duplicates or self.missing_axis_values or self.outside_grid)

    def lines(self, limit: int = 50) -> list[str]:
        """Every gap as one human-readable line (at most ``limit`` lines per kind)."""
        out: list[str] = []

        def extend(items: list[str], what: str) -> None:
            out.extend(items[:limit])
            if len(items) > limit:
                out.append(f"... and {len(items) - limit} more {what}")

        out.extend(f"missing {axis} {value}: no run in any of its {n} cell(s) of the sweep's grid"
                   for axis, value, n in self.missing_axis_values)
        extend([f"missing cell {cell} (no runs; expected seeds {_ranges(self._seeds_for(cell))})"
                for cell in self.missing_cells], "missing cells")
        extend([f"missing seeds in {cell}: {_ranges(seeds)}" for cell, seeds in self.missing_seeds.items()],
               "cells with missing seeds")
        extend([f"unfinished run {key}: last evaluation at step {last:,} of {end:,}"
                for key, (last, end) in self.unfinished_runs.items()], "unfinished runs")
        extend([f"run {key} lacks {n} evaluation row(s) (step x task) before its last step"
                for key, n in self.missing_points.items()], "runs with missing evaluation points")
        extend([f"run {key} has rows for tasks outside its benchmark: {', '.join(tasks)} (ignored)"
                for key, tasks in self.unexpected_tasks.items()], "runs with unexpected tasks")
        extend([f"run_key {key} does not match its benchmark/arch/treatment/seed columns"
                for key in self.inconsistent_run_keys], "inconsistent run keys")
        left_out = (" (left out of the scores; --include-outside-grid includes them)" if self.outside_grid_left_out
                    else " (included in the scores)")
        extend([f"runs outside sweep.yaml's grid in {cell}: seeds {_ranges(seeds)}{left_out}"
                for cell, seeds in self.outside_grid.items()], "cells outside the grid")
        if self.missing_single_tasks:
            out.append("no single-task baseline for: " + ", ".join(self.missing_single_tasks))
        if self.conflicting_duplicates:
            out.append(f"{self.conflicting_duplicates} duplicate row(s) disagree with the row kept "
                       "(same keys, different deterministic values)")
        out.extend(self.notes)
        return out

    def _seeds_for(self, cell: Cell) -> list[int]:
        if cell in self.grid_seeds:
            return list(self.grid_seeds[cell])
        kind = "single-task" if cell.arch == SINGLE else "multi-task"
        return self.expected_seeds.get(kind, [])


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    if not values:
        return "none"
    values = sorted(values)
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def benchmark_tasks(benchmark: str) -> tuple[str, ...]:
    """The tasks of a benchmark name, or an AnalysisError for a name the tool does not know."""
    try:
        return get_benchmark(benchmark).tasks
    except UnknownName as exc:
        raise AnalysisError(f"unknown benchmark {benchmark!r} in the results: {exc}") from exc


def coverage(evals: pd.DataFrame, grid: Mapping[Cell, tuple[int, ...]] | None = None,
             last_steps: Mapping[Cell, int] | None = None) -> Coverage:
    """The gaps in a (deduplicated) evaluation frame from :func:`analysis.load.load_evals`.

    Needs the columns ``run_key``, ``benchmark``, ``arch``, ``treatment``, ``seed``, ``step``
    and ``task``; ``evals.attrs`` duplicate counts are carried over when present.

    Args:
        grid: the sweep's cells and their seeds (:attr:`analysis.grid.Grid.seeds`, from
            ``sweep.yaml``); ``None`` infers the grid from the rows (ad-hoc trials).
        last_steps: the last evaluation step of each cell's finished runs
            (:attr:`analysis.grid.Grid.last_steps`); ``None``: the last step any run of the
            benchmark reached.
    """
    report = Coverage(duplicates_dropped=int(evals.attrs.get("duplicates_dropped", 0)),
                      conflicting_duplicates=int(evals.attrs.get("conflicting_duplicates", 0)))
    if evals.empty:
        return report
    if grid is not None:
        report.grid_source = "sweep.yaml"
        report.grid_seeds = {Cell(*c): tuple(int(x) for x in seeds) for c, seeds in grid.items()}
    report.n_rows = len(evals)
    if "axes" not in evals:
        evals = evals.assign(axes="")
    runs = (evals.groupby("run_key", sort=True)
            .agg(benchmark=("benchmark", "first"), arch=("arch", "first"), treatment=("treatment", "first"),
                 axes=("axes", "first"), seed=("seed", "first"), last_step=("step", "max"))
            .reset_index())
    report.n_runs = len(runs)
    columns = (runs["run_key"], runs["benchmark"], runs["arch"], runs["treatment"], runs["axes"], runs["seed"])
    report.inconsistent_run_keys = sorted(key for key, b, a, t, x, s in zip(*columns, strict=True)
                                          if key != run_key(b, a, t, int(s), x))

    cells = sorted({Cell(*row) for row in runs[CELL_COLUMNS].itertuples(index=False)})
    report.cells = cells
    seeds_by_cell: dict[Cell, set[int]] = {c: set() for c in cells}
    for row in runs[[*CELL_COLUMNS, "seed"]].itertuples(index=False):
        seeds_by_cell[Cell(row.benchmark, row.arch, row.treatment, row.axes)].add(int(row.seed))

    multi = [c for c in cells if c.arch != SINGLE]
    single = [c for c in cells if c.arch == SINGLE]
    report.has_single_task = bool(single)
    if grid is not None:
        _compare_with_grid(report, seeds_by_cell)
        _evaluation_points(evals, runs, report, last_steps)
        return report
    expected: list[Cell] = []
    if multi:
        seeds = list(range(max(max(seeds_by_cell[c]) for c in multi) + 1))
        report.expected_seeds["multi-task"] = seeds
        benchmarks = sorted({c.benchmark for c in multi}, key=_benchmark_order)
        archs = sorted({c.arch for c in multi})
        treatments = sorted({c.treatment for c in multi})
        axes = sorted({c.axes for c in multi})
        expected += [Cell(b, a, t, x) for b in benchmarks for a in archs for t in treatments for x in axes]
    needed_tasks: list[str] = []
    for benchmark in sorted({c.benchmark for c in multi}, key=_benchmark_order):
        needed_tasks += [t for t in benchmark_tasks(benchmark) if t not in needed_tasks]
    if single:
        seeds = list(range(max(max(seeds_by_cell[c]) for c in single) + 1))
        report.expected_seeds["single-task"] = seeds
        tasks = needed_tasks + sorted({c.benchmark for c in single} - set(needed_tasks))
        treatments = sorted({c.treatment for c in single})
        axes = sorted({c.axes for c in single})
        expected += [Cell(t, SINGLE, tr, x) for t in tasks for tr in treatments for x in axes]
        present_tasks = {c.benchmark for c in single}
        report.missing_single_tasks = [t for t in needed_tasks if t not in present_tasks]
    present = set(cells)
    report.missing_cells = [c for c in expected if c not in present]
    for cell in cells:
        kind = "single-task" if cell.arch == SINGLE else "multi-task"
        lacking = sorted(set(report.expected_seeds.get(kind, [])) - seeds_by_cell[cell])
        if lacking:
            report.missing_seeds[cell] = lacking

    _evaluation_points(evals, runs, report)
    return report


def _compare_with_grid(report: Coverage, seeds_by_cell: dict[Cell, set[int]]) -> None:
    """Missing cells, seeds and whole axis values against the sweep's grid; runs outside it."""
    grid = report.grid_seeds
    for kind, cells in (("multi-task", [c for c in grid if c.arch != SINGLE]),
                        ("single-task", [c for c in grid if c.arch == SINGLE])):
        if cells:
            report.expected_seeds[kind] = sorted({s for c in cells for s in grid[c]})
    report.missing_cells = [c for c in grid if c not in seeds_by_cell]
    for cell, seeds in grid.items():
        lacking = sorted(set(seeds) - seeds_by_cell.get(cell, set()))
        if cell in seeds_by_cell and lacking:
            report.missing_seeds[cell] = lacking
    for cell in sorted(seeds_by_cell):
        extra = sorted(seeds_by_cell[cell] - set(grid.get(cell, ())))
        if extra:
            report.outside_grid[cell] = extra
    multi = [c for c in grid if c.arch != SINGLE]
    for axis in ("treatment", "arch", "benchmark", "axes"):
        for value in dict.fromkeys(getattr(c, axis) for c in multi):
            members = [c for c in multi if getattr(c, axis) == value]
            if value and not any(c in seeds_by_cell for c in members):
                report.missing_axis_values.append((axis, value, len(members)))
    report.missing_single_tasks = [c.benchmark for c in grid if c.arch == SINGLE and c not in seeds_by_cell]


def _benchmark_order(name: str) -> tuple[int, str]:
    order = list(MULTI_TASK_BENCHMARKS)
    return (order.index(name), name) if name in order else (len(order), name)


def _evaluation_points(evals: pd.DataFrame, runs: pd.DataFrame, report: Coverage,
                       last_steps: Mapping[Cell, int] | None = None) -> None:
    """Unfinished runs, holes in the step grid, and missing or unexpected tasks.

    A run is unfinished when its last evaluation is below ``last_steps[cell]`` (the sweep's
    ``total_steps``) where given, else below the last step any run of its benchmark reached.
    """
    tasks_of = {b: benchmark_tasks(b) for b in runs["benchmark"].unique()}
    pairs = zip(evals["benchmark"].to_numpy(), evals["task"].to_numpy(), strict=True)
    in_benchmark = np.fromiter((task in tasks_of[bench] for bench, task in pairs), dtype=bool, count=len(evals))
    if not in_benchmark.all():
        odd = evals.loc[~in_benchmark, ["run_key", "task"]].drop_duplicates().sort_values(["run_key", "task"])
        for key, group in odd.groupby("run_key", sort=True):
            report.unexpected_tasks[key] = list(group["task"])
    valid = evals.loc[in_benchmark, ["run_key", "benchmark", "step"]]
    rows_per_run = valid.groupby("run_key", sort=True).size()
    grids = {b: np.unique(g["step"].to_numpy()) for b, g in valid.groupby("benchmark", sort=False)}
    for row in runs.itertuples(index=False):
        grid = grids.get(row.benchmark)
        if grid is None or len(grid) == 0:
            continue
        end = int(grid[-1])
        cell = Cell(row.benchmark, row.arch, row.treatment, row.axes)
        if last_steps is not None and cell in last_steps:
            end = int(last_steps[cell])
        if int(row.last_step) < end:
            report.unfinished_runs[row.run_key] = (int(row.last_step), end)
        expected_rows = int(np.searchsorted(grid, row.last_step, side="right")) * len(tasks_of[row.benchmark])
        missing = expected_rows - int(rows_per_run.get(row.run_key, 0))
        if missing > 0:
            report.missing_points[row.run_key] = missing
