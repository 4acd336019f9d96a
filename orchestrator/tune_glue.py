"""Ray Tune glue: the trainable, per-trial checkpoints in the sweep folder, GPU placement, the Tuner.

One Tune trial per :class:`TrialConfig` that is not complete: the param space is one
``grid_search`` over those trials' canonical JSON, trials and their folders are named by
``run_key``. Every ``mtrl run`` builds a fresh Tuner over the trials the sweep folder says
are not complete (:mod:`orchestrator.resume_check`); Tune's own experiment state is written
under ``tune/run-<time>/`` for its logs and ``mtrl status``, and never read back to resume.
The trainable calls the Ray-free :func:`orchestrator.trial.run_trial` with

* a :class:`ParquetSink` on the sweep folder (a path or URI handed over in the trainable's
  closure, so every node writes to the shared storage and never to a node-local folder);
* a :class:`SweepCheckpointer`: ``checkpoints/<run_key>/step-<step>.pt`` in the sweep
  folder, so a trial started again, by Tune's retry (``FailureConfig``) or by a later
  ``mtrl run`` with other resources, continues from its last checkpoint there.

Only public Ray APIs are used (``tests/orchestrator/test_public_ray_only.py`` checks it).
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from functools import partial
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from mtrl_plasticity.errors import printable
from mtrl_plasticity.plugins import load_entry_points, load_plugins
from mtrl_plasticity.results import SET_ASIDE_DIR
from orchestrator.checkpoint import Checkpointer, DirectoryCheckpointer, Metrics
from orchestrator.config import TrialConfig
from orchestrator.folder_logs import MAX_COUNT
from orchestrator.progress import ProgressRecorder, progress_path
from orchestrator.resume_check import TRIAL_LOCK_WAIT_S, check_trial, trial_checkpoint_dir, trial_lock
from orchestrator.sink import ParquetSink
from orchestrator.spec import SweepSpec
from orchestrator.storage import LockHeld, join, refuse_links
from orchestrator.sweep_folder import SweepFolder
from orchestrator.trackers import TrackerRun, open_trackers
from orchestrator.trackers.tensorboard import event_dir
from orchestrator.trial_hook import run_with_hook
from orchestrator.trial_logs import (
    FailuresRecord,
    append_to_log,
    last_line,
    read_failures,
    trial_failures_path,
    trial_log_path,
    utc_stamp,
    write_failures,
)

TRAINABLE_NAME = "mtrl_trial"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
CHECKPOINTS_TO_KEEP = 2
WARNING_METRIC = "mtrl_warning"
"""A reported metric holding the trial's warning lines (files set aside); the driver prints them."""


