"""``analyze``: a results folder in, the paper's tables, figures and an ``index.md`` out.

The stages, each a function of the modules beside this one::

    load_evals -> add_scores -> coverage -> score_curves -> final_from_curves
      -> iqm_with_ci (Table 1) / poi_with_ci / performance_profiles / iqm_curves_with_ci
    load_train -> plasticity_curves
      -> tables (Markdown, CSV, LaTeX) + figures (PNG) + report (index.md)

Same input, ``reps`` and ``seed`` give byte-identical tables and ``index.md``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis import aggregate, figures, paper, tables
from analysis.aggregate import Band, Interval
from analysis.coverage import SINGLE, Cell, Coverage, coverage
from analysis.errors import AnalysisError
from analysis.grid import read_sweep_grid
from analysis.load import PathLike, load_evals, load_train, read_sweep_meta
from analysis.plasticity import INTERVAL_LABEL, PLASTICITY_METRICS, plasticity_curves
from analysis.scores import CurveMatrix, ScoreMatrix, add_scores, final_from_curves, score_curves, single_task_baseline


SCORE_COLUMNS = ("return_mean", "normalised_return_mean")
"""Evaluation columns the analysis reads besides the identity columns (a narrower read is faster)."""


@dataclass
class Output:
    """One file written by :func:`analyze`."""

    path: Path
    title: str
    description: str = ""
    kind: str = "figure"  # "figure" or "table"


@dataclass
class Analysis:
    """Everything :func:`analyze` computed (also handy in a notebook: see :func:`compute`)."""

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
    """Multi-task treatments of the sweep's grid (or of the rows, without ``sweep.yaml``)."""
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)

    @property
    def multi_cells(self) -> list[Cell]:
        return [c for c in self.finals if c.arch != SINGLE]


def load_sweep_plugins(meta: dict) -> None:
    """Import the plugins the sweep's ``sweep.yaml`` lists; :class:`AnalysisError` naming one that fails."""
    from mtrl.plugins import load_entry_points, load_plugins
    from orchestrator.errors import UserError

    try:
        load_entry_points()
        if meta.get("plugins"):
            load_plugins(meta["plugins"])
    except UserError as exc:
        raise AnalysisError(f"{exc} (sweep.yaml lists it: the analysis needs its tasks and names)") from None


