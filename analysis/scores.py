"""Normalised scores and the matrices the aggregates are computed on.

Shapes used throughout (rliable's convention):

* a final-score matrix is ``[n_runs, n_tasks]``: one row per run (seed), one column per task
  of the benchmark in the benchmark's order;
* a curve matrix is ``[n_runs, n_tasks, n_steps]`` with NaN where a run has no evaluation.

The normalised score of a task is the raw evaluation return divided by the best reward
achievable on that task (paper Table 3, :data:`mtrl_plasticity.benchmarks.TASKS`), so an optimal agent
scores 1.0 and a failing one 0.0. It is recomputed here from ``return_mean`` rather than read
from ``normalised_return_mean``, and the two are compared.

The discounted score (``score="discounted"``, :data:`SCORES`) divides ``discounted_return_mean``
(each episode's ``sum_t gamma^t r_t``) by the same best reward: MiniGrid rewards only the last
step, so an optimal agent that needs ``k`` steps scores ``gamma^(k-1)`` there, not 1.0.

A cell is ``(benchmark, arch, treatment, axes)``: rows of different grid-axis values are
different cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from analysis.coverage import CELL_COLUMNS, SINGLE, benchmark_tasks
from mtrl_plasticity.benchmarks import TASKS
from mtrl_plasticity.errors import AnalysisError
from mtrl_plasticity.results import Cell, label_display

NORMALISATION_TOLERANCE = 1e-6
"""Largest accepted difference between the stored and the recomputed normalised return."""
SCORES = {"return": "return_mean", "discounted": "discounted_return_mean"}
"""The scores the analysis can aggregate -> the evaluation column each normalises."""



@dataclass
class ScoreMatrix:
    """Final scores of one cell: ``scores[i, j]`` is run ``run_keys[i]`` on task ``tasks[j]``."""

    scores: np.ndarray
    """``[n_runs, n_tasks]`` normalised scores."""
    run_keys: list[str]
    seeds: list[int]
    tasks: tuple[str, ...]
    steps: np.ndarray
    """``[n_runs]``: the evaluation step each run's scores were taken at."""
    excluded: list[tuple[str, str]] = field(default_factory=list)
    """(run_key, reason) for runs of the cell that could not be scored."""
    unfinished: list[str] = field(default_factory=list)
    """Run keys in the matrix scored below the table's step (only with ``include_unfinished``)."""
    table_step: int | None = None
    """The step the cell's final scores are meant to be taken at (its benchmark's last
    evaluation step, or ``at_step``)."""


@dataclass
class CurveMatrix:
    """All evaluation points of one cell: ``scores[i, j, k]`` is run i, task j at ``steps[k]``."""

    scores: np.ndarray
    """``[n_runs, n_tasks, n_steps]`` normalised scores, NaN where a point is missing."""
    steps: np.ndarray
    """``[n_steps]`` evaluation steps, ascending."""
    run_keys: list[str]
    seeds: list[int]
    tasks: tuple[str, ...]
    evaluated: np.ndarray | None = None
    """``[n_runs, n_tasks, n_steps]``: True where an evaluation row exists, even one whose
    return is NaN or null (``None``: wherever ``scores`` is not NaN)."""
    column: str = "return_mean"
    """The evaluation column the scores normalise (:data:`SCORES`)."""

    def rows_present(self) -> np.ndarray:
        """:attr:`evaluated`, or ``~isnan(scores)`` when it is not known."""
        return self.evaluated if self.evaluated is not None else np.logical_not(np.isnan(self.scores))


def score_column(score: str) -> str:
    """The evaluation column of ``score`` (``"return"`` or ``"discounted"``); AnalysisError for another name."""
    if score not in SCORES:
        raise AnalysisError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    return SCORES[score]


def normalise(evals: pd.DataFrame, score: str = "return") -> pd.Series:
    """``return_mean / best_reward(task)`` for every row (paper Table 3); ``score="discounted"``
    normalises ``discounted_return_mean`` by the same best reward.

    Raises:
        AnalysisError: a task that :data:`envs.benchmarks.TASKS` does not know.
    """
    column = score_column(score)
    best = {name: spec.best_reward for name, spec in TASKS.items()}
    unknown = sorted(set(evals["task"].unique()) - set(best))
    if unknown:
        raise AnalysisError(f"unknown task(s) {unknown} in the evaluation rows; known: {', '.join(best)}")
    values = evals[column] if column in evals else pd.Series(np.nan, index=evals.index)
    return (values.astype(float) / evals["task"].map(best).astype(float)).rename("score")


