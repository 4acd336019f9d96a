"""``index.md``: one page that shows Table 1 and the coverage, and links every output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analysis import tables
from analysis.paper import arch_name

if TYPE_CHECKING:  # pragma: no cover
    from analysis.pipeline import Analysis


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def index_markdown(result: "Analysis", out_dir: Path) -> str:
    """The text of ``index.md`` for an analysis whose outputs are already in ``out_dir``."""
    from analysis.pipeline import table1_caption

    out = Path(out_dir)
    cov = result.coverage
    lines = [f"# Analysis of sweep `{result.sweep}`", ""]
    n_multi = len(result.multi_cells)
    n_single = len([c for c in result.finals if c.arch == "single"])
    lines += [
        f"- Results folder: `{result.results_dir}`",
        f"- {cov.n_runs:,} runs, {cov.n_rows:,} evaluation rows, {result.n_eval_points} evaluation steps"
        + (f" (last at step {result.last_step:,})" if result.last_step is not None else ""),
        f"- {n_multi} multi-task cells (benchmark x architecture x treatment), {n_single} single-task cells",
        f"- Final scores: " + (f"at step {result.at_step:,}" if result.at_step is not None
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
    for output in result.outputs:
        if output.kind != "figure":
            continue
        rel = _rel(output.path, out)
        lines += [f"### {output.title}", "", f"![{output.title}]({rel})", ""]
        if output.description:
            lines += [output.description, ""]

    lines += ["## Files", ""]
    for output in result.outputs:
        lines.append(f"- [{_rel(output.path, out)}]({_rel(output.path, out)}): {output.title}")
    lines += ["", "## Statistics", "",
              "- Normalised score: raw evaluation return / best achievable reward of the task (paper Table 3), "
              "recomputed from `return_mean`.",
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


def write_index(result: "Analysis", out_dir: Path) -> Path:
    """Write ``index.md`` into ``out_dir`` and return its path."""
    path = Path(out_dir) / "index.md"
    path.write_text(index_markdown(result, out_dir), encoding="utf-8")
    return path
