"""Progress of a sweep: each running trial's progress record, throughput, steps done and time left.

Each trial's worker keeps ``progress/<run_key>.json`` in the sweep folder (:class:`ProgressRecorder`,
a tracker that ``run_trial`` calls with the others): its lock-step step, its steps per second over
the last :data:`THROUGHPUT_WINDOW_S` seconds, its last evaluation's normalised return and the
time. The driver of ``mtrl run`` keeps ``progress/driver.json``: how many trials the cluster runs
at once (the slots). Both are logs, rewritten whole, never read to resume; ``mtrl status``
reads them (:func:`sweep_progress`), the live table of ``mtrl run`` computes the same figures
from Tune's reports (``orchestrator.tune_progress``).

Time left (:func:`time_left`): each unfinished trial's remaining steps at its own measured
speed, or, for a trial not running, at the speed measured for its cell, or else at the
sweep's measured speed scaled by the cost model's ratio of the two trials' cost per step
(:mod:`orchestrator.estimate`); the running trials keep their slots and the others take the
slot that frees first, in the sweep's order. Ray-free and torch-free.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import Field
from rich.table import Table
from rich.text import Text

from mtrl_plasticity.errors import FOLDER_TEXT_LIMIT, clip
from mtrl_plasticity.results import PROGRESS_DIR, Cell
from orchestrator import estimate
from orchestrator.config import TrialConfig
from orchestrator.folder_logs import Count, LogModel, read_log
from orchestrator.status import SweepStatus, TrialStatus
from orchestrator.storage import join, resolve_filesystem, write_bytes_atomically
from orchestrator.trackers.base import EVAL_TAG

THROUGHPUT_WINDOW_S = 300.0
"""Steps per second are measured over this many seconds (and at least the last epoch)."""
DRIVER_RECORD = "driver"
"""``progress/driver.json``: the driver's record (a run_key always ends in ``-s<seed>``)."""
MAX_RECORD_BYTES = 64 << 10
"""Largest progress record read (the tool writes a few hundred bytes)."""
MAX_SLOTS = 100_000
"""Most slots a driver record may claim (``max_concurrent_trials``' bound); more is a damaged record."""
JSON_FORMAT = 1
"""Version of ``mtrl status --json``'s layout (docs/orchestration.md lists its fields)."""


# --- the worker's record --------------------------------------------------------------------
def progress_path(root: str, run_key: str) -> str:
    return join(root, PROGRESS_DIR, f"{run_key}.json")