def add_scores(evals: pd.DataFrame, tolerance: float = NORMALISATION_TOLERANCE, score: str = "return") -> pd.DataFrame:
    """A copy of ``evals`` with a ``score`` column (:func:`normalise` of ``score``).

    ``attrs["normalisation_mismatches"]`` counts rows whose stored ``normalised_return_mean``
    differs from the recomputed (undiscounted) score by more than ``tolerance``;
    ``attrs["normalisation_max_diff"]`` is the largest difference. ``attrs["score_column"]``
    names the column the score normalises.
    """
    out = evals.copy()
    out["score"] = normalise(evals, score)
    out.attrs["score_column"] = score_column(score)
    if score == "return" and "normalised_return_mean" in out:
        diff = (out["score"] - out["normalised_return_mean"]).abs()
        out.attrs["normalisation_mismatches"] = int((diff > tolerance).sum())
        out.attrs["normalisation_max_diff"] = float(diff.max()) if diff.notna().any() else 0.0
    return out


def score_curves(evals: pd.DataFrame) -> dict[Cell, CurveMatrix]:
    """Every cell's ``[runs, tasks, steps]`` score array.

    ``evals`` needs ``benchmark``, ``arch``, ``treatment``, ``run_key``, ``seed``, ``step``,
    ``task`` and either ``score`` or ``return_mean`` (``axes``, when present, splits cells by
    their grid-axis values). Runs are ordered by seed, tasks in the benchmark's order; rows for
    tasks outside the benchmark are ignored (the coverage report lists them).
    """
    column = evals.attrs.get("score_column", "return_mean")
    if "score" not in evals:
        evals = evals.assign(score=normalise(evals))
    if "axes" not in evals:
        evals = evals.assign(axes="")
    curves: dict[Cell, CurveMatrix] = {}
    for (benchmark, arch, treatment, axes), group in evals.groupby(CELL_COLUMNS, sort=True):
        tasks = benchmark_tasks(benchmark)
        task_index = group["task"].map({t: i for i, t in enumerate(tasks)})
        keep = task_index.notna().to_numpy()
        if not keep.any():
            continue
        group = group.loc[keep]
        task_codes = task_index.to_numpy()[keep].astype(np.int64)
        runs = group[["run_key", "seed"]].drop_duplicates("run_key").sort_values(["seed", "run_key"])
        run_keys = list(runs["run_key"])
        run_codes = group["run_key"].map({k: i for i, k in enumerate(run_keys)}).to_numpy()
        steps, step_codes = np.unique(group["step"].to_numpy(), return_inverse=True)
        scores = np.full((len(run_keys), len(tasks), len(steps)), np.nan)
        scores[run_codes, task_codes, step_codes] = group["score"].to_numpy(dtype=float)
        evaluated = np.zeros(scores.shape, dtype=bool)
        evaluated[run_codes, task_codes, step_codes] = True
        curves[Cell(benchmark, arch, treatment, axes)] = CurveMatrix(
            scores=scores, steps=steps.astype(np.int64), run_keys=run_keys,
            seeds=[int(s) for s in runs["seed"]], tasks=tasks, evaluated=evaluated, column=column)
    return curves


def table_steps(curves: Mapping[Cell, CurveMatrix]) -> dict[str, int]:
    """Benchmark (or task, for single-task runs) -> its last evaluation step over every run.

    This is the step Table 1 is read at when no ``at_step`` is given; a run whose own last
    evaluation is earlier is unfinished.
    """
    ends: dict[str, int] = {}
    for cell, curve in curves.items():
        rows = curve.rows_present().any(axis=(0, 1))
        if rows.any():
            last = int(curve.steps[np.flatnonzero(rows)[-1]])
            ends[cell.benchmark] = max(ends.get(cell.benchmark, last), last)
    return ends


def final_from_curves(curves: Mapping[Cell, CurveMatrix], at_step: int | None = None,
                      include_unfinished: bool = False,
                      expected_steps: Mapping[Cell, int] | None = None) -> dict[Cell, ScoreMatrix]:
    """Final scores of each cell from its curves (see :func:`final_scores`).

    ``expected_steps`` (cell -> step, e.g. the ``total_steps`` a sweep's grid gives the cell)
    sets the table's step of the cells it names when ``at_step`` is None; other cells use
    their benchmark's last evaluation step (:func:`table_steps`).
    """
    ends = table_steps(curves)
    expected_steps = expected_steps or {}
    finals: dict[Cell, ScoreMatrix] = {}
    for cell, curve in curves.items():
        scored = ~np.isnan(curve.scores)  # [runs, tasks, steps]
        rows_present = curve.rows_present()
        any_row = np.asarray(rows_present.any(axis=1))  # [runs, steps]
        target = at_step if at_step is not None else expected_steps.get(cell, ends.get(cell.benchmark))
        rows, keys, seeds, steps, excluded, unfinished = [], [], [], [], [], []
        for i, key in enumerate(curve.run_keys):
            if not scored[i].any():
                excluded.append((key, f"its {curve.column} is NaN, null or missing at every evaluation"))
                continue
            if at_step is None:
                k = int(np.flatnonzero(any_row[i])[-1])
            else:
                hits = np.flatnonzero(curve.steps == at_step)
                if len(hits) == 0 or not any_row[i, hits[0]]:
                    excluded.append((key, f"no evaluation at step {at_step:,}"))
                    continue
                k = int(hits[0])
            step = int(curve.steps[k])
            nan = [t for j, t in enumerate(curve.tasks) if rows_present[i, j, k] and not scored[i, j, k]]
            if nan:
                excluded.append((key, f"its {curve.column} is NaN or null for {', '.join(nan)} at step {step:,}"))
                continue
            if not scored[i, :, k].all():
                lacking = [t for j, t in enumerate(curve.tasks) if not scored[i, j, k]]
                excluded.append((key, f"no score for {', '.join(lacking)} at step {step:,}"))
                continue
            if target is not None and step < target:
                if not include_unfinished:
                    excluded.append((key, f"unfinished: its last evaluation is at step {step:,}, below the "
                                          f"table's step {target:,} (include it with --include-unfinished)"))
                    continue
                unfinished.append(key)
            rows.append(curve.scores[i, :, k])
            keys.append(key)
            seeds.append(curve.seeds[i])
            steps.append(step)
        matrix = np.vstack(rows) if rows else np.empty((0, len(curve.tasks)))
        finals[cell] = ScoreMatrix(scores=matrix, run_keys=keys, seeds=seeds, tasks=curve.tasks,
                                   steps=np.asarray(steps, dtype=np.int64), excluded=excluded,
                                   unfinished=unfinished, table_step=target)
    return finals