def compute(results_dir: PathLike, reps: int = aggregate.DEFAULT_REPS, at_step: int | None = None, seed: int = 0,
            band_reps: int = aggregate.DEFAULT_BAND_REPS, paper_compare: bool | None = None,
            progress: Callable[[str], None] | None = None, jobs: int | None = None,
            include_unfinished: bool = False) -> Analysis:
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
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    say("loading evaluations")
    meta = read_sweep_meta(results_dir)
    load_sweep_plugins(meta)  # their tasks normalise scores, their names label tables and figures
    evals = load_evals(results_dir, columns=SCORE_COLUMNS)
    if evals.empty:
        raise AnalysisError(f"no evaluation rows under {os.fspath(results_dir)}/metrics/evals")
    evals = add_scores(evals)
    sweep = str(meta.get("name") or _most_common(evals["sweep"]) or Path(os.fspath(results_dir)).name)
    grid, grid_problem = read_sweep_grid(results_dir)
    report = coverage(evals, grid.seeds if grid is not None else None, grid.last_steps if grid is not None else None)
    if grid_problem:
        report.notes.append(f"sweep.yaml is not a valid sweep spec ({grid_problem}): the expected cells and "
                            "seeds are inferred from the rows")
    mismatches = evals.attrs.get("normalisation_mismatches", 0)
    if mismatches:
        report.notes.append(
            f"{mismatches} row(s) store a normalised_return_mean that differs from return_mean / best reward "
            f"(Table 3) by up to {evals.attrs['normalisation_max_diff']:.3g}; the recomputed value is used")
    if report.duplicates_dropped:
        report.notes.append(f"{report.duplicates_dropped} duplicate evaluation row(s) dropped (same run_key, step, task)")
    lap("load")

    say("building score matrices")
    curves = score_curves(evals)
    finals = final_from_curves(curves, at_step, include_unfinished, grid.last_steps if grid is not None else None)
    multi_steps = evals.loc[evals["arch"] != SINGLE, "step"]
    all_steps = np.unique(multi_steps.to_numpy() if len(multi_steps) else evals["step"].to_numpy())
    last_step = int(all_steps[-1]) if len(all_steps) else None
    del evals
    if at_step is not None and not any(m.scores.shape[0] for m in finals.values()):
        raise AnalysisError(f"no run has a complete evaluation at step {at_step:,}; "
                            f"evaluation steps run from {int(all_steps[0]):,} to {last_step:,}")
    for cell, matrix in sorted(finals.items()):
        for key, reason in matrix.excluded:
            report.notes.append(f"run {key} left out of the final scores of {cell}: {reason}")
    lap("scores")

    say(f"Table 1: IQM with {reps} bootstrap repetitions")
    multi = {c: m.scores for c, m in finals.items() if c.arch != SINGLE}
    estimates = aggregate.iqm_with_ci(multi, reps=reps, seed=seed, jobs=jobs)
    compare, reason = paper.follows_draft_protocol(meta, last_step, [int(s) for s in all_steps], at_step)
    if paper_compare is not None:
        compare, reason = paper_compare, ("requested" if paper_compare else "turned off") + " on the command line"
    n_runs, n_tasks = tables.counts({c: finals[c] for c in multi})
    for cell in report.missing_cells:  # grid cells without runs still get their (missing) row
        if cell.arch != SINGLE:
            n_runs.setdefault(cell, 0)
    expected = report.expected_seeds.get("multi-task")
    n_unfinished = {c: len(finals[c].unfinished) for c in multi}
    table1 = tables.table1_frame(estimates, n_runs, n_tasks, expected_runs=len(expected) if expected else None,
                                 paper=compare, n_unfinished=n_unfinished)
    steps_of_table: dict[str, tuple[int, ...]] = {}
    for cell in multi:
        if finals[cell].table_step is not None:
            steps_of_table[cell.benchmark] = tuple(sorted({*steps_of_table.get(cell.benchmark, ()),
                                                           finals[cell].table_step}))
    lap("table1")

    say("single-task baselines")
    single_cells = {c: m for c, m in finals.items() if c.arch == SINGLE and c.treatment == "dense"}
    per_task = aggregate.iqm_with_ci({c.benchmark: m.scores for c, m in single_cells.items()}, reps=reps,
                                     seed=seed, jobs=jobs)
    per_task_n = {c.benchmark: int(m.scores.shape[0]) for c, m in single_cells.items()}
    baselines: dict[str, ScoreMatrix] = {}
    for benchmark in sorted({c.benchmark for c in multi}):
        base = single_task_baseline(finals, benchmark)
        if base is None:
            continue
        reported = {e for task in base.tasks for e in finals[Cell(task, SINGLE, "dense")].excluded}
        report.notes += [f"run {key} left out of the single-task baseline of {benchmark}: {reason}"
                         for key, reason in base.excluded if (key, reason) not in reported]
        if base.scores.shape[0]:
            baselines[benchmark] = base
    single = aggregate.iqm_with_ci({b: m.scores for b, m in baselines.items()}, reps=reps, seed=seed, jobs=jobs)
    lap("single_task")

    say(f"probability of improvement over Dense ({reps} repetitions)")
    pairs = {}
    for cell, scores in multi.items():
        dense = multi.get(Cell(cell.benchmark, cell.arch, "dense"))
        if cell.treatment != "dense" and dense is not None and dense.shape[0] and scores.shape[0]:
            pairs[cell] = (scores, dense)
    poi = aggregate.poi_with_ci(pairs, reps=reps, seed=seed, jobs=jobs)
    lap("poi")

    say(f"performance profiles and learning curves ({band_reps} repetitions)")
    profiles = aggregate.performance_profiles(multi, reps=band_reps, seed=seed, jobs=jobs)
    lap("profiles")
    bands = aggregate.iqm_curves_with_ci({c: (m.steps, m.scores) for c, m in curves.items()},
                                         reps=band_reps, seed=seed, jobs=jobs)
    lap("curves")

    say("loading training rows")
    train = load_train(results_dir, columns=[m.column for m in PLASTICITY_METRICS])
    plasticity = plasticity_curves(train)
    del train
    lap("plasticity")

    return Analysis(
        results_dir=os.fspath(results_dir), sweep=sweep, reps=reps, band_reps=band_reps, seed=seed, at_step=at_step,
        coverage=report, finals=finals, curves=curves, table1=table1, table1_estimates=estimates,
        paper_compare=compare, paper_reason=reason, poi=poi, profiles=profiles, curve_bands=bands,
        single_task=single, single_task_runs={b: int(m.scores.shape[0]) for b, m in baselines.items()},
        single_task_per_task={t: (v, per_task_n[t]) for t, v in per_task.items()}, plasticity=plasticity,
        last_step=last_step, n_eval_points=len(all_steps), timings=timings, include_unfinished=include_unfinished,
        table_steps=steps_of_table,
        expected_treatments=list(dict.fromkeys(
            [c.treatment for c in (grid.seeds if grid is not None else {}) if c.arch != SINGLE]
            + sorted({c.treatment for c in multi}))))