def window_rate(samples: Sequence[tuple[float, int]], now: float | None = None,
                window_s: float = THROUGHPUT_WINDOW_S) -> float | None:
    """Steps per second over ``samples`` (``(time, step)``, oldest first) of the last ``window_s`` seconds.

    The window reaches back to the last sample before it too, so it always spans at least one
    epoch. ``None`` with fewer than two samples.
    """
    if len(samples) < 2:
        return None
    now = samples[-1][0] if now is None else now
    first = 0
    for i, (t, _) in enumerate(samples):
        if t < now - window_s:
            first = i
    (t0, s0), (t1, s1) = samples[first], samples[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else None


def trim(samples: list[tuple[float, int]], window_s: float = THROUGHPUT_WINDOW_S) -> list[tuple[float, int]]:
    """``samples`` without those :func:`window_rate` no longer needs."""
    if not samples:
        return samples
    now = samples[-1][0]
    older = [i for i, (t, _) in enumerate(samples) if t < now - window_s]
    return samples[older[-1]:] if older else samples


class ProgressRecorder:
    """A tracker that keeps ``progress/<run_key>.json`` up to date (see the module docstring)."""

    def __init__(self, root: str, config: TrialConfig, clock: Callable[[], float] = time.time) -> None:
        self.root, self.config, self.clock = root, config, clock
        self.samples: list[tuple[float, int]] = []
        self.record: dict[str, Any] = {}

    def start(self, resumed_from: int | None) -> None:
        now = self.clock()
        step = resumed_from or 0
        self.samples = [(now, step)]
        self.record = {"run_key": self.config.run_key, "state": "running", "step": step,
                       "total_steps": self.config.total_steps, "steps_per_second": None, "eval_step": None,
                       "normalised_return": None, "resumed_from": resumed_from, "started": now, "time": now,
                       "host": socket.gethostname(), "pid": os.getpid()}
        self._write()

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        now = self.clock()
        self.samples = trim([*self.samples, (now, step)])
        self.record.update(step=step, time=now, steps_per_second=window_rate(self.samples, now))
        if EVAL_TAG in scalars:
            self.record.update(eval_step=step, normalised_return=scalars[EVAL_TAG])
        self._write()

    def checkpoint(self, step: int) -> None:
        """Nothing to do: the record is rewritten at every epoch."""

    def close(self, finished: bool) -> None:
        if self.record:
            self.record.update(state="finished" if finished else "stopped", time=self.clock())
            self._write()

    def _write(self) -> None:
        fs, path = resolve_filesystem(progress_path(self.root, self.config.run_key))
        write_bytes_atomically(fs, path, _json_bytes(self.record))


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


class ProgressRecord(LogModel):
    """What ``mtrl status`` reads of ``progress/<run_key>.json`` (:class:`ProgressRecorder` writes it)."""

    run_key: str
    state: str | None = None
    step: Count = 0
    total_steps: Count | None = None
    resumed_from: Count | None = None
    steps_per_second: Annotated[float, Field(ge=0)] | None = None
    eval_step: Count | None = None
    normalised_return: float | None = None
    time: Annotated[float, Field(ge=0)] | None = None


class DriverRecord(LogModel):
    """What ``mtrl status`` reads of ``progress/driver.json`` (:func:`write_driver_record` writes it)."""

    slots: Annotated[int, Field(ge=1, le=MAX_SLOTS)]


R = TypeVar("R", ProgressRecord, DriverRecord)


def read_record(root: str, name: str, model: type[R]) -> R | None:
    """The record ``progress/<name>.json`` (a run_key, or ``driver``) as ``model``, or ``None`` if absent
    or damaged (a log, never trusted for more than display: one warning line,
    :func:`~orchestrator.folder_logs.read_log`)."""
    fs, path = resolve_filesystem(join(root, PROGRESS_DIR, f"{name}.json"))
    return read_log(fs, path, model, MAX_RECORD_BYTES)


# --- the driver's record: slots -------------------------------------------------------------
def slots_for(cpu_per_trial: float, gpu_per_trial: float, cpus: float, gpus: float,
              max_concurrent: int | None = None) -> int:
    """Trials a cluster of ``cpus`` and ``gpus`` runs at once (at least 1)."""
    slots = math.floor(cpus / cpu_per_trial + 1e-9) if cpu_per_trial > 0 else 1
    if gpu_per_trial > 0:
        slots = min(slots, math.floor(gpus / gpu_per_trial + 1e-9))
    if max_concurrent is not None:
        slots = min(slots, max_concurrent)
    return max(1, slots)


def write_driver_record(root: str, slots: int, cpus: float, gpus: float) -> None:
    fs, path = resolve_filesystem(join(root, PROGRESS_DIR, f"{DRIVER_RECORD}.json"))
    write_bytes_atomically(fs, path, _json_bytes({"slots": slots, "cpus": cpus, "gpus": gpus, "time": time.time(),
                                                  "host": socket.gethostname(), "pid": os.getpid()}))


# --- time left -------------------------------------------------------------------------------
@dataclass
class TrialWork:
    """What one trial has left, for :func:`time_left`."""

    run_key: str
    cell: str
    total_steps: int
    steps_done: int
    running: bool = False
    steps_per_second: float | None = None
    """Measured over the last few minutes (running trials only)."""
    model_s_per_step: float = 0.0
    """The cost model's seconds per step (:func:`orchestrator.estimate.trial_core_seconds`)."""

    @property
    def remaining(self) -> int:
        return max(0, self.total_steps - self.steps_done)


def model_s_per_step(config: TrialConfig) -> float:
    return estimate.trial_core_seconds(config) / config.total_steps


def makespan(durations: Iterable[float], slots: int, busy: Iterable[float] = ()) -> float:
    """When the last of ``durations`` ends, started in order on the first of ``slots`` slots to free up;
    ``busy``: what the slots still have to do first (at most ``slots`` values)."""
    loads = sorted(busy)[:slots]
    loads += [0.0] * (slots - len(loads))
    heapq.heapify(loads)
    for duration in durations:
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads) if loads else 0.0


