"""Weights & Biases: one W&B run per trial, written by W&B's own client on the trial's worker.

* id: :func:`~orchestrator.trackers.base.stable_run_id` of the sweep and the run_key, so every
  run of a trial (Tune's retries, a rerun of ``mtrl run``, ``mtrl trial --resume``) continues
  the same W&B run (``resume="allow"``); name: the run_key; group: the cell (``MT3/moe/dense``);
  config: the TrialConfig; project: ``WANDB_PROJECT``, else the sweep's name.
* x-axis: the lock-step training step, given as W&B's ``step``. W&B keeps a run's steps
  increasing and ignores a point below the run's current step. W&B's service process writes
  and sends asynchronously, so a killed trial may lose its last points (in offline mode, a
  SIGKILL lost the whole file of the run it killed). A resumed trial therefore first logs
  again, from the Parquet, every step up to its checkpoint (:func:`committed_points`): W&B
  keeps the ones it lacks and ignores the rest, and the steps a killed run logged past the
  checkpoint keep its values, which equal the Parquet's (the tags are the deterministic
  columns). In offline mode (``WANDB_MODE=offline``) every run of a trial is its own
  ``offline-run-*-<id>`` folder, all with the same id, the newest holding the whole history;
  ``wandb sync`` uploads them.
* local files: under ``WANDB_DIR``, else the results folder (W&B makes its ``wandb/`` folder
  there: ``<results>/wandb/offline-run-*``), else, for ``s3://`` storage, the worker's temporary
  folder. W&B's console notices are off (``WANDB_SILENT``, unless set).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from mtrl_plasticity.results import WANDB_DIR
from orchestrator.storage import is_uri, join
from orchestrator.trackers.base import TrackerRun, committed_points


def wandb_dir(results_root: str) -> str:
    """The folder W&B makes its ``wandb/`` folder in for the trials of ``results_root`` (see the module docstring)."""
    if os.environ.get("WANDB_DIR"):
        return os.environ["WANDB_DIR"]
    if is_uri(results_root):
        return os.path.join(tempfile.gettempdir(), "mtrl-wandb")
    return join(results_root)


def offline_runs_dir(results_root: str) -> str:
    """Where W&B keeps the runs of a local results folder: ``<results>/wandb``."""
    return os.path.join(wandb_dir(results_root), WANDB_DIR)


class WandbTracker:
    def __init__(self, run: TrackerRun) -> None:
        self.run = run
        self.wandb_run: Any = None

    def start(self, resumed_from: int | None) -> None:
        # W&B prints notices at import and init (offline resume, integrations found): the console is the
        # user's progress bar or Tune's log.
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb  # the optional extra, on the trial's worker only

        directory = wandb_dir(self.run.results_root)
        os.makedirs(directory, exist_ok=True)
        self.wandb_run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or self.run.sweep, id=self.run.stable_id,
            name=self.run.run_key, group=self.run.group, job_type="trial",
            config=self.run.config.model_dump(mode="json"), resume="allow", dir=directory,
            # Tune reuses a worker for the next trial: each trial is a run of its own.
            reinit="create_new",
            # The worker's console is Tune's log; W&B's own summary lines would only add to it.
            settings=wandb.Settings(console="off", silent=True))
        if resumed_from is not None:
            for step, scalars in committed_points(self.run, resumed_from):
                self.wandb_run.log(scalars, step=step)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.wandb_run.log(dict(scalars), step=step)

    def checkpoint(self, step: int) -> None:
        """Nothing to do: W&B's service process sends what was logged."""

    def close(self, finished: bool) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=0 if finished else 1)
            self.wandb_run = None