def _most_common(series: pd.Series) -> str | None:
    values = series.dropna()
    return str(values.mode().iloc[0]) if len(values) else None


def table1_caption(result: Analysis) -> str:
    steps = sorted({s for values in result.table_steps.values() for s in values})
    if result.at_step is not None:
        where = f"at step {result.at_step:,}"
    elif len(steps) == 1:
        where = f"at step {steps[0]:,}"
    elif steps:
        where = "at each benchmark's last evaluation (" + "; ".join(
            f"{b}: step {' or '.join(f'{s:,}' for s in values)}"
            for b, values in sorted(result.table_steps.items(), key=lambda kv: tables._benchmark_key(kv[0]))) + ")"
    else:
        where = "at each run's last evaluation"
    late = ("" if result.at_step is not None
            else "; runs that stopped earlier are scored at their own last evaluation and marked"
            if result.include_unfinished else "; runs that stopped earlier are left out")
    return (f"Table 1: final aggregate performance {where}{late}: IQM of normalised scores over runs x tasks with "
            f"95% stratified bootstrap CIs ({result.reps:,} repetitions, seed {result.seed}); sweep '{result.sweep}'.")


def write_outputs(result: Analysis, out_dir: PathLike, figures: bool = True) -> Path:
    """Write every table (and, unless ``figures`` is False, every figure) of ``result`` and the
    ``index.md`` that links them; return the path of ``index.md``."""
    from analysis import report as report_module

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: list[Output] = []
    caption = table1_caption(result)

    (out / "table1.md").write_text(tables.table1_markdown(result.table1, caption), encoding="utf-8")
    tables.write_csv(result.table1, out / "table1.csv")
    (out / "table1.tex").write_text(tables.table1_latex(result.table1, caption), encoding="utf-8")
    outputs += [Output(out / "table1.md", "Table 1 (Markdown)", kind="table"),
                Output(out / "table1.csv", "Table 1 (CSV, one row per architecture x treatment x benchmark)", kind="table"),
                Output(out / "table1.tex", "Table 1 (LaTeX, booktabs + xcolor)", kind="table")]

    poi_frame = tables.poi_frame(result.poi, {c: m.scores.shape[0] for c, m in result.finals.items()})
    tables.write_csv(poi_frame, out / "poi.csv")
    (out / "poi.md").write_text(tables.poi_markdown(poi_frame), encoding="utf-8")
    outputs += [Output(out / "poi.md", "Probability of improvement over Dense (Markdown)", kind="table"),
                Output(out / "poi.csv", "Probability of improvement over Dense (CSV)", kind="table")]

    single_frame = tables.single_task_frame(result.single_task_per_task,
                                            {b: (v, result.single_task_runs[b]) for b, v in result.single_task.items()})
    if not single_frame.empty:
        tables.write_csv(single_frame, out / "single_task.csv")
        (out / "single_task.md").write_text(tables.single_task_markdown(single_frame), encoding="utf-8")
        outputs += [Output(out / "single_task.md", "Single-task PPO baselines (Markdown)", kind="table"),
                    Output(out / "single_task.csv", "Single-task PPO baselines (CSV)", kind="table")]

    scores = final_scores_frame(result.finals)
    tables.write_csv(scores, out / "final_scores.csv")
    outputs.append(Output(out / "final_scores.csv", "Final normalised score of every run and task (CSV)", kind="table"))

    if figures:
        outputs += _write_figures(result, out)
    result.outputs = outputs
    report_module.write_index(result, out)
    return out / "index.md"


