"""What a trial still has to do, decided from its own files in the sweep folder, trusting none blindly.

Before ``mtrl run`` schedules anything, and again when a trial (re)starts on its worker,
:func:`check_trial` reads the trial's Parquet files and checkpoints through the storage
layer, reading only Parquet and checking checkpoints' zip CRCs (nothing is unpickled, torch is
not imported):

* every Parquet file of the run must be readable with every page's CRC intact (all columns are
  decoded; pages of files from earlier versions, written without CRCs, read unchecked), carry
  only this run's rows, only steps of its name's range, each key once, and only keys a finished
  trial has;
* a trial is **done** when each dataset is one compacted file holding exactly the expected
  keys (every evaluation point x task, every epoch);
* otherwise it continues from its newest intact checkpoint whose steps are all covered by
  good rows, or from scratch when there is none.

A damaged file (and a checkpoint past the damage) is moved to ``<sweep>/set-aside/``, never
deleted, and the trial gets one line saying what happened. The run's temporary files (a write
cut short by a full disk or a kill) are deleted: they never hold a whole file. A checkpoint of
another trial that passes its zip CRCs is found by the trial itself when it loads it
(:meth:`orchestrator.checkpoint.DirectoryCheckpointer.load`): set aside, and the previous one used.
Segment names are step ranges fixed by the config, so a trial sent back to checkpoint ``S``
rewrites exactly the names after ``S``.

One process at a time reads, repairs or writes a trial's files: :func:`trial_lock` (a ``flock`` on
``checkpoints/<run_key>/.lock``, the one ``mtrl trial`` takes too) is held by the trial's worker for
its whole run, from its own check through training and compaction to its last check, and by the
driver's :func:`check_sweep` around each trial's check. A worker of a killed driver's run that
still writes for a moment holds it, so a rerun's check and the rerun's trial wait for it (at most
:data:`TRIAL_LOCK_WAIT_S`) and see its files only as it left them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.compute as pc
import pyarrow.fs as pafs

from mtrl_plasticity.benchmarks import get_benchmark
from mtrl_plasticity.errors import ResultsDirError
from mtrl_plasticity.results import (
    CHECKPOINTS_DIR,
    DATASETS,
    EVALS,
    SET_ASIDE_DIR,
    TRAIN,
    compacted_name,
    segment_range,
)
from orchestrator import schema
from orchestrator.checkpoint import LOCK_FILE, DirectoryCheckpointer, checkpoint_intact
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.storage import (
    LockHeld,
    exclusive_lock,
    join,
    move_aside,
    read_bytes,
    read_table_verified,
    resolve_filesystem,
)

TRIAL_LOCK_WAIT_S = 60.0
"""Longest wait for another process's hold on a trial's files (:func:`trial_lock`). A worker of a
killed driver's run goes on writing for a second or two before Ray stops it."""

StepKeys = set[tuple]
"""A dataset's keys without the run_key: ``(step, task)`` (evals) or ``(step,)`` (train)."""


@dataclass
class TrialCheck:
    """The verdict on one trial's files."""

    run_key: str
    done: bool
    resume_step: int | None = None
    """The checkpoint step it continues from (``None``: from scratch); only when not done."""
    problems: list[str] = field(default_factory=list)
    """What was wrong and moved aside; empty for an intact trial."""

    def line(self, root: str) -> str | None:
        """One warning line, or ``None`` when nothing was wrong."""
        if not self.problems:
            return None
        if self.done:
            where = "is complete without it"
        elif self.resume_step is None:
            where = "starts over"
        else:
            where = f"continues from its checkpoint at step {self.resume_step}"
        return (f"{self.run_key}: {'; '.join(self.problems)}; moved to {join(root, SET_ASIDE_DIR)}/; "
                f"the trial {where}")


def trial_checkpoint_dir(root: str, run_key: str) -> str:
    return join(root, CHECKPOINTS_DIR, run_key)


def expected_keys(config: TrialConfig) -> dict[str, StepKeys]:
    """The keys (without run_key) of a finished trial's rows: ``{"evals": {(step, task)}, "train": {(step,)}}``."""
    tasks = get_benchmark(config.benchmark).tasks
    eval_steps = range(0, config.total_steps + 1, config.eval_interval_steps)
    train_steps = range(config.steps_per_epoch, config.total_steps + 1, config.steps_per_epoch)
    return {EVALS: {(s, t) for s in eval_steps for t in tasks}, TRAIN: {(s,) for s in train_steps}}


