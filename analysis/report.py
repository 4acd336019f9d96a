"""The files of an analysis: Table 1 and the other tables, the paper's figures, and ``index.md``.

:func:`write_outputs` turns an :class:`~analysis.pipeline.Analysis` into Markdown, CSV and
LaTeX tables, PNG figures and one ``index.md`` page that shows Table 1 and the coverage and
links every output; :func:`analyze` is the whole stage, folder in, files out. Same input,
``reps`` and ``seed`` give byte-identical tables and ``index.md``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow.fs as pafs

from analysis import aggregate, paper, tables
from analysis import figures as plots
from analysis.coverage import SINGLE
from analysis.load import PathLike
from analysis.paper import arch_name
from analysis.pipeline import SCORE_NAMES, Analysis, compute
from analysis.plasticity import INTERVAL_LABEL
from analysis.scores import ScoreMatrix
from mtrl_plasticity.errors import AnalysisError, UserError
from mtrl_plasticity.results import Cell
from orchestrator.storage import file_type, is_uri, kind_of, read_marker


@dataclass
class Output:
    """One file written by :func:`write_outputs`."""

    path: Path
    title: str
    description: str = ""
    kind: str = "figure"  # "figure" or "table"


@dataclass
class Report:
    """What :func:`write_outputs` wrote: ``index.md`` and every file it links."""

    index: Path
    outputs: list[Output]


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
    variants = "".join(f" {label} is {long}." for label, long in result.variants.items() if long != label)
    score = SCORE_NAMES[result.score]
    return (f"Table 1: final aggregate performance {where}{late}: IQM of normalised scores ({score} / best reward) "
            f"over runs x tasks with 95% stratified bootstrap CIs ({result.reps:,} repetitions, seed "
            f"{result.seed}); sweep '{result.sweep}'.{variants}")


def write_outputs(result: Analysis, out_dir: PathLike, figures: bool = True) -> Report:
    """Write every table (and, unless ``figures`` is False, every figure) of ``result`` and the
    ``index.md`` that links them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: list[Output] = []
    caption = table1_caption(result)

    (out / "table1.md").write_text(tables.table1_markdown(result.table1, caption), encoding="utf-8")
    tables.write_csv(result.table1, out / "table1.csv")
    (out / "table1.tex").write_text(tables.table1_latex(result.table1, caption), encoding="utf-8")
    outputs += [Output(out / "table1.md", "Table 1 (Markdown)", kind="table"),
                Output(out / "table1.csv", "Table 1 (CSV, one row per architecture x treatment x benchmark)",
                       kind="table"),
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
    return Report(write_index(result, outputs, out), outputs)


def final_scores_frame(finals: dict[Cell, ScoreMatrix]) -> pd.DataFrame:
    """One row per (run, task): the final score each aggregate was computed from."""
    rows = []
    for cell, matrix in sorted(finals.items()):
        for i, key in enumerate(matrix.run_keys):
            for j, task in enumerate(matrix.tasks):
                rows.append((cell.benchmark, cell.arch, cell.treatment, cell.axes, matrix.seeds[i], key, task,
                             int(matrix.steps[i]), float(matrix.scores[i, j])))
    return pd.DataFrame(rows, columns=["benchmark", "arch", "treatment", "axes", "seed", "run_key", "task", "step",
                                       "score"])


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
        fig = plots.learning_curves_figure(
            result.curve_bands, group, result.single_task,
            title=f"Learning curves: {what} (IQM, 95% CI)", variants=result.variants)
        path = plots.save(fig, out / f"learning_curves_{suffix}.png")
        outputs.append(Output(path, f"Learning curves, {what} (paper Figure {figure_number[suffix]})",
                              "IQM over runs x tasks at each evaluation; shaded: 95% stratified bootstrap CI "
                              f"({result.band_reps} repetitions); dashed: final IQM of single-task PPO on the "
                              "benchmark's tasks, where those runs exist."))
    single_cells = [c for c in result.curve_bands if c.arch == SINGLE]
    if single_cells:
        fig = plots.single_task_curves_figure(result.curve_bands)
        path = plots.save(fig, out / "learning_curves_single_task.png")
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
                fig = plots.plasticity_figure(plasticity, benchmark, group,
                                              title=f"Plasticity on {benchmark}: {what} ({INTERVAL_LABEL})",
                                              variants=result.variants)
                path = plots.save(fig, out / f"plasticity_{benchmark}_{suffix}.png")
                outputs.append(Output(path, f"Plasticity metrics on {benchmark}, {what}"
                                      + (f" (paper Figure {number})" if number else ""),
                                      "Dormant neurons (actor, critic), effective rank of the actor's features, "
                                      "Fisher trace and actor sparsity; mean over the runs measured at each step, "
                                      "shaded: 95% Student-t interval of that mean (none for a single run)."))
    for benchmark in benchmarks:
        fig = plots.profiles_figure(result.profiles, benchmark,
                                    treatments=sorted(treatments, key=paper.treatment_sort_key),
                                    variants=result.variants)
        path = plots.save(fig, out / f"profiles_{benchmark}.png")
        outputs.append(Output(path, f"Performance profiles on {benchmark}",
                              "Fraction of runs x tasks whose final normalised score exceeds tau; shaded: 95% "
                              f"stratified bootstrap CI ({result.band_reps} repetitions)."))
    if result.poi:
        fig = plots.poi_figure(result.poi, expected=result.multi_cells + result.coverage.missing_cells)
        path = plots.save(fig, out / "poi.png")
        outputs.append(Output(path, "Probability of improvement over Dense",
                              "P(treatment > Dense) on final scores, per benchmark and architecture; bars: 95% "
                              f"stratified independent bootstrap CI ({result.reps} repetitions); 0.5 = no difference."))
    return outputs


def output_folder(results_dir: PathLike, out_dir: PathLike | None) -> Path:
    """Where an analysis of ``results_dir`` writes: ``out_dir``, by default ``<results_dir>/analysis``.

    Refuses, before any work, a results folder that is a file or does not exist, and a remote
    results folder without an explicit (local) ``out_dir``.
    """
    text = os.fspath(results_dir)
    found = file_type(text)
    if found == pafs.FileType.File:
        raise AnalysisError(f"results folder {text} is a file, not a folder")
    if found == pafs.FileType.NotFound and not is_uri(text):
        raise AnalysisError(f"results folder {text} {_why_missing(text)}")
    if found not in (pafs.FileType.Directory, pafs.FileType.NotFound):
        raise AnalysisError(f"results folder {text} is {kind_of(os.stat(text).st_mode)}, not a folder")
    try:
        read_marker(text)  # the one rule for a marker; a folder without one (rows from elsewhere) is read
    except UserError as exc:
        raise AnalysisError(str(exc)) from None
    if out_dir is not None:
        return Path(out_dir)
    if is_uri(text):
        raise AnalysisError(f"give an output folder (--out) for the remote results folder {text}")
    return Path(text) / "analysis"


def _why_missing(path: str) -> str:
    """``"does not exist"``, or ``"lies under the file X, ..."`` when a part of ``path`` is a file."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent != os.path.dirname(parent) and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.path.exists(parent) and not os.path.isdir(parent):
        return f"lies under the file {parent}, not in a folder"
    return "does not exist"


def analyze(results_dir: PathLike, out_dir: PathLike | None = None, reps: int = aggregate.DEFAULT_REPS,
            at_step: int | None = None, seed: int = 0, band_reps: int = aggregate.DEFAULT_BAND_REPS,
            paper_compare: bool | None = None, progress: Callable[[str], None] | None = None,
            jobs: int | None = None, figures: bool = True, include_unfinished: bool = False,
            score: str = "return", include_outside_grid: bool = False) -> Path:
    """Turn a results folder into Table 1, the figures and ``index.md``; return the index's path.

    ``out_dir`` defaults to ``<results_dir>/analysis`` (a remote results folder needs an
    explicit local ``out_dir``); ``figures=False`` writes the tables and ``index.md`` only.
    See :func:`compute` for the other arguments.
    """
    out = output_folder(results_dir, out_dir)
    result = compute(results_dir, reps=reps, at_step=at_step, seed=seed, band_reps=band_reps,
                     paper_compare=paper_compare, progress=progress, jobs=jobs,
                     include_unfinished=include_unfinished, score=score, include_outside_grid=include_outside_grid)
    start = time.perf_counter()
    written = write_outputs(result, out, figures=figures)
    result.timings["outputs"] = time.perf_counter() - start
    return written.index


# --- index.md ----------------------------------------------------------------------------------
def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def index_markdown(result: Analysis, outputs: list[Output], out_dir: Path) -> str:
    """The text of ``index.md`` for an analysis whose ``outputs`` are already in ``out_dir``."""
    out = Path(out_dir)
    cov = result.coverage
    lines = [f"# Analysis of sweep `{result.sweep}`", ""]
    n_multi = len(result.multi_cells)
    n_single = len([c for c in result.finals if c.arch == "single"])
    lines += [
        f"- Results folder: `{result.results_dir}`",
        f"- {cov.n_runs:,} runs, {cov.n_rows:,} evaluation rows, {result.n_eval_points} evaluation steps"
        + (f" (last at step {result.last_step:,})" if result.last_step is not None else ""),
        f"- {n_multi} multi-task cells (benchmark x architecture x treatment"
        + (" x axis values" if result.axis_values else "") + f"), {n_single} single-task cells",
        f"- Score: normalised {SCORE_NAMES[result.score]} (`--score {result.score}`)",
        "- Final scores: " + (f"at step {result.at_step:,}" if result.at_step is not None
                               else "each benchmark's last evaluation step; unfinished runs "
                               + ("included at their own last step (marked)" if result.include_unfinished
                                  else "left out")),
        f"- Bootstrap: {result.reps:,} repetitions for tables, {result.band_reps:,} for curve bands and "
        f"profiles, seed {result.seed}",
        f"- Paper comparison: {'yes' if result.paper_compare else 'no'} ({result.paper_reason})",
        "",
    ]

    lines += ["## Coverage", ""]
    issues = cov.lines()
    if issues:
        lines += [f"{len(issues)} finding(s): the aggregates below use only the runs present; nothing is imputed.", ""]
        lines += [f"- {issue}" for issue in issues]
    else:
        seeds = cov.expected_seeds.get("multi-task") or cov.expected_seeds.get("single-task") or []
        lines.append(f"Complete: every cell has seeds {seeds[0]}-{seeds[-1]} and every evaluation point."
                     if seeds else "Complete.")
    if not cov.has_single_task:
        lines += ["", "No single-task PPO runs: the learning curves have no dashed baseline."]
    lines.append("")

    lines += ["## Table 1", "", tables.table1_markdown(result.table1, table1_caption(result)).rstrip(), ""]
    lines.append("Also as [CSV](table1.csv) and [LaTeX](table1.tex).")
    lines.append("")

    lines += ["## Probability of improvement over Dense", ""]
    poi_path = out / "poi.md"
    lines.append(poi_path.read_text(encoding="utf-8").rstrip() if poi_path.exists() else "_none_")
    lines += ["", "Also as [CSV](poi.csv).", ""]

    single_path = out / "single_task.md"
    if single_path.exists():
        lines += ["## Single-task PPO baselines", "", single_path.read_text(encoding="utf-8").rstrip(), "",
                  "Also as [CSV](single_task.csv).", ""]

    lines += ["## Figures", ""]
    for output in outputs:
        if output.kind != "figure":
            continue
        rel = _rel(output.path, out)
        lines += [f"### {output.title}", "", f"![{output.title}]({rel})", ""]
        if output.description:
            lines += [output.description, ""]

    lines += ["## Files", ""]
    for output in outputs:
        lines.append(f"- [{_rel(output.path, out)}]({_rel(output.path, out)}): {output.title}")
    lines += ["", "## Statistics", "",
              "- Normalised score: raw evaluation return / best achievable reward of the task (paper Table 3), "
              "recomputed from `return_mean` (`--score discounted`: `discounted_return_mean`, each episode's "
              "return discounted with its trial's gamma, over the same best reward; an optimal agent that needs "
              "k steps scores gamma^(k-1) there).",
              "- Final score: the score at the table's step (each benchmark's last evaluation step, or "
              "`--at-step`); runs that stopped earlier are left out unless `--include-unfinished` (then scored at "
              "their own last evaluation and marked), and runs without a complete, non-NaN evaluation there are "
              "left out; all are listed under Coverage.",
              "- IQM: 25% trimmed mean over all runs x tasks of a cell; CIs: rliable's stratified percentile "
              "bootstrap (runs resampled within each task), seeded, 95%.",
              "- Probability of improvement: P(X > Dense) per task (ties count 1/2) averaged over tasks, with "
              "rliable's stratified independent bootstrap.",
              "- Plasticity curves: mean over runs with a 95% Student-t interval (mean +- t(0.975, n-1) sd / sqrt(n)); "
              "rows where a metric is null are skipped.",
              ""]
    archs = sorted({arch_name(c.arch) for c in result.multi_cells})
    if archs:
        lines.append(f"Architectures: {', '.join(archs)}.")
        lines.append("")
    return "\n".join(lines)


def write_index(result: Analysis, outputs: list[Output], out_dir: Path) -> Path:
    """Write ``index.md`` into ``out_dir`` and return its path."""
    path = Path(out_dir) / "index.md"
    path.write_text(index_markdown(result, outputs, out_dir), encoding="utf-8")
    return path