def final_scores_frame(finals: dict[Cell, ScoreMatrix]) -> pd.DataFrame:
    """One row per (run, task): the final score each aggregate was computed from."""
    rows = []
    for cell, matrix in sorted(finals.items()):
        for i, key in enumerate(matrix.run_keys):
            for j, task in enumerate(matrix.tasks):
                rows.append((cell.benchmark, cell.arch, cell.treatment, matrix.seeds[i], key, task,
                             int(matrix.steps[i]), float(matrix.scores[i, j])))
    return pd.DataFrame(rows, columns=["benchmark", "arch", "treatment", "seed", "run_key", "task", "step", "score"])


def _treatment_groups(treatments: set[str]) -> list[tuple[str, list[str]]]:
    """(file suffix, treatments) of the two figure families, paper order."""
    sparsity = [t for t in paper.SPARSITY_TREATMENTS if t in treatments]
    others = sorted(treatments - set(paper.SPARSITY_TREATMENTS), key=paper.treatment_sort_key)
    groups = []
    if sparsity:
        groups.append(("sparsity", sparsity))
    if others:
        groups.append(("interventions", [t for t in ("dense", "gmp95") if t in treatments] + others))
    return groups


def group_title(suffix: str, shown: list[str]) -> str:
    """What a figure of the family ``suffix`` shows, named from ``shown``: the treatments that
    have data in it (a level the data lacks is never named; its panels say "no data")."""
    if suffix == "sparsity":
        levels = [paper.treatment_name(t).removesuffix(" Sparsity") for t in shown if t != "dense"]
        return f"pruning levels {', '.join(levels)}" if levels else "no pruning level with data"
    return "95% pruning vs. other interventions" if "gmp95" in shown else "other interventions"


