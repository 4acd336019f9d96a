"""The tracker interface ``run_trial`` talks to, and the set of trackers one trial writes to.

A tracker receives a trial's scalars on the lock-step training-step axis (the Parquet ``step``):

* ``start(resumed_from)`` once, before the first point: ``None`` for a trial that starts from
  scratch, else the checkpoint step it continues from. Every point of an earlier run of the
  trial past that step is the tracker's to drop or to keep unchanged (the rerun recomputes
  the same values: the rows are deterministic), so that each tag holds one point per step;
* ``log(step, scalars)`` once per epoch (and at step 0 for the first evaluation), with tags
  named as the Parquet columns (:func:`epoch_scalars`);
* ``checkpoint(step)`` before the trial writes its Parquet segment and checkpoint at ``step``:
  what was logged so far must then be durable, since a resume never logs it again;
* ``close(finished)`` at the end, ``finished`` False when the trial stopped on an error.

Trackers are logs: nothing reads them to resume, and a tracker that fails is reported in one
line (``warn``) and switched off for the rest of that run of the trial; the trial goes on.
No torch, Ray or tracker package is imported here: each tracker imports its own on the
trial's worker.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mtrl_plasticity.results import EVALS, TRAIN, Cell
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink

TRAIN_TAG_PREFIXES = ("losses/", "charts/", "sparsity/", "plasticity/", "interventions/")
"""The train columns that are tags: every metric column but the wall-clock ``perf/*``."""
EVAL_TAG = "eval/normalised_return"
"""The mean over tasks of the evaluation's normalised return (``eval/<task>/normalised_return`` per task)."""

Scalars = dict[str, float]


class Tracker(Protocol):
    """What a trial's trackers implement (see the module docstring)."""

    def start(self, resumed_from: int | None) -> None: ...

    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def checkpoint(self, step: int) -> None: ...

    def close(self, finished: bool) -> None: ...


@dataclass(frozen=True)
class TrackerRun:
    """Which trial a tracker writes for, and where its results folder is."""

    config: TrialConfig
    results_root: str
    """The sweep folder (``mtrl run``) or the ``--results`` folder (``mtrl trial``): a path or a URI."""

    @property
    def run_key(self) -> str:
        return self.config.run_key

    @property
    def sweep(self) -> str:
        return self.config.sweep

    @property
    def group(self) -> str:
        """The trial's cell, ``MT3/moe/dense``: W&B's group, MLflow's ``mtrl.cell`` tag."""
        return str(Cell.of(self.config))

    @property
    def stable_id(self) -> str:
        """The tracker run's id: the same for every run of this trial of this sweep (resumes included)."""
        return stable_run_id(self.sweep, self.run_key)


def stable_run_id(sweep: str, run_key: str) -> str:
    """``mtrl-<24 hex>`` from the sweep name and the run_key: W&B's run id, MLflow's ``mtrl.run_id`` tag.

    A digest rather than the names themselves: W&B limits the characters and length of an id,
    and any run_key format maps to one.
    """
    digest = hashlib.sha256(f"{sweep}\0{run_key}".encode()).hexdigest()[:24]
    return f"mtrl-{digest}"


def epoch_scalars(train: Mapping[str, Any] | None, evals: Sequence[Mapping[str, Any]]) -> Scalars:
    """The tags of one epoch: the train row's metric columns and the evaluation's normalised returns.

    Train tags are the Parquet column names (``losses/...``, ``charts/...``, ``sparsity/...``,
    ``plasticity/...``, ``interventions/...``), the wall-clock ``perf/*`` columns left out (they
    differ between a run and its resume). Evaluation tags are ``eval/<task>/normalised_return``
    and their mean over tasks, ``eval/normalised_return``. Nulls and NaNs are no points.
    """
    scalars: Scalars = {}
    for column, value in (train or {}).items():
        if not column.startswith(TRAIN_TAG_PREFIXES) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isnan(value):
            scalars[column] = float(value)
    returns = []
    for row in evals:
        value = row.get("normalised_return_mean")
        if isinstance(value, (int, float)) and not math.isnan(value):
            scalars[f"eval/{row['task']}/normalised_return"] = float(value)
            returns.append(float(value))
    if returns:
        scalars[EVAL_TAG] = float(sum(returns) / len(returns))
    return scalars


def committed_points(run: TrackerRun, up_to: int) -> list[tuple[int, Scalars]]:
    """``(step, tags)`` of every step up to ``up_to`` that the trial's Parquet holds, in step order: what a
    resumed trial's checkpoint stands on, for a tracker that may have lost points in a kill (W&B)."""
    sink = ParquetSink.for_config(run.results_root, run.config)
    train = {row["step"]: row for row in sink.read(TRAIN).to_pylist() if row["step"] <= up_to}
    evals: dict[int, list[dict]] = {}
    for row in sink.read(EVALS).to_pylist():
        if row["step"] <= up_to:
            evals.setdefault(row["step"], []).append(row)
    points = [(step, epoch_scalars(train.get(step), evals.get(step, []))) for step in sorted(set(train) | set(evals))]
    return [(step, scalars) for step, scalars in points if scalars]


class TrackerSet:
    """The trackers of one run of a trial, each guarded: a failing one warns once and is switched off."""

    def __init__(self, trackers: Sequence[tuple[str, Tracker]], warn: Callable[[str], None]) -> None:
        self.trackers = list(trackers)
        self.warn = warn
        self.failed: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.trackers]

    def start(self, resumed_from: int | None) -> None:
        self._each("start", resumed_from)

    def log_epoch(self, step: int, train: Mapping[str, Any] | None, evals: Sequence[Mapping[str, Any]]) -> None:
        """One epoch's points: the train row's scalars (``None`` at step 0) and the evaluation rows of ``step``."""
        scalars = epoch_scalars(train, evals)
        if scalars:
            self._each("log", step, scalars)

    def checkpoint(self, step: int) -> None:
        self._each("checkpoint", step)

    def close(self, finished: bool) -> None:
        self._each("close", finished)

    def _each(self, method: str, *args: Any) -> None:
        for name, tracker in self.trackers:
            if name in self.failed:
                continue
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a log must never fail the trial
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                self.failed[name] = reason
                self.warn(f"tracker {name} failed ({type(exc).__name__}: {reason}); it is off for the rest of "
                          f"this run of the trial, which goes on")
                if method != "close":
                    try:
                        tracker.close(False)
                    except Exception:  # already reported; closing is best effort
                        pass


NO_TRACKERS = TrackerSet([], warn=lambda _line: None)
"""A trial without trackers (``run_trial``'s default)."""