# --- where a trial's networks run -----------------------------------------------------------
def select_device(requested: str, gpu_ids: Sequence[Any], environ: MutableMapping[str, str] | None = None) -> str:
    """The device a trial's networks use, given the GPUs Ray assigned to it.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for a trial that got a GPU (whole or a fraction), so
    ``cuda`` is that GPU. A trial that got none must not touch a GPU of its node, and Ray 2.60
    leaves ``CUDA_VISIBLE_DEVICES`` alone then (ray-project/ray#54868): the GPUs are hidden
    here, before torch first looks for CUDA.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if gpu_ids:
        return "cuda" if requested in ("auto", "cuda") else "cpu"
    if requested == "cuda":
        raise RuntimeError("the trial asks for device 'cuda' but Ray assigned it no GPU (resources.gpu is 0)")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return "cpu"


# --- checkpoints in the sweep folder --------------------------------------------------------
def scalar_metrics(metrics: dict) -> dict:
    """Only the numbers and strings of ``metrics`` (what Tune's loggers can store)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


class SweepCheckpointer(DirectoryCheckpointer):
    """Checkpoints in ``<sweep>/checkpoints/<run_key>/``; every save and epoch reported to Tune as metrics.

    Tune gets no checkpoint of its own: a trial it starts again finds its state here.
    """

    def __init__(self, sweep_root: str, run_key: str, extra: dict | None = None) -> None:
        super().__init__(trial_checkpoint_dir(sweep_root, run_key), keep=CHECKPOINTS_TO_KEEP, aside_root=sweep_root,
                         on_warning=self.warn)
        self.sweep_root, self.run_key = sweep_root, run_key
        self.extra = dict(extra or {})
        self.warnings: list[str] = []

    def warn(self, line: str) -> None:
        """A line for the console: written to the trial's log now, printed by the driver with the next report."""
        line = line if line.startswith(f"{self.run_key}: ") else f"{self.run_key}: {line}"
        append_to_log(self.sweep_root, self.run_key, f"--- {utc_stamp()} {line}\n")
        self.warnings.append(line)

    def report(self, metrics: dict) -> None:
        warnings = {WARNING_METRIC: "\n".join(self.warnings)} if self.warnings else {}
        self.warnings = []
        tune.report({**scalar_metrics(metrics), **self.extra, **warnings})


# --- the trainable ----------------------------------------------------------------------------
def run_tune_trial(param: dict[str, Any], sweep_root: str, hook: str | None = None,
                   trackers: Sequence[str] = ()) -> None:
    """Body of the Tune trainable: one trial, continued from its last good checkpoint in the sweep folder.

    The trial's files are checked first (a Tune retry may find what the driver's check did not),
    what is missing is trained, and the result is checked again before the final report, all under
    the trial's lock (:func:`orchestrator.resume_check.trial_lock`).
    """
    # The sweep's plugins register the names its configs use: imported before the config is read
    # (on a cluster the modules came with the runtime_env that `mtrl run` gave Ray).
    load_entry_points()
    load_plugins(param["trial"].get("plugins", []))
    config = TrialConfig.from_json(param["trial"]["config"])
    device = select_device(config.device, ray.get_gpu_ids())
    checkpointer = SweepCheckpointer(sweep_root, config.run_key, extra={"device": device})
    sink = ParquetSink.for_config(sweep_root, config)
    # The driver refused links in the folder when it claimed it; one made since would lead this
    # trial's writes, moves and deletions out of the folder: refused before the first of them.
    refuse_links(sweep_root, trial_paths(sweep_root, config, sink))
    try:
        # The trial's files are this worker's alone from its first check to its last report: an
        # earlier attempt or a worker of a killed driver's run still writing them is waited for.
        with trial_lock(sweep_root, config.run_key):
            _run_locked(config, sweep_root, hook, trackers, checkpointer, sink, device)
    except LockHeld as held:
        raise RuntimeError(f"its files are still being written by {held.holder} after {TRIAL_LOCK_WAIT_S:g} s (an "
                           f"earlier attempt that has not stopped?); it continues from its last good "
                           f"checkpoint") from None


def _run_locked(config: TrialConfig, sweep_root: str, hook: str | None, trackers: Sequence[str],
                checkpointer: SweepCheckpointer, sink: ParquetSink, device: str) -> None:
    check = check_trial(sweep_root, config)
    if check.problems:
        checkpointer.warn(check.line(sweep_root) or "")
    if not check.done:
        try:
            run_with_hook(hook, config, sweep_root, checkpointer, sink,
                          partial(_train, config, sweep_root, trackers, checkpointer.warn))
        except Exception:
            append_to_log(sweep_root, config.run_key, f"--- {utc_stamp()} traceback on the trial's worker\n"
                          f"{traceback.format_exc()}")
            raise
        sink.compact()  # idempotent; finishes a compaction a kill cut short after the last checkpoint
        after = check_trial(sweep_root, config)
        if not after.done:
            problem = after.line(sweep_root) or "its files are incomplete"
            raise RuntimeError(f"rows are missing after training ({problem}); it continues from its last good "
                               f"checkpoint")
    final: Metrics = {"step": config.total_steps, "epoch": config.n_epochs, "run_key": config.run_key,
                      "already_complete": check.done, "device": device}
    if checkpointer.warnings:
        final[WARNING_METRIC] = "\n".join(checkpointer.warnings)
    tune.report(final)


def trial_paths(sweep_root: str, config: TrialConfig, sink: ParquetSink) -> list[str]:
    """Every folder and file one trial writes, moves or deletes in the sweep folder."""
    return [trial_checkpoint_dir(sweep_root, config.run_key), *sink.dirs.values(), join(sweep_root, SET_ASIDE_DIR),
            trial_log_path(sweep_root, config.run_key), trial_failures_path(sweep_root, config.run_key),
            event_dir(sweep_root, config.run_key), progress_path(sweep_root, config.run_key)]


def _train(config: TrialConfig, sweep_root: str, trackers: Sequence[str], warn: Callable[[str], None],
           checkpointer: Checkpointer, sink: ParquetSink) -> None:
    from orchestrator.trial import run_trial  # torch: on the trial's worker only, never in the driver

    # The trial's trackers and its progress record (orchestrator.progress) for `mtrl status`.
    progress = ("progress", ProgressRecorder(sweep_root, config))
    run_trial(config, sink, checkpointer,
              open_trackers(trackers, TrackerRun(config, sweep_root), warn, extra=[progress]))


def make_trainable(sweep_root: str, hook: str | None = None,
                   trackers: Sequence[str] = ()) -> Callable[[dict[str, Any]], None]:
    """A function trainable bound to the sweep folder (a path or URI every node can reach) and the trackers."""
    trackers = list(trackers)

    def mtrl_trial(param: dict[str, Any]) -> None:
        run_tune_trial(param, sweep_root, hook, trackers)

    mtrl_trial.__name__ = mtrl_trial.__qualname__ = TRAINABLE_NAME
    return mtrl_trial


def trial_name(trial) -> str:
    """Tune trial name and folder name: the run_key (never Tune's random id)."""
    return trial.config["trial"]["run_key"]


def param_space(trials: Sequence[TrialConfig], plugins: Sequence[str] = ()) -> dict:
    """One grid value per trial: its run_key, its config's JSON and the sweep's plugin modules."""
    return {"trial": tune.grid_search([{"run_key": t.run_key, "config": t.to_json(), "plugins": list(plugins)}
                                       for t in trials])}


# --- faults: one line on the console, the traceback in the sweep folder ------------------------
def last_failure_text(error_file: str | None) -> str:
    """The newest failure in Tune's plain-text ``error.txt`` (never its pickled twin)."""
    if not error_file or not os.path.isfile(error_file):
        return "the trial's worker died or stopped answering (no error text)"
    with open(error_file, errors="replace") as f:
        text = f.read()
    return text.rsplit("Failure # ", 1)[-1].split("\n", 1)[-1].strip() or "unknown error"


class FailureLog(Callback):
    """Tune callback: one console line per failed trial attempt, the full text in ``logs/<run_key>.log``;
    and the trials' warning lines (reported as the ``mtrl_warning`` metric).

    ``logs/<run_key>.failures.json`` keeps the count over all runs and the last error line for
    ``mtrl status``. Written by the driver only (one writer), through the storage layer.
    """

    def __init__(self, sweep_root: str, max_failures: int) -> None:
        self.sweep_root, self.max_failures = sweep_root, max_failures

    def on_trial_result(self, iteration: int, trials, trial, result: dict, **info) -> None:
        for line in str(result.get(WARNING_METRIC) or "").splitlines():
            print(printable(line), file=sys.stderr, flush=True)

    def on_trial_recover(self, iteration: int, trials, trial, **info) -> None:
        self._record(trial, retrying=True)

    def on_trial_error(self, iteration: int, trials, trial, **info) -> None:
        self._record(trial, retrying=False)

    def _record(self, trial, retrying: bool) -> None:
        run_key = trial_name(trial)
        text = ANSI_ESCAPE.sub("", last_failure_text(trial.error_file))
        line = last_line(text)
        stamp = utc_stamp()
        attempt = trial.num_failures
        append_to_log(self.sweep_root, run_key, f"--- {stamp} attempt {attempt} of {self.max_failures + 1} failed "
                                                f"(as Tune saw it)\n{text}\n")
        before = read_failures(self.sweep_root, run_key) or FailuresRecord()
        write_failures(self.sweep_root, run_key,
                       FailuresRecord(failures=min(before.failures + 1, MAX_COUNT), last_error=line, time=stamp))
        then = "retrying from its last checkpoint" if retrying else "giving up in this run"
        shown = trial_log_path(self.sweep_root, run_key)
        print(f"{run_key}: attempt {attempt} of {self.max_failures + 1} failed: {line} ({then}; log: {shown})",
              file=sys.stderr, flush=True)


# --- Tuner ----------------------------------------------------------------------------------
def result_loggers() -> list:
    """Tune's per-trial loggers a sweep keeps: ``result.json`` and ``progress.csv``.

    Not Tune's TensorBoard logger: Tune adds it to every run unless
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` is 1 (``mtrl run`` sets it); it would import torch
    into the driver through tensorboardX and plot Tune's ``training_iteration``, which restarts in
    every run. The trials write their own event files on the training-step axis
    (``orchestrator.trackers``).
    """
    return [JsonLoggerCallback(), CSVLoggerCallback()]


def run_name() -> str:
    """This run's Tune experiment folder under ``tune/``: the UTC start time (sortable) and a unique suffix."""
    return time.strftime("run-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def build_tuner(spec: SweepSpec, trials: Sequence[TrialConfig], folder: SweepFolder,
                callbacks: Sequence[Any] = (), hook: str | None = None, trackers: Sequence[str] | None = None) -> Any:
    """A fresh Tuner over ``trials`` (the ones not complete), writing Tune's files to ``tune/run-<time>/``.

    ``hook``: the trials' :data:`TRIAL_HOOK_VARIABLE` (tests and benchmarks only); ``trackers``:
    what the trials write curves to (default: the spec's ``trackers``).
    """
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    chosen = spec.trackers if trackers is None else trackers
    trainable = tune.with_resources(make_trainable(folder.root, hook, chosen), resources)
    return tune.Tuner(
        trainable,
        param_space=param_space(trials, spec.plugins),
        tune_config=tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                    max_concurrent_trials=spec.max_concurrent_trials,
                                    # A finished trial's process takes the next trial: torch and
                                    # MiniGrid are imported once per worker, not once per trial.
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=run_name(),
            storage_path=folder.tune_dir,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[*callbacks, FailureLog(folder.root, spec.max_failures), *result_loggers()],
            verbose=0,
        ),
    )