def _write_figures(result: Analysis, out: Path) -> list[Output]:
    outputs: list[Output] = []
    multi = result.multi_cells
    treatments = set(result.expected_treatments) | {c.treatment for c in multi}
    benchmarks = sorted({c.benchmark for c in multi}, key=tables._benchmark_key)
    figure_number = {"sparsity": "3", "interventions": "4"}
    plasticity_numbers = {"sparsity": {"MT3": "5", "MT5": "6", "MT7": "7"},
                          "interventions": {"MT3": "8", "MT5": "9", "MT7": "10"}}
    with_curves = {c.treatment for c in result.curve_bands if c.arch != SINGLE}
    for suffix, group in _treatment_groups(treatments):
        what = group_title(suffix, [t for t in group if t in with_curves])
        fig = figures.learning_curves_figure(
            result.curve_bands, group, result.single_task,
            title=f"Learning curves: {what} (IQM, 95% CI)")
        path = figures.save(fig, out / f"learning_curves_{suffix}.png")
        outputs.append(Output(path, f"Learning curves, {what} (paper Figure {figure_number[suffix]})",
                              "IQM over runs x tasks at each evaluation; shaded: 95% stratified bootstrap CI "
                              f"({result.band_reps} repetitions); dashed: final IQM of single-task PPO on the "
                              "benchmark's tasks, where those runs exist."))
    single_cells = [c for c in result.curve_bands if c.arch == SINGLE]
    if single_cells:
        fig = figures.single_task_curves_figure(result.curve_bands)
        path = figures.save(fig, out / "learning_curves_single_task.png")
        outputs.append(Output(path, "Learning curves of single-task PPO",
                              "IQM over runs at each evaluation, one panel per task; shaded: 95% stratified "
                              f"bootstrap CI ({result.band_reps} repetitions)."))
    if not result.plasticity.empty:
        plasticity = result.plasticity
        for benchmark in benchmarks:
            measured = set(plasticity.loc[(plasticity["benchmark"] == benchmark) & (plasticity["arch"] != SINGLE),
                                          "treatment"])
            for suffix, group in _treatment_groups(treatments):
                what = group_title(suffix, [t for t in group if t in measured])
                number = plasticity_numbers[suffix].get(benchmark)
                fig = figures.plasticity_figure(plasticity, benchmark, group,
                                                title=f"Plasticity on {benchmark}: {what} ({INTERVAL_LABEL})")
                path = figures.save(fig, out / f"plasticity_{benchmark}_{suffix}.png")
                outputs.append(Output(path, f"Plasticity metrics on {benchmark}, {what}"
                                      + (f" (paper Figure {number})" if number else ""),
                                      "Dormant neurons (actor, critic), effective rank of the actor's features, "
                                      "Fisher trace and actor sparsity; mean over the runs measured at each step, "
                                      "shaded: 95% Student-t interval of that mean (none for a single run)."))
    for benchmark in benchmarks:
        fig = figures.profiles_figure(result.profiles, benchmark,
                                      treatments=sorted(treatments, key=paper.treatment_sort_key))
        path = figures.save(fig, out / f"profiles_{benchmark}.png")
        outputs.append(Output(path, f"Performance profiles on {benchmark}",
                              "Fraction of runs x tasks whose final normalised score exceeds tau; shaded: 95% "
                              f"stratified bootstrap CI ({result.band_reps} repetitions)."))
    if result.poi:
        fig = figures.poi_figure(result.poi, expected=result.multi_cells + result.coverage.missing_cells)
        path = figures.save(fig, out / "poi.png")
        outputs.append(Output(path, "Probability of improvement over Dense",
                              "P(treatment > Dense) on final scores, per benchmark and architecture; bars: 95% "
                              f"stratified independent bootstrap CI ({result.reps} repetitions); 0.5 = no difference."))
    return outputs


def analyze(results_dir: PathLike, out_dir: PathLike | None = None, reps: int = aggregate.DEFAULT_REPS,
            at_step: int | None = None, seed: int = 0, band_reps: int = aggregate.DEFAULT_BAND_REPS,
            paper_compare: bool | None = None, progress: Callable[[str], None] | None = None,
            jobs: int | None = None, figures: bool = True, include_unfinished: bool = False) -> Path:
    """Turn a results folder into Table 1, the figures and ``index.md``; return the index's path.

    ``out_dir`` defaults to ``<results_dir>/analysis`` (a remote results folder needs an
    explicit local ``out_dir``); ``figures=False`` writes the tables and ``index.md`` only.
    See :func:`compute` for the other arguments.
    """
    text = os.fspath(results_dir)
    if out_dir is None:
        if "://" in text:
            raise AnalysisError(f"give an output folder (--out) for the remote results folder {text}")
        out_dir = Path(text) / "analysis"
    if "://" not in text and not Path(text).is_dir():
        raise AnalysisError(f"results folder {text} does not exist")
    result = compute(results_dir, reps=reps, at_step=at_step, seed=seed, band_reps=band_reps,
                     paper_compare=paper_compare, progress=progress, jobs=jobs,
                     include_unfinished=include_unfinished)
    start = time.perf_counter()
    index = write_outputs(result, out_dir, figures=figures)
    result.timings["outputs"] = time.perf_counter() - start
    return index