def final_scores(evals: pd.DataFrame, at_step: int | None = None,
                 include_unfinished: bool = False) -> dict[Cell, ScoreMatrix]:
    """The final-score matrix ``[n_runs, n_tasks]`` of every cell.

    The table's step is ``at_step`` when given, else the last evaluation step of the cell's
    benchmark over every run (:func:`table_steps`). Left out of the matrix, and listed in
    :attr:`ScoreMatrix.excluded` with the reason:

    * runs whose ``return_mean`` is NaN or null at every step (or whose files lack the column);
    * runs with no evaluation at ``at_step``;
    * runs whose evaluation at the step they are scored at (``at_step``, or their own last
      one) has a NaN or null return or lacks a task: they are never scored at an earlier step;
    * unfinished runs, whose last evaluation is below the table's step, unless
      ``include_unfinished``: then they are scored at their own last step and listed in
      :attr:`ScoreMatrix.unfinished`.
    """
    return final_from_curves(score_curves(evals), at_step, include_unfinished)


def single_task_key(benchmark: str, axes: str = "") -> str:
    """The key of a benchmark's (or task's) single-task baseline in the analysis's mappings: the
    name, with its grid-axis values when the sweep has axes (``"MT3 [actor_lr=0.001]"``)."""
    return f"{benchmark} [{label_display(axes)}]" if axes else benchmark


def single_task_baseline(finals: Mapping[Cell, ScoreMatrix], benchmark: str,
                         treatment: str = "dense", axes: str = "") -> ScoreMatrix | None:
    """The single-task PPO runs of a benchmark's tasks as one ``[n_seeds, n_tasks]`` matrix.

    Single-task runs have ``arch == "single"`` and the task as their benchmark (and the grid-axis
    values ``axes`` of the multi-task cells they are the baseline of); row ``i`` holds
    the seed-``seeds[i]`` run of every task, for the seeds that every task has. Runs of the
    other seeds are listed in :attr:`ScoreMatrix.excluded`, naming the tasks that lack their
    seed (with no common seed at all the matrix has no rows). ``None`` when some task of the
    benchmark has no scored run.
    """
    tasks = benchmark_tasks(benchmark)
    parts = [part for part in (finals.get(Cell(task, SINGLE, treatment, axes)) for task in tasks)
             if part is not None and len(part.seeds)]
    if len(parts) < len(tasks):
        return None
    common = sorted(set.intersection(*(set(p.seeds) for p in parts)))
    columns, keys = [], []
    for part in parts:
        index = [part.seeds.index(s) for s in common]
        columns.append(part.scores[index, 0])
        keys.append([part.run_keys[i] for i in index])
    dropped = []
    for part in parts:
        for key, seed in zip(part.run_keys, part.seeds, strict=True):
            if seed not in common:
                lacking = [t for t, p in zip(tasks, parts, strict=True) if seed not in p.seeds]
                dropped.append((key, f"seed {seed} is missing for {', '.join(lacking)}, another task of {benchmark}"))
    run_keys = [",".join(r) for r in zip(*keys, strict=True)] if common else []
    late = {k for p in parts for k in p.unfinished}
    return ScoreMatrix(scores=np.column_stack(columns) if common else np.empty((0, len(tasks))), run_keys=run_keys,
                       seeds=common, tasks=tasks,
                       steps=np.asarray([min(int(p.steps[p.seeds.index(s)]) for p in parts) for s in common],
                                        dtype=np.int64),
                       excluded=dropped + [e for p in parts for e in p.excluded],
                       unfinished=[k for k in run_keys if late & set(k.split(","))])
