"""Counting and drawing trial states per cell: the tables of ``mtrl run`` (no Ray import here).

:mod:`orchestrator.tune_progress` feeds Tune's trials through these functions while a sweep
runs; ``mtrl run --dry-run`` and ``mtrl status`` use :func:`make_console`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from mtrl_plasticity.results import Cell, axis_label

STATES = ("done", "running", "pending", "failed")
_TUNE_TO_STATE = {"TERMINATED": "done", "RUNNING": "running", "PENDING": "pending",
                  "PAUSED": "pending", "ERROR": "failed"}


@dataclass
class CellCounts:
    """Trial counts of one cell (or of the whole sweep)."""

    counts: Counter = field(default_factory=Counter)
    retries: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def make_console() -> Console:
    """A console for tables: the terminal's width, or 160 columns when writing to a log."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def cell_label_of(trial) -> str:
    """The cell label of a Tune trial's config, as ``mtrl status`` and the sweep's cell order name it:
    ``"MT3 / moe / dense"``, ``"MT3 / moe / redo.tau-0.001 / actor_lr=0.001"`` (a variant's label and
    the grid-axis values)."""
    config = json.loads(trial.config["trial"]["config"])
    axes = axis_label({name: config[name] for name in config.get("axis_fields", ())})
    return Cell(config["benchmark"], config["arch"], config.get("label") or config["treatment"], axes).label()


def state_of(trial) -> str:
    """done / running / pending / failed for a Tune trial.

    Tune marks trials it stopped on Ctrl-C as terminated too: only a trial that reported its
    last step counts as done.
    """
    state = _TUNE_TO_STATE.get(trial.status, "pending")
    if state == "done":
        total = json.loads(trial.config["trial"]["config"]).get("total_steps")
        last = (getattr(trial, "last_result", None) or {}).get("step")
        if total is not None and last != total:
            return "pending"
    return state


def tally(trials, cell_order: Sequence[str] = (), done_before: dict[str, int] | None = None) -> dict[str, CellCounts]:
    """Per cell label (in ``cell_order``, then first seen), trials in each state and retries so far.

    ``done_before``: trials per cell label that were complete before this run (not given to Tune).
    """
    cells: dict[str, CellCounts] = {label: CellCounts() for label in cell_order}
    for label, n in (done_before or {}).items():
        cells.setdefault(label, CellCounts()).counts["done"] += n
    for trial in trials:
        counts = cells.setdefault(cell_label_of(trial), CellCounts())
        counts.counts[state_of(trial)] += 1
        counts.retries += int(getattr(trial.run_metadata, "num_failures", 0) or 0)
    return {label: counts for label, counts in cells.items() if counts.total}


def render_table(cells: dict[str, CellCounts], title: str,
                 steps: Mapping[str, tuple[str, str]] | None = None) -> Table:
    """The per-cell table; ``steps``: per cell label (and ``"all"``), the columns "steps" (done/total) and "steps/s"."""
    table = Table(title=title, title_justify="left")
    table.add_column("cell (benchmark / arch / treatment)", no_wrap=True)
    for name in ("trials", *STATES, "retries", *(("steps", "steps/s") if steps is not None else ())):
        table.add_column(name, justify="right")
    total = CellCounts()
    for label, counts in cells.items():
        extra = steps.get(label, ("", "")) if steps is not None else ()
        table.add_row(label, str(counts.total), *(str(counts.counts[s]) for s in STATES), str(counts.retries), *extra)
        total.counts.update(counts.counts)
        total.retries += counts.retries
    table.add_section()
    extra = steps.get("all", ("", "")) if steps is not None else ()
    table.add_row("all", str(total.total), *(str(total.counts[s]) for s in STATES), str(total.retries), *extra,
                  style="bold")
    return table


def summary_line(cells: dict[str, CellCounts]) -> str:
    total: Counter[str] = Counter()
    for counts in cells.values():
        total.update(counts.counts)
    n = sum(total.values())
    return f"{total['done']}/{n} done, {total['running']} running, {total['pending']} pending, {total['failed']} failed"
