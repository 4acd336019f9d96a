"""``compute``: a results folder in, every table's and figure's numbers out, nothing written.

The stages, each a function below that hands its result to the next::

    read_sweep (sweep.yaml, once)        -> SweepInfo: meta, grid, plugins imported
    score_runs (evals, coverage)         -> Scores: curves, final scores, coverage findings
    table1 (rliable IQM + CIs)           -> Table1
    single_task_baselines                -> SingleTask
    improvement_and_bands (P(X > Dense), performance profiles, learning-curve bands)
    plasticity (train rows)              -> plasticity curves

:class:`Analysis` holds them all; :mod:`analysis.report` turns it into files. Same input,
``reps`` and ``seed`` give the same numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import aggregate, paper, tables
from analysis.aggregate import Band, Interval
from analysis.coverage import SINGLE, Coverage, coverage
from analysis.grid import SweepInfo, read_sweep
from analysis.load import PathLike, load_evals, load_train
from analysis.plasticity import PLASTICITY_METRICS, plasticity_curves
from analysis.scores import (
    SCORES,
    CurveMatrix,
    ScoreMatrix,
    add_scores,
    final_from_curves,
    score_column,
    score_curves,
    single_task_baseline,
    single_task_key,
)
from mtrl_plasticity.errors import AnalysisError
from mtrl_plasticity.results import Cell

SCORE_COLUMNS = ("return_mean", "discounted_return_mean", "normalised_return_mean")
"""Evaluation columns the analysis reads besides the identity columns (a narrower read is faster)."""
SCORE_NAMES = {"return": "undiscounted returns", "discounted": "discounted returns (each trial's gamma)"}
"""What the normalised score of each of :data:`analysis.scores.SCORES` is made of, for captions."""


@dataclass
class Analysis:
    """Everything :func:`compute` found (also handy in a notebook)."""

    results_dir: str
    sweep: str
    reps: int
    band_reps: int
    seed: int
    at_step: int | None
    include_unfinished: bool
    coverage: Coverage
    finals: dict[Cell, ScoreMatrix]
    curves: dict[Cell, CurveMatrix]
    table1: pd.DataFrame
    table1_estimates: dict[Cell, Interval]
    paper_compare: bool
    paper_reason: str
    poi: dict[Cell, Interval]
    profiles: dict[Cell, Band]
    curve_bands: dict[Cell, Band]
    single_task: dict[str, Interval]
    single_task_runs: dict[str, int]
    single_task_per_task: dict[str, tuple[Interval, int]]
    plasticity: pd.DataFrame
    last_step: int | None
    n_eval_points: int
    table_steps: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Benchmark -> the step(s) Table 1 reads its cells at (``at_step``, the sweep's
    ``total_steps``, or else the benchmark's last evaluation step)."""
    expected_treatments: list[str] = field(default_factory=list)
    """Multi-task treatment labels of the sweep's grid (or of the rows, without ``sweep.yaml``)."""
    score: str = "return"
    """Which score the tables and figures aggregate (:data:`analysis.scores.SCORES`)."""
    include_outside_grid: bool = False
    """Whether runs outside the sweep's latest grid were scored (default: left out)."""
    variants: dict[str, str] = field(default_factory=dict)
    """Treatment label -> long form, for the variants of the sweep's grid (captions, legends)."""
    axis_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Axes label -> ``{field: value}`` of the grid axes (empty without axes)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""

    @property
    def multi_cells(self) -> list[Cell]:
        return [c for c in self.finals if c.arch != SINGLE]


