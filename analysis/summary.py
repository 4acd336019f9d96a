"""The terminal summary of ``mtrl analyze`` (rich)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.paper import arch_name, treatment_name
from analysis.tables import run_count_note
from mtrl_plasticity.results import label_display

if TYPE_CHECKING:  # pragma: no cover
    from analysis.pipeline import Analysis
    from analysis.report import Report


def print_summary(result: Analysis, written: Report, console: Console | None = None, max_issues: int = 15) -> None:
    """Table 1 (IQM and CI per benchmark), the coverage findings, and where the outputs are."""
    console = console or Console()
    frame = result.table1
    if frame.empty:
        console.print("No multi-task runs: Table 1 is empty (single-task results are in index.md).")
    else:
        _print_table1(result, console)
    _print_coverage(result, console, max_issues)
    figures = sum(1 for o in written.outputs if o.kind == "figure")
    tables_n = sum(1 for o in written.outputs if o.kind == "table")
    console.print(f"Wrote {tables_n} tables and {figures} figures; report: [bold]{written.index}[/bold]",
                  highlight=False)


def _print_table1(result: Analysis, console: Console) -> None:
    frame = result.table1
    benchmarks = list(dict.fromkeys(frame["benchmark"]))
    table = Table(title=f"Table 1 — sweep '{result.sweep}' (IQM [95% CI], bold = best, ↑ = beats Dense)")
    table.add_column("Architecture")
    table.add_column("Treatment")
    with_axes = bool(frame["axes"].astype(bool).any())
    if with_axes:
        table.add_column("Axes")
    for b in benchmarks:
        table.add_column(b, justify="right")
    indexed = frame.set_index(["arch", "treatment", "axes", "benchmark"])
    previous = None
    for arch, treatment, axes in dict.fromkeys(zip(frame["arch"], frame["treatment"], frame["axes"], strict=True)):
        cells = []
        for b in benchmarks:
            row = indexed.loc[(arch, treatment, axes, b)]
            if math.isnan(row["iqm"]):
                cells.append("[red]missing[/red]")
                continue
            text = f"{row['iqm']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            if row["best"]:
                text = f"[bold yellow]{text}[/bold yellow]"
            if row["improves_on_dense"]:
                text += " ↑"
            text += escape(run_count_note(row))
            if "paper_iqm" in row and not math.isnan(row["paper_iqm"]):
                text += f" [dim](paper {row['paper_iqm']:.2f})[/dim]"
            cells.append(text)
        table.add_row(arch_name(arch) if arch != previous else "", treatment_name(treatment),
                      *([label_display(axes)] if with_axes else []), *cells, end_section=False)
        previous = arch
    console.print(table)


def _print_coverage(result: Analysis, console: Console, max_issues: int) -> None:
    issues = result.coverage.lines()
    if issues:
        console.print(f"[yellow]{len(issues)} coverage finding(s)[/yellow] (all listed in index.md):")
        for line in issues[:max_issues]:
            console.print(f"  [yellow]•[/yellow] {line}", highlight=False)
        if len(issues) > max_issues:
            console.print(f"  … and {len(issues) - max_issues} more")
    else:
        console.print("[green]Coverage complete[/green]: no missing cells, seeds or evaluation points.")