def time_left(trials: Sequence[TrialWork], slots: int) -> float | None:
    """Seconds until every trial is done (see the module docstring); 0 when none has steps left,
    ``None`` when no running trial has a measured speed yet."""
    left = [t for t in trials if t.remaining]
    if not left:
        return 0.0
    measured = [t for t in trials if t.running and t.steps_per_second]
    if not measured:
        return None
    by_cell: dict[str, list[float]] = {}
    for t in measured:
        by_cell.setdefault(t.cell, []).append(1.0 / t.steps_per_second)  # type: ignore[operator]
    ratios = [(1.0 / t.steps_per_second) / t.model_s_per_step  # type: ignore[operator]
              for t in measured if t.model_s_per_step > 0]
    scale = sum(ratios) / len(ratios) if ratios else None

    def seconds_per_step(t: TrialWork) -> float:
        if t.running and t.steps_per_second:
            return 1.0 / t.steps_per_second
        if t.cell in by_cell:
            return sum(by_cell[t.cell]) / len(by_cell[t.cell])
        if scale is not None and t.model_s_per_step > 0:
            return scale * t.model_s_per_step
        return sum(sum(v) for v in by_cell.values()) / len(measured)

    running = [t.remaining * seconds_per_step(t) for t in left if t.running]
    waiting = [t.remaining * seconds_per_step(t) for t in left if not t.running]
    return makespan(waiting, max(slots, len(running)), busy=running)


def format_duration(seconds: float | None) -> str:
    """``2d 03h``, ``4h 05m``, ``12m 30s``, ``45s``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_rate(steps_per_second: float | None) -> str:
    return "-" if steps_per_second is None else f"{steps_per_second:,.1f}"


# --- `mtrl status`: progress from the records ---------------------------------------------------
@dataclass
class TrialProgress:
    """One trial as ``mtrl status --trials`` and ``--json`` show it."""

    run_key: str
    cell: str
    state: str
    step: int
    total_steps: int
    steps_per_second: float | None = None
    eval_step: int | None = None
    normalised_return: float | None = None
    retries: int = 0
    last_error: str | None = None
    updated: float | None = None
    """When the trial's worker last wrote its record (seconds since the epoch)."""


@dataclass
class CellProgress:
    cell: str
    trials: int
    steps_done: int
    steps_total: int
    steps_per_second: float | None


@dataclass
class SweepProgress:
    trials: list[TrialProgress]
    cells: list[CellProgress]
    steps_done: int
    steps_total: int
    steps_per_second: float | None
    slots: int
    eta_seconds: float | None
    eta_note: str = ""
    """Why there is no ETA (``eta_seconds`` is None), else empty."""
    work: list[TrialWork] = field(default_factory=list, repr=False)


def trial_progress(trial: TrialStatus, record: ProgressRecord | None) -> TrialProgress:
    """Where one trial stands: done trials at their total, running ones at their record's step, others
    at their last Parquet row."""
    config = trial.config
    out = TrialProgress(config.run_key, Cell.of(config).label(), trial.state, trial.last_step or 0,
                        config.total_steps, retries=trial.retries, last_error=trial.last_error)
    if trial.state == "done":
        out.step = config.total_steps
    if record is not None and record.run_key == config.run_key:
        out.eval_step, out.normalised_return, out.updated = record.eval_step, record.normalised_return, record.time
        if trial.state == "running":
            out.step = min(record.step, config.total_steps)
            out.steps_per_second = record.steps_per_second
    return out


def sweep_progress(status: SweepStatus) -> SweepProgress:
    """Steps done, throughput and time left of the sweep ``status`` describes, from its progress records
    (read for the running trials only)."""
    trials, work = [], []
    for trial in status.trials:
        record = read_record(status.root, trial.config.run_key, ProgressRecord) if trial.state == "running" else None
        progress = trial_progress(trial, record)
        trials.append(progress)
        work.append(TrialWork(progress.run_key, progress.cell, progress.total_steps, progress.step,
                              running=trial.state == "running", steps_per_second=progress.steps_per_second,
                              model_s_per_step=model_s_per_step(trial.config)))
    cells: dict[str, CellProgress] = {}
    for p in trials:
        cell = cells.setdefault(p.cell, CellProgress(p.cell, 0, 0, 0, None))
        cell.trials += 1
        cell.steps_done += p.step
        cell.steps_total += p.total_steps
        if p.steps_per_second is not None:
            cell.steps_per_second = (cell.steps_per_second or 0.0) + p.steps_per_second
    running = sum(w.running for w in work)
    driver = read_record(status.root, DRIVER_RECORD, DriverRecord) if status.driver != "" else None
    slots = max(running, driver.slots if driver is not None else running, 1)
    rates = [p.steps_per_second for p in trials if p.steps_per_second is not None]
    eta: float | None
    note = ""
    if all(w.remaining == 0 for w in work):
        eta = 0.0
    elif status.driver == "":
        eta, note = None, "no mtrl run is driving the sweep"
    else:
        eta = time_left(work, slots)
        if eta is None:
            note = "no throughput measured yet"
    return SweepProgress(trials, list(cells.values()), sum(p.step for p in trials), sum(p.total_steps for p in trials),
                         sum(rates) if rates else None, slots, eta, note, work)