# --- stages ---------------------------------------------------------------------------------------
@dataclass
class Scores:
    """What :func:`score_runs` found in the evaluation rows."""

    sweep: str
    coverage: Coverage
    curves: dict[Cell, CurveMatrix]
    finals: dict[Cell, ScoreMatrix]
    eval_steps: np.ndarray
    """The evaluation steps of the multi-task runs (of all runs when there are none), ascending."""
    axis_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Axes label -> ``{field: value}`` (the grid's order first, then any others in the rows)."""
    run_keys: frozenset[str] = frozenset()
    """The runs scored (after leaving out those outside the grid)."""

    @property
    def last_step(self) -> int | None:
        return int(self.eval_steps[-1]) if len(self.eval_steps) else None

    def multi(self) -> dict[Cell, np.ndarray]:
        """The final-score matrices of the multi-task cells."""
        return {c: m.scores for c, m in self.finals.items() if c.arch != SINGLE}


def score_runs(results_dir: PathLike, info: SweepInfo, at_step: int | None, include_unfinished: bool,
               score: str = "return", include_outside_grid: bool = False) -> Scores:
    """Evaluation rows -> normalised scores, their coverage of the grid, curves and final scores.

    Runs outside the sweep's latest grid (values a grown sweep dropped) are reported by the
    coverage and left out of the scores unless ``include_outside_grid``.
    """
    column = score_column(score)
    evals = load_evals(results_dir, columns=SCORE_COLUMNS)
    if evals.empty:
        raise AnalysisError(f"no evaluation rows under {os.fspath(results_dir)}/metrics/evals")
    if score != "return" and evals[column].isna().all():
        raise AnalysisError(f"no evaluation row has {column} (rows of schema version 1 predate it); "
                            f"use --score return")
    evals = add_scores(evals, score=score)
    sweep = str(info.meta.get("name") or _most_common(evals["sweep"]) or Path(os.fspath(results_dir)).name)
    grid = info.grid
    report = coverage(evals, grid.seeds if grid is not None else None, grid.last_steps if grid is not None else None)
    if grid is not None and report.outside_grid and not include_outside_grid:
        evals = evals.loc[evals["run_key"].isin(grid.run_keys)]
        report.outside_grid_left_out = True
    if info.problem:
        report.notes.append(f"sweep.yaml is not a valid sweep spec ({info.problem}): the expected cells and "
                            "seeds are inferred from the rows")
    mismatches = evals.attrs.get("normalisation_mismatches", 0)
    if mismatches:
        report.notes.append(
            f"{mismatches} row(s) store a normalised_return_mean that differs from return_mean / best reward "
            f"(Table 3) by up to {evals.attrs['normalisation_max_diff']:.3g}; the recomputed value is used")
    if report.duplicates_dropped:
        report.notes.append(f"{report.duplicates_dropped} duplicate evaluation row(s) dropped "
                            f"(same run_key, step, task)")
    curves = score_curves(evals)
    finals = final_from_curves(curves, at_step, include_unfinished, grid.last_steps if grid is not None else None)
    multi_steps = evals.loc[evals["arch"] != SINGLE, "step"]
    eval_steps = np.unique(multi_steps.to_numpy() if len(multi_steps) else evals["step"].to_numpy())
    if at_step is not None and not any(m.scores.shape[0] for m in finals.values()):
        raise AnalysisError(f"no run has a complete evaluation at step {at_step:,}; "
                            f"evaluation steps run from {int(eval_steps[0]):,} to {int(eval_steps[-1]):,}")
    for cell, matrix in sorted(finals.items()):
        for key, reason in matrix.excluded:
            report.notes.append(f"run {key} left out of the final scores of {cell}: {reason}")
    axis_values = dict(grid.axis_values) if grid is not None else {}
    axis_values.update({k: v for k, v in _axis_values(evals).items() if k not in axis_values})
    return Scores(sweep, report, curves, finals, eval_steps, axis_values, frozenset(evals["run_key"]))


def _axis_values(evals: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Axes label -> ``{field: value}`` of the rows (the loader's ``axis_columns``)."""
    fields = list(evals.attrs.get("axis_columns", []))
    if not fields:
        return {}
    first = evals.loc[evals["axes"] != ""].drop_duplicates("axes")
    return {row["axes"]: {f: _plain(row[f]) for f in fields if not pd.isna(row[f])} for _, row in first.iterrows()}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass
class Table1:
    """Table 1 and how it was made."""

    frame: pd.DataFrame
    estimates: dict[Cell, Interval]
    paper_compare: bool
    paper_reason: str
    table_steps: dict[str, tuple[int, ...]]


def table1(scores: Scores, info: SweepInfo, reps: int, seed: int, jobs: int | None, at_step: int | None,
           paper_compare: bool | None, score: str = "return") -> Table1:
    """IQM with stratified bootstrap CIs per multi-task cell, beside the paper's when comparable.

    The paper's Table 1 is of undiscounted returns: with ``score="discounted"`` it is not
    compared unless asked, and the reason says which score each side uses.
    """
    multi = scores.multi()
    finals, report = scores.finals, scores.coverage
    estimates = aggregate.iqm_with_ci(multi, reps=reps, seed=seed, jobs=jobs)
    compare, reason = paper.follows_draft_protocol(info.meta, scores.last_step, [int(s) for s in scores.eval_steps],
                                                   at_step)
    if score != "return":
        compare, reason = False, "this table scores discounted returns, the paper's Table 1 undiscounted ones"
    if paper_compare is not None:
        compare, reason = paper_compare, ("requested" if paper_compare else "turned off") + " on the command line"
    reason += f"; the paper's numbers are of undiscounted returns, this table's of {SCORE_NAMES[score]}"
    n_runs, n_tasks = tables.counts({c: finals[c] for c in multi})
    for cell in report.missing_cells:  # grid cells without runs still get their (missing) row
        if cell.arch != SINGLE:
            n_runs.setdefault(cell, 0)
    expected = report.expected_seeds.get("multi-task")
    n_unfinished = {c: len(finals[c].unfinished) for c in multi}
    frame = tables.table1_frame(estimates, n_runs, n_tasks, expected_runs=len(expected) if expected else None,
                                paper=compare, n_unfinished=n_unfinished, axis_values=scores.axis_values)
    table_steps: dict[str, tuple[int, ...]] = {}
    for cell in multi:
        step = finals[cell].table_step
        if step is not None:
            table_steps[cell.benchmark] = tuple(sorted({*table_steps.get(cell.benchmark, ()), step}))
    return Table1(frame, estimates, compare, reason, table_steps)


@dataclass
class SingleTask:
    """Single-task PPO: per benchmark (its tasks together) and per task."""

    per_benchmark: dict[str, Interval]
    runs_per_benchmark: dict[str, int]
    per_task: dict[str, tuple[Interval, int]]


def single_task_baselines(scores: Scores, reps: int, seed: int, jobs: int | None) -> SingleTask:
    """IQMs of the single-task dense runs, per task and per multi-task benchmark of the sweep (each
    keyed by :func:`analysis.figures.single_task_key`: with grid axes, one per combination of values)."""
    finals, report = scores.finals, scores.coverage
    single_cells = {c: m for c, m in finals.items() if c.arch == SINGLE and c.treatment == "dense"}
    per_task = aggregate.iqm_with_ci({single_task_key(c.benchmark, c.axes): m.scores for c, m in single_cells.items()},
                                     reps=reps, seed=seed, jobs=jobs)
    per_task_n = {single_task_key(c.benchmark, c.axes): int(m.scores.shape[0]) for c, m in single_cells.items()}
    baselines: dict[str, ScoreMatrix] = {}
    for benchmark, axes in sorted({(c.benchmark, c.axes) for c in scores.multi()}):
        base = single_task_baseline(finals, benchmark, axes=axes)
        if base is None:
            continue
        key_of = single_task_key(benchmark, axes)
        reported = {e for task in base.tasks for e in finals[Cell(task, SINGLE, "dense", axes)].excluded}
        report.notes += [f"run {key} left out of the single-task baseline of {key_of}: {reason}"
                         for key, reason in base.excluded if (key, reason) not in reported]
        if base.scores.shape[0]:
            baselines[key_of] = base
    per_benchmark = aggregate.iqm_with_ci({b: m.scores for b, m in baselines.items()}, reps=reps, seed=seed,
                                          jobs=jobs)
    return SingleTask(per_benchmark, {b: int(m.scores.shape[0]) for b, m in baselines.items()},
                      {t: (v, per_task_n[t]) for t, v in per_task.items()})


def improvement_over_dense(scores: Scores, reps: int, seed: int, jobs: int | None) -> dict[Cell, Interval]:
    """P(treatment > Dense) with CIs, for every treated cell whose architecture has a Dense cell."""
    multi = scores.multi()
    pairs = {}
    for cell, matrix in multi.items():
        dense = multi.get(Cell(cell.benchmark, cell.arch, "dense", cell.axes))
        if cell.treatment != "dense" and dense is not None and dense.shape[0] and matrix.shape[0]:
            pairs[cell] = (matrix, dense)
    return aggregate.poi_with_ci(pairs, reps=reps, seed=seed, jobs=jobs)


def plasticity(results_dir: PathLike, run_keys: frozenset[str] | None = None) -> pd.DataFrame:
    """Mean plasticity metrics over runs with their intervals, per cell and step (train rows of
    ``run_keys``, default all)."""
    train = load_train(results_dir, columns=[m.column for m in PLASTICITY_METRICS])
    if run_keys is not None:
        train = train.loc[train["run_key"].isin(run_keys)]
    return plasticity_curves(train)


# --- all of it ------------------------------------------------------------------------------------
STAGES = 6
"""How many times :func:`compute` calls ``progress`` (once before each stage): the length of a progress bar."""


def compute(results_dir: PathLike, reps: int = aggregate.DEFAULT_REPS, at_step: int | None = None, seed: int = 0,
            band_reps: int = aggregate.DEFAULT_BAND_REPS, paper_compare: bool | None = None,
            progress: Callable[[str], None] | None = None, jobs: int | None = None,
            include_unfinished: bool = False, score: str = "return", include_outside_grid: bool = False) -> Analysis:
    """Load a results folder and compute every table and curve, without writing anything.

    Args:
        results_dir: a results folder (``metrics/evals``, optionally ``metrics/train`` and
            ``sweep.yaml``).
        reps: bootstrap repetitions for Table 1 and the probabilities of improvement.
        at_step: take final scores at this step instead of each benchmark's last evaluation step.
        seed: seed of the bootstrap (NumPy's global RNG, restored afterwards).
        band_reps: bootstrap repetitions for learning-curve bands and performance profiles.
        paper_compare: put the draft paper's numbers beside ours; ``None`` decides from the
            sweep (:func:`analysis.paper.follows_draft_protocol`).
        progress: called with a short message before each stage.
        jobs: worker processes for the bootstraps (``None``: one per CPU, at most 8); the
            numbers do not depend on it.
        include_unfinished: score runs whose last evaluation is below the table's step at
            that last step (marked in Table 1) instead of leaving them out.
        score: ``"return"`` (undiscounted, the paper's) or ``"discounted"``: the evaluation
            returns discounted with each trial's gamma, normalised by the same best rewards.
        include_outside_grid: also score runs that the sweep's latest grid leaves out (a grown
            sweep's dropped values).

    Raises:
        AnalysisError: no evaluation rows, unreadable files, unknown schema versions, or no
            run evaluated at ``at_step``.
    """
    if reps < 1 or band_reps < 1:
        raise AnalysisError(f"--reps and --band-reps must be positive, got {reps} and {band_reps}")
    if at_step is not None and at_step < 0:
        raise AnalysisError(f"--at-step must be >= 0, got {at_step}")
    if seed < 0:
        raise AnalysisError(f"--seed must be >= 0, got {seed}")
    if jobs is not None and jobs < 1:
        raise AnalysisError(f"--jobs must be >= 1, got {jobs}")
    if score not in SCORES:
        raise AnalysisError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    say("loading evaluations")
    info = read_sweep(results_dir)
    scores = score_runs(results_dir, info, at_step, include_unfinished, score, include_outside_grid)
    lap("scores")
    say(f"Table 1: IQM with {reps} bootstrap repetitions")
    table = table1(scores, info, reps, seed, jobs, at_step, paper_compare, score)
    lap("table1")
    say("single-task baselines")
    single = single_task_baselines(scores, reps, seed, jobs)
    lap("single_task")
    say(f"probability of improvement over Dense ({reps} repetitions)")
    poi = improvement_over_dense(scores, reps, seed, jobs)
    lap("poi")
    say(f"performance profiles and learning curves ({band_reps} repetitions)")
    profiles = aggregate.performance_profiles(scores.multi(), reps=band_reps, seed=seed, jobs=jobs)
    lap("profiles")
    bands = aggregate.iqm_curves_with_ci({c: (m.steps, m.scores) for c, m in scores.curves.items()},
                                         reps=band_reps, seed=seed, jobs=jobs)
    lap("curves")
    say("loading training rows")
    curves_of_plasticity = plasticity(results_dir, scores.run_keys)
    lap("plasticity")

    grid_cells = info.grid.seeds if info.grid is not None else {}
    return Analysis(
        results_dir=os.fspath(results_dir), sweep=scores.sweep, reps=reps, band_reps=band_reps, seed=seed,
        at_step=at_step, include_unfinished=include_unfinished, coverage=scores.coverage, finals=scores.finals,
        curves=scores.curves, table1=table.frame, table1_estimates=table.estimates, paper_compare=table.paper_compare,
        paper_reason=table.paper_reason, poi=poi, profiles=profiles, curve_bands=bands,
        single_task=single.per_benchmark, single_task_runs=single.runs_per_benchmark,
        single_task_per_task=single.per_task, plasticity=curves_of_plasticity, last_step=scores.last_step,
        n_eval_points=len(scores.eval_steps), table_steps=table.table_steps, timings=timings,
        expected_treatments=list(dict.fromkeys([c.treatment for c in grid_cells if c.arch != SINGLE]
                                               + sorted({c.treatment for c in scores.multi()}))),
        score=score, include_outside_grid=include_outside_grid,
        variants=dict(info.grid.variants) if info.grid is not None else {}, axis_values=scores.axis_values)


def _most_common(series: pd.Series) -> str | None:
    values = series.dropna()
    return str(values.mode().iloc[0]) if len(values) else None
