"""MLflow: one MLflow run per trial, written by MLflow's own client (``MlflowClient``) on the trial's worker.

* The tracking store is MLflow's (``MLFLOW_TRACKING_URI``: a server, Databricks, or a local
  ``file:`` store, which MLflow 3 opens only with ``MLFLOW_ALLOW_FILE_STORE=true``).
* Experiment: ``MLFLOW_EXPERIMENT_NAME``, else the sweep's name. MLflow chooses run ids
  itself, so the stable id (:func:`~orchestrator.trackers.base.stable_run_id` of the sweep and
  the run_key) is the run's tag ``mtrl.run_id``: every run of a trial finds its MLflow run by
  it and continues it. Run name: the run_key; tags ``mtrl.sweep``, ``mtrl.run_key`` and
  ``mtrl.cell`` (group the runs table by ``mtrl.cell``); params: the TrialConfig.
* x-axis: the lock-step training step (MLflow's ``step``). MLflow keeps every point it is
  given, so a resumed trial first reads each metric's history and logs only the steps after
  the last one there: each tag has one point per step, and the steps a killed run logged past
  its checkpoint keep that run's values, which equal the Parquet's. Each ``log`` is one
  ``log_batch`` call that returns once the store has the points.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.trackers.base import TrackerRun

RUN_ID_TAG = "mtrl.run_id"
MAX_PARAM_CHARS = 500
"""MLflow's smallest param length limit across its stores; longer values are cut."""


def experiment_name(sweep: str) -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or sweep


class MlflowTracker:
    def __init__(self, run: TrackerRun) -> None:
        self.run = run
        self.client: Any = None
        self.run_id = ""
        self.logged_up_to: dict[str, int] = {}
        """The last step each metric already holds (a resumed trial logs only what comes after)."""

    def start(self, resumed_from: int | None) -> None:
        from mlflow import MlflowClient  # the optional extra, on the trial's worker only
        from mlflow.entities import Param

        self.client = MlflowClient()
        experiment_id = self._experiment_id()
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{self.run.stable_id}'",
                                        max_results=1)
        if found:
            existing = found[0]
            self.run_id = existing.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            for key in existing.data.metrics:
                history = self.client.get_metric_history(self.run_id, key)
                self.logged_up_to[key] = max(point.step for point in history)
            return
        tags = {RUN_ID_TAG: self.run.stable_id, "mtrl.sweep": self.run.sweep, "mtrl.run_key": self.run.run_key,
                "mtrl.cell": self.run.group}
        created = self.client.create_run(experiment_id, run_name=self.run.run_key, tags=tags)
        self.run_id = created.info.run_id
        params = [Param(key, str(value)[:MAX_PARAM_CHARS])
                  for key, value in sorted(self.run.config.model_dump(mode="json").items())]
        self.client.log_batch(self.run_id, params=params)

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException  # the optional extra, on the trial's worker only

        name = experiment_name(self.run.sweep)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another trial created it at the same moment
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric  # the optional extra, on the trial's worker only

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, value, stamp, step) for key, value in scalars.items()
                   if step > self.logged_up_to.get(key, -1)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def checkpoint(self, step: int) -> None:
        """Nothing to do: every ``log_batch`` has returned once the store held its points."""

    def close(self, finished: bool) -> None:
        if self.client is not None and self.run_id:
            self.client.set_terminated(self.run_id, status="FINISHED" if finished else "FAILED")
            self.run_id = ""