def progress_json(status: SweepStatus, progress: SweepProgress) -> dict[str, Any]:
    """``mtrl status --json`` (fields: docs/orchestration.md, "Watching a sweep")."""
    counts = status.counts()
    return {
        "format": JSON_FORMAT,
        "sweep": status.spec.name,
        "root": status.root,
        "time": time.time(),
        "driver": status.driver,
        "trials": {"total": len(status.trials), **{s: counts[s] for s in ("done", "running", "failed", "pending")}},
        "steps_done": progress.steps_done,
        "steps_total": progress.steps_total,
        "steps_per_second": progress.steps_per_second,
        "slots": progress.slots,
        "eta_seconds": progress.eta_seconds,
        "eta_note": progress.eta_note or None,
        "cells": [asdict(c) for c in progress.cells],
        "running": [_trial_json(t) for t in progress.trials if t.state == "running"],
        "trial_states": [_trial_json(t) for t in progress.trials],
    }


def _trial_json(trial: TrialProgress) -> dict[str, Any]:
    """One trial for ``--json``: its last error bounded as on the terminal, its characters left to JSON's escapes."""
    data = asdict(trial)
    if trial.last_error is not None:
        data["last_error"] = clip(trial.last_error, FOLDER_TEXT_LIMIT, keep_controls=True)
    return data


def render_trials(progress: SweepProgress, now: float | None = None) -> Table:
    """``mtrl status --trials``: every running trial (and every trial with an error)."""
    now = time.time() if now is None else now
    table = Table(title="running trials", title_justify="left")
    for name, justify in (("trial", "left"), ("state", "left"), ("step", "right"), ("steps/s", "right"),
                          ("return (step)", "right"), ("updated", "right"), ("last error", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "last error")  # type: ignore[arg-type]
    for t in progress.trials:
        if t.state != "running" and not t.last_error:
            continue
        ret = "-" if t.normalised_return is None or t.eval_step is None else \
            f"{t.normalised_return:.3f} ({t.eval_step:,})"
        age = "-" if t.updated is None else f"{format_duration(max(0.0, now - t.updated))} ago"
        # Text, not str: rich would read markup ("[/x]") in a string from the folder.
        table.add_row(Text(t.run_key), t.state, f"{t.step:,}/{t.total_steps:,}", format_rate(t.steps_per_second), ret,
                      age, Text(clip(t.last_error or "", FOLDER_TEXT_LIMIT)))
    return table


def status_cells(progress: SweepProgress) -> dict[str, tuple[str, str]]:
    """Per cell label and ``"all"``: ``("steps done/total", "steps/s")``, the two columns ``mtrl status`` adds."""
    out = {c.cell: (f"{c.steps_done:,}/{c.steps_total:,}", format_rate(c.steps_per_second)) for c in progress.cells}
    out["all"] = (f"{progress.steps_done:,}/{progress.steps_total:,}", format_rate(progress.steps_per_second))
    return out


def status_line(progress: SweepProgress) -> str:
    """``steps 1,200/2,400 (50%), 85.0 steps/s, 2 slots, ETA 4m 10s``."""
    share = progress.steps_done / progress.steps_total if progress.steps_total else 1.0
    eta = format_duration(progress.eta_seconds) if progress.eta_seconds is not None else f"- ({progress.eta_note})"
    return (f"steps {progress.steps_done:,}/{progress.steps_total:,} ({share:.0%}), "
            f"{format_rate(progress.steps_per_second)} steps/s, {progress.slots} slot(s), ETA {eta}")


__all__ = ["ProgressRecorder", "SweepProgress", "TrialWork", "makespan", "progress_json",
           "read_record", "render_trials", "slots_for", "status_cells", "status_line", "sweep_progress", "time_left",
           "window_rate", "write_driver_record"]
