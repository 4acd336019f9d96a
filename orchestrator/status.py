"""`mtrl status`: per cell, trials done / running / failed / pending and Parquet rows written.

Three sources, all read-only and safe while a sweep runs:

* ``sweep.yaml``: the expected trials (the spec is expanded again), and ``history/``: the trials
  of earlier versions of the grid, listed as *outside the grid* when they have rows;
* the Parquet datasets: rows per run_key; a trial whose train rows reach its last step is
  done, whatever Tune last recorded;
* the newest run's ``tune/run-<time>/experiment_state-*.json`` (plain JSON, nothing is
  unpickled): which trials were running or had failed, as of the time Tune saved it (every
  few seconds while the driver lives; after a driver crash, "running" means "was running
  when the driver died");
* ``logs/<run_key>.failures.json``: failed attempts over all runs and the last error line.

The last two are logs: one of another shape is skipped with a warning line
(:mod:`orchestrator.folder_logs`). Text from the folder is printed through
:func:`~mtrl_plasticity.errors.clip`: printable and bounded.
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, Json
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mtrl_plasticity.errors import FOLDER_TEXT_LIMIT, ResultsDirError, clip
from mtrl_plasticity.results import (
    EVALS,
    LOGS_DIR,
    MARKER,
    SPEC_FILE,
    TRAIN,
    TUNE_DIR,
    Cell,
    compacted_name,
    dataset_dir,
    run_key_of_file,
)
from orchestrator import estimate, schema
from orchestrator.config import TrialConfig
from orchestrator.folder_logs import Count, LogModel, read_log
from orchestrator.spec import SweepSpec, cells, expand
from orchestrator.storage import canonical_root, list_files, read_marker
from orchestrator.sweep_folder import SweepFolder, driver_running
from orchestrator.sweep_history import known_trials
from orchestrator.trial_logs import FAILURES_SUFFIX, read_failures

STATES = ("done", "running", "failed", "pending")
MAX_TUNE_STATE_BYTES = 256 << 20
"""Largest Tune experiment state read (a 2,100-trial sweep's is a few megabytes)."""
_FROM_TUNE = {"TERMINATED": "done", "RUNNING": "running", "ERROR": "failed", "PENDING": "pending",
              "PAUSED": "pending"}


class TuneTrial(LogModel):
    """What status reads of one trial in Tune's experiment state (Tune writes many more fields)."""

    custom_trial_name: str | None = None
    custom_dirname: str | None = None
    status: str | None = None


class TuneRunMetadata(LogModel):
    num_failures: Count = 0


class TuneState(LogModel):
    """Tune's ``experiment_state-*.json``: per trial, the trial and its run metadata, each as JSON text."""

    trial_data: list[Annotated[tuple[Json[TuneTrial], Json[TuneRunMetadata]], Field(strict=False)]]


@dataclass
class TrialStatus:
    """Where one trial stands."""

    config: TrialConfig
    state: str = "pending"
    retries: int = 0
    eval_rows: int = 0
    train_rows: int = 0
    last_step: int | None = None
    last_error: str | None = None


@dataclass
class SweepStatus:
    """Where a sweep stands: one :class:`TrialStatus` per expected trial."""

    root: str
    spec: SweepSpec
    trials: list[TrialStatus]
    tune_state_saved: float | None = None
    """Modification time of the Tune state read (seconds since the epoch), if any."""
    driver: str | None = None
    """``"pid N on HOST"`` of the live ``mtrl run``, ``""`` if none, ``None`` if unknown."""
    unknown_run_keys: list[str] = field(default_factory=list)
    """Run keys with Parquet rows that no version of the grid lists (should stay empty)."""
    outside_grid: list[TrialStatus] = field(default_factory=list)
    """Trials of earlier versions of the grid that the latest leaves out but that have rows (kept on disk)."""
    damaged_files: list[str] = field(default_factory=list)
    """Parquet files that could not be read (the next ``mtrl run`` moves them aside)."""

    def counts(self) -> Counter:
        return Counter(t.state for t in self.trials)


# --- reading ---------------------------------------------------------------------------------
def read_status(root: str) -> SweepStatus:
    """Status of the sweep folder ``root`` (a path or a URI); ``ResultsDirError`` if it is none."""
    folder = SweepFolder(canonical_root(root))
    fs, path = folder.filesystem()
    if read_marker(folder.root) is None:
        raise ResultsDirError(f"{root} is not a results folder of this tool (no {MARKER})")
    spec = folder.stored_spec()
    if spec is None:
        raise ResultsDirError(f"{root} is not a sweep folder (no {SPEC_FILE}); `mtrl trial` folders have no status")
    trials = {t.run_key: TrialStatus(t) for t in expand(spec)}
    earlier = {k: TrialStatus(c) for k, c in known_trials(folder.root, spec).items() if k not in trials}
    saved = _apply_tune_state(fs, posixpath.join(path, TUNE_DIR), trials)
    _apply_failures(folder.root, trials)
    driver = driver_running(folder)
    if driver == "":  # nothing runs without a driver: the Tune state is from before it stopped
        for status in trials.values():
            if status.state == "running":
                status.state = "pending"
    damaged: list[str] = []
    rows = _parquet_rows(fs, path, damaged)
    unknown = sorted(set(rows[TRAIN]) - set(trials) - set(earlier))
    for run_key, status in [*trials.items(), *earlier.items()]:
        status.eval_rows = rows[EVALS].get(run_key, (0, None))[0]
        status.train_rows, status.last_step = rows[TRAIN].get(run_key, (0, None))
        if status.last_step == status.config.total_steps:
            status.state = "done"
        elif status.state == "done":  # Tune says finished but the rows are not all there
            status.state = "pending"
    outside = [t for t in earlier.values() if t.eval_rows or t.train_rows]
    return SweepStatus(folder.root, spec, list(trials.values()), saved, driver, unknown_run_keys=unknown,
                       damaged_files=damaged, outside_grid=outside)


def _apply_failures(root: str, trials: dict[str, TrialStatus]) -> None:
    fs, path = SweepFolder(root).filesystem()
    for info in list_files(fs, posixpath.join(path, LOGS_DIR), special="skip"):
        run_key = info.base_name.removesuffix(FAILURES_SUFFIX)
        if info.base_name.endswith(FAILURES_SUFFIX) and run_key in trials:
            record = read_failures(root, run_key)
            if record is not None:
                trials[run_key].retries = max(trials[run_key].retries, record.failures)
                trials[run_key].last_error = record.last_error


def _apply_tune_state(fs: pafs.FileSystem, tune_dir: str, trials: dict[str, TrialStatus]) -> float | None:
    runs = sorted(e.path for e in fs.get_file_info(pafs.FileSelector(tune_dir, allow_not_found=True))
                  if e.type == pafs.FileType.Directory and e.base_name.startswith("run-"))
    if not runs:
        return None
    states = [e for e in list_files(fs, runs[-1], special="skip") if e.base_name.startswith("experiment_state-")
              and e.base_name.endswith(".json")]
    if not states:
        return None
    newest = states[-1]
    # Tune replaces the file whole (write and rename); a damaged one is skipped, and the Parquet
    # still tells done trials.
    state = read_log(fs, newest.path, TuneState, MAX_TUNE_STATE_BYTES)
    if state is None:
        return None
    for trial, metadata in state.trial_data:
        run_key = trial.custom_trial_name or trial.custom_dirname
        if run_key in trials:
            trials[run_key].state = _FROM_TUNE.get(trial.status or "", "pending")
            trials[run_key].retries = metadata.num_failures
    return newest.mtime.timestamp() if newest.mtime else None


RowCounts = dict[str, tuple[int, int]]
"""``{run_key: (distinct rows, last step)}`` of one dataset."""


def _parquet_rows(fs: pafs.FileSystem, root: str, damaged: list[str], attempts: int = 3) -> dict[str, RowCounts]:
    """Per dataset, ``{run_key: (distinct rows, last step)}`` (segments and compacted files deduplicated)."""
    for attempt in range(attempts):
        try:
            return {dataset: _rows_per_run(fs, posixpath.join(root, dataset_dir(dataset)),
                                           list(schema.dataset_keys(dataset)), damaged)
                    for dataset in (EVALS, TRAIN)}
        except FileNotFoundError:
            if attempt == attempts - 1:  # a running sweep kept compacting under our feet
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _rows_per_run(fs: pafs.FileSystem, directory: str, keys: list[str],
                  damaged: list[str]) -> dict[str, tuple[int, int]]:
    """``{run_key: (distinct rows, last step)}`` of one dataset.

    A finished run's lone compacted file is counted from its Parquet footer (rows, the step
    column's statistics), which the compaction wrote deduplicated; every other file is read.
    """
    by_run: dict[str, list[pafs.FileInfo]] = {}
    for info in list_files(fs, directory, recursive=True):
        key = run_key_of_file(info.base_name)
        if key is not None:
            by_run.setdefault(key, []).append(info)
    counted: dict[str, tuple[int, int]] = {}
    tables = []
    for run_key, infos in by_run.items():
        if len(infos) == 1 and infos[0].base_name == compacted_name(run_key):
            footer = _footer_rows(fs, infos[0].path)
            if footer is not None:
                counted[run_key] = footer
                continue
        for info in infos:
            try:
                tables.append(pq.read_table(info.path, filesystem=fs, columns=keys))
            except (OSError, pa.ArrowException):
                # Damaged: its trial counts as not done; the next `mtrl run` sets it aside.
                damaged.append(info.path)
    if not tables:
        return counted
    distinct = pa.concat_tables(tables).group_by(keys, use_threads=False).aggregate([])
    per_run = distinct.group_by("run_key", use_threads=False).aggregate([("step", "count"), ("step", "max")])
    counted.update({key: (count, last) for key, count, last in zip(per_run["run_key"].to_pylist(),
                                                                   per_run["step_count"].to_pylist(),
                                                                   per_run["step_max"].to_pylist(), strict=True)})
    return counted


def _footer_rows(fs: pafs.FileSystem, path: str) -> tuple[int, int] | None:
    """``(rows, last step)`` from a Parquet footer, or None when it lacks what is needed (then the file is read)."""
    try:
        meta = pq.read_metadata(path, filesystem=fs)
        column = meta.schema.to_arrow_schema().get_field_index("step")
        stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
    except (OSError, pa.ArrowException, ValueError):
        return None
    if column < 0 or not stats or any(s is None or not s.has_min_max for s in stats):
        return None
    return meta.num_rows, max(int(s.max) for s in stats)


# --- rendering -------------------------------------------------------------------------------
def render_status(status: SweepStatus, steps: Mapping[str, tuple[str, str]] | None = None,
                  summary: str | None = None) -> Group:
    """A header line and the per-cell table; ``steps``: per cell label (and ``"all"``), the columns "steps"
    (done/total) and "steps/s" (``orchestrator.progress.status_cells``); ``summary``: a second header
    line (steps, ETA)."""
    spec = status.spec
    by_cell: dict[Cell, list[TrialStatus]] = {}
    for trial in status.trials:
        by_cell.setdefault(Cell.of(trial.config), []).append(trial)
    table = Table(title_justify="left")
    table.add_column("cell (benchmark / arch / treatment)", no_wrap=True)
    for name in ("trials", *STATES, "retries", "eval rows", "train rows", *(("steps", "steps/s") if steps else ())):
        table.add_column(name, justify="right")
    total_rows = [0, 0, 0, 0]
    for cell in cells(spec):
        group = by_cell.get(cell, [])
        counts = Counter(t.state for t in group)
        expected = [estimate.expected_rows(t.config) for t in group]
        rows = [sum(t.eval_rows for t in group), sum(e for e, _ in expected),
                sum(t.train_rows for t in group), sum(n for _, n in expected)]
        total_rows = [a + b for a, b in zip(total_rows, rows, strict=True)]
        table.add_row(cell.label(), str(len(group)), *(str(counts[s]) for s in STATES),
                      str(sum(t.retries for t in group)), f"{rows[0]:,}/{rows[1]:,}", f"{rows[2]:,}/{rows[3]:,}",
                      *(steps.get(cell.label(), ("", "")) if steps else ()))
    counts = status.counts()
    outside: dict[Cell, list[TrialStatus]] = {}
    for trial in status.outside_grid:
        outside.setdefault(Cell.of(trial.config), []).append(trial)
    if outside:
        table.add_section()
        for cell, group in outside.items():
            states = Counter(t.state for t in group)
            table.add_row(f"{cell.label()} (outside the grid)", str(len(group)), *(str(states[s]) for s in STATES),
                          "", f"{sum(t.eval_rows for t in group):,}", f"{sum(t.train_rows for t in group):,}",
                          style="dim")
    table.add_section()
    table.add_row("all", str(len(status.trials)), *(str(counts[s]) for s in STATES),
                  str(sum(t.retries for t in status.trials)), f"{total_rows[0]:,}/{total_rows[1]:,}",
                  f"{total_rows[2]:,}/{total_rows[3]:,}", *(steps.get("all", ("", "")) if steps else ()), style="bold")
    if status.tune_state_saved is None:
        tune_note = "no Tune state yet"
    else:
        age = max(0.0, time.time() - status.tune_state_saved)
        tune_note = f"Tune state saved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(status.tune_state_saved))} " \
                    f"({age:,.0f} s ago)"
    if status.driver is None:
        driver_note = ""
    elif status.driver:
        driver_note = f"; driven by mtrl run ({status.driver})"
    else:
        driver_note = "; no mtrl run is driving it (rerun the command to continue)" \
            if counts["done"] < len(status.trials) else ""
    header = Text(f"sweep {spec.name} ({spec.protocol} protocol) in {status.root}: "
                  f"{counts['done']}/{len(status.trials)} trials done; {tune_note}{driver_note}")
    parts: list = [header, *((Text(summary),) if summary else ()), table]
    if status.damaged_files:
        shown = clip(status.damaged_files[0], FOLDER_TEXT_LIMIT)
        parts.append(Text(f"{len(status.damaged_files)} unreadable Parquet file(s), e.g. {shown}; "
                          f"the next `mtrl run` sets them aside and trains their trials again", style="red"))
    troubled = [t for t in status.trials if t.last_error]
    for trial in troubled[:20]:
        error = clip(trial.last_error or "", FOLDER_TEXT_LIMIT)
        parts.append(Text(f"{trial.config.run_key} ({trial.state}, {trial.retries} failed attempt(s)): {error}",
                          style="red" if trial.state == "failed" else "yellow"))
    if len(troubled) > 20:
        parts.append(Text(f"... and {len(troubled) - 20} more trials with errors (logs/<run_key>.log)"))
    if status.outside_grid:
        parts.append(Text(f"{len(status.outside_grid)} trial(s) of earlier versions of the grid are outside it now: "
                          f"their results are kept, `mtrl analyze` leaves them out unless --include-outside-grid",
                          style="dim"))
    if status.unknown_run_keys:
        parts.append(Text(f"rows of {len(status.unknown_run_keys)} run(s) no version of the grid lists, e.g. "
                          f"{clip(status.unknown_run_keys[0], FOLDER_TEXT_LIMIT)}", style="yellow"))
    return Group(*parts)