def _file_problem(fs: pafs.FileSystem, path: str, dataset: str, run_key: str,
                  expected: StepKeys) -> tuple[str | None, StepKeys]:
    """``(problem or None, keys)`` of one Parquet file of the run."""
    name = posixpath.basename(path)
    steps = segment_range(name)
    if steps is None and name != compacted_name(run_key):
        return "a file not named like a segment", set()
    columns = list(schema.dataset_keys(dataset))
    try:
        # Every column is decoded, so that every page's CRC is checked, not only the keys'.
        table = read_table_verified(fs, path).select(columns)
    except Exception as exc:  # cut short, not Parquet, wrong columns, a page that fails its CRC
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "CRC checksum verification failed" in text:
            return "damaged (a page fails its checksum)", set()
        return f"unreadable ({text.rsplit(chr(39) + ': ', 1)[-1][:80]})", set()
    if table.num_rows == 0:
        return "empty", set()
    if pc.any(pc.not_equal(table["run_key"], run_key)).as_py():
        return "rows of another run", set()
    rows = list(zip(*(table[c].to_pylist() for c in columns[1:]), strict=True))
    keys = set(rows)
    if len(keys) != len(rows):
        return "duplicate rows", set()
    if not keys <= expected:
        return "rows of steps this trial never has", set()
    if steps is not None:
        first, last = steps
        if any(not (first < k[0] <= last or (first == 0 and k[0] == 0)) for k in keys):
            return "rows outside the segment's step range", set()
    return None, keys


def check_trial(root: str, config: TrialConfig) -> TrialCheck:
    """Check and repair one trial's files in the sweep folder ``root`` (see the module docstring)."""
    fs, root_path = resolve_filesystem(root)
    sink = ParquetSink.for_config(root, config)
    expected = expected_keys(config)
    run_key = config.run_key
    problems: list[str] = []
    have: dict[str, StepKeys] = {d: set() for d in DATASETS}
    files: dict[str, list[str]] = {}
    checkpointer = DirectoryCheckpointer(trial_checkpoint_dir(root, run_key))
    # What a write cut short left behind (a full disk, a kill) is never a whole file: removed, not set aside.
    sink.remove_temporaries()
    checkpointer.remove_temporaries()
    for dataset in DATASETS:
        files[dataset] = []
        for path in sink.run_files(dataset):
            problem, keys = _file_problem(fs, path, dataset, run_key, expected[dataset])
            if problem is not None:
                move_aside(fs, root_path, path)
                problems.append(f"{dataset} file {posixpath.basename(path)} {problem}")
                continue
            files[dataset].append(path)
            have[dataset] |= keys
    compacted = compacted_name(run_key)
    if all([posixpath.basename(p) for p in files[d]] == [compacted] and have[d] == expected[d] for d in DATASETS):
        return TrialCheck(run_key, done=True, problems=problems)

    def covered(step: int) -> bool:
        return all({k for k in expected[d] if k[0] <= step} <= have[d] for d in DATASETS)

    resume_step = None
    for step, path in reversed(checkpointer.steps()):
        if resume_step is not None:
            break
        if not checkpoint_intact(read_bytes(fs, path) or b""):
            problems.append(f"checkpoint {posixpath.basename(path)} damaged")
        elif not covered(step):
            problems.append(f"checkpoint {posixpath.basename(path)} past missing rows")
        else:
            resume_step = step
            continue
        move_aside(fs, root_path, path)
    if resume_step is None and problems:
        # From scratch the segments are rewritten under their names; a compacted file is not, so
        # rows of a partial one would linger: it goes aside too.
        for dataset in DATASETS:
            for path in files[dataset]:
                if posixpath.basename(path) == compacted:
                    move_aside(fs, root_path, path)
                    problems.append(f"{dataset} file {compacted} incomplete")
    return TrialCheck(run_key, done=False, resume_step=resume_step, problems=problems)


@contextlib.contextmanager
def trial_lock(root: str, run_key: str, wait_s: float = TRIAL_LOCK_WAIT_S, announce: bool = True) -> Iterator[None]:
    """Hold the lock on the trial ``run_key``'s files in the sweep folder ``root`` for the block.

    A ``flock`` on ``checkpoints/<run_key>/.lock`` (local and NFS paths; released by the kernel
    when its process dies), waited for at most ``wait_s`` seconds, then :class:`LockHeld` naming
    the holder. ``announce``: write this process into the lock file for others' messages (a
    trial's worker); the driver's check does not, so a finished trial's files stay untouched.
    Object stores have no locks: there the block runs unlocked.
    """
    holder = f"pid {os.getpid()} on {socket.gethostname()}" if announce else ""
    with exclusive_lock(trial_checkpoint_dir(root, run_key), LOCK_FILE, holder=holder, patience_s=wait_s):
        yield


def check_sweep(root: str, trials: list[TrialConfig], wait_s: float = TRIAL_LOCK_WAIT_S) -> list[TrialCheck]:
    """:func:`check_trial` for every trial, in order, each under its :func:`trial_lock`.

    Raises :class:`~mtrl_plasticity.errors.ResultsDirError` (one line) when another process still
    holds a trial's files after ``wait_s`` seconds.
    """
    checks = []
    for config in trials:
        try:
            with trial_lock(root, config.run_key, wait_s, announce=False):
                checks.append(check_trial(root, config))
        except LockHeld as held:
            raise ResultsDirError(f"trial {config.run_key} in {root} is still being written by {held.holder} (a "
                                  f"worker of an earlier run that has not stopped?); wait for it to end, then rerun "
                                  f"the same command") from None
    return checks
