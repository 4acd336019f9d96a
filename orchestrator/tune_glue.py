"""Ray Tune glue: the trainable, Tune-backed checkpoints, GPU placement, Tuner build/restore.

One Tune trial per :class:`TrialConfig`: the param space is one ``grid_search`` over the
trials' canonical JSON, trials and their folders are named by ``run_key``. The trainable
calls the Ray-free :func:`orchestrator.trial.run_trial` with

* a :class:`ParquetSink` on the sweep folder (a path or URI handed over in the trainable's
  closure, so every node writes to the shared storage and never to a node-local folder);
* a :class:`TuneCheckpointer`: ``state.pt`` inside Tune checkpoints, reported together with
  the epoch's metrics, so Tune restores a retried or resumed trial from it.

A trial whose Parquet is already complete (its compacted file and no segments) reports its
end and returns without training: a trial that finished right before the driver died, when
Tune had not yet recorded it, is not re-run and its rows stay untouched.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow.fs as pafs

from orchestrator import faults
from orchestrator.checkpoint import STATE_FILE, Checkpointer, dump_state, load_state
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink, resolve_filesystem
from orchestrator.spec import SweepSpec
from orchestrator.sweep_folder import TUNE_DIR, SweepFolder

TRAINABLE_NAME = "mtrl_trial"
EXPERIMENT_STATE_GLOB = "experiment_state-"
CHECKPOINTS_TO_KEEP = 2


# --- where a trial's networks run -----------------------------------------------------------
def select_device(requested: str, gpu_ids: Sequence[Any], environ: dict[str, str] | None = None) -> str:
    """The device a trial's networks use, given the GPUs Ray assigned to it.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for a trial that got a GPU (whole or a fraction), so
    ``cuda`` is that GPU. A trial that got none must not touch a GPU of its node, and Ray 2.60
    leaves ``CUDA_VISIBLE_DEVICES`` alone then (ray-project/ray#54868): the GPUs are hidden
    here, before torch first looks for CUDA.
    """
    environ = os.environ if environ is None else environ
    if gpu_ids:
        return "cuda" if requested in ("auto", "cuda") else "cpu"
    if requested == "cuda":
        raise RuntimeError("the trial asks for device 'cuda' but Ray assigned it no GPU (resources.gpu is 0)")
    environ["CUDA_VISIBLE_DEVICES"] = ""
    return "cpu"


# --- checkpoints through Tune ---------------------------------------------------------------
def scalar_metrics(metrics: dict) -> dict:
    """Only the numbers and strings of ``metrics`` (what Tune's loggers can store)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


class TuneCheckpointer:
    """The :class:`~orchestrator.checkpoint.Checkpointer` protocol over Ray Tune checkpoints.

    A checkpoint is staged in ``<tmp>/mtrl-checkpoints/<run_key>/`` and copied to the
    sweep's storage by ``ray.tune.report``; the staging folder is removed right after, and a
    worker killed in between leaves at most one per trial and node, reused by its retry.
    """

    def __init__(self, run_key: str, extra: dict | None = None) -> None:
        self.staging = os.path.join(tempfile.gettempdir(), "mtrl-checkpoints", run_key)
        self.extra = dict(extra or {})

    def load(self) -> dict | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(os.path.join(directory, STATE_FILE))

    def save(self, state: dict, metrics: dict) -> None:
        from ray import tune

        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging)
        try:
            dump_state(state, os.path.join(self.staging, STATE_FILE))
            # Tune copies the folder to the sweep's storage before report returns.
            tune.report({**scalar_metrics(metrics), **self.extra},
                        checkpoint=tune.Checkpoint.from_directory(self.staging))
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def report(self, metrics: dict) -> None:
        from ray import tune

        tune.report({**scalar_metrics(metrics), **self.extra})


# --- the trainable ----------------------------------------------------------------------------
def parquet_complete(sink: ParquetSink) -> bool:
    """True when the run's Parquet is compacted: one file per dataset, no segments left."""
    for dataset in ("evals", "train"):
        files = sink.run_files(dataset)
        if [os.path.basename(f) for f in files] != [f"{sink.run_key}.parquet"]:
            return False
    return True


def run_tune_trial(param: dict, sweep_root: str, fault_spec: str | None = None) -> None:
    """Body of the Tune trainable: one trial, resumed from Tune's checkpoint when it has one."""
    import ray
    from ray import tune

    from orchestrator.trial import run_trial

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    config = TrialConfig.from_json(param["trial"]["config"])
    device = select_device(config.device, ray.get_gpu_ids())
    sink = ParquetSink.for_config(sweep_root, config)
    if parquet_complete(sink):
        tune.report({"step": config.total_steps, "epoch": config.n_epochs, "run_key": config.run_key,
                     "already_complete": True, "device": device})
        return
    checkpointer: Checkpointer = TuneCheckpointer(config.run_key, extra={"device": device})
    checkpointer = faults.wrap(checkpointer, config.run_key, fault_spec, sweep_root)
    run_trial(config, sink, checkpointer)


def make_trainable(sweep_root: str, fault_spec: str | None = None) -> Callable[[dict], None]:
    """A function trainable bound to the sweep folder (a path or URI every node can reach)."""

    def mtrl_trial(param: dict) -> None:
        run_tune_trial(param, sweep_root, fault_spec)

    mtrl_trial.__name__ = mtrl_trial.__qualname__ = TRAINABLE_NAME
    return mtrl_trial


def trial_name(trial) -> str:
    """Tune trial name and folder name: the run_key (never Tune's random id)."""
    return trial.config["trial"]["run_key"]


def param_space(trials: Sequence[TrialConfig]) -> dict:
    from ray import tune

    return {"trial": tune.grid_search([{"run_key": t.run_key, "config": t.to_json()} for t in trials])}


# --- Tuner ----------------------------------------------------------------------------------
def result_loggers() -> list:
    """Tune's per-trial loggers a sweep keeps: ``result.json`` and ``progress.csv``.

    Not TensorBoard: Tune adds its TensorBoard logger to every run unless
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` is 1 (``mtrl run`` sets it), and tensorboardX
    imports torch, which nothing else in the driver needs (~2 CPU-s per ``mtrl run``, plus
    a writer thread). Every metric is in the Parquet; ``RAY_TUNE_CALLBACKS=
    ray.tune.logger.TBXLoggerCallback`` brings the event files back.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [JsonLoggerCallback(), CSVLoggerCallback()]


def has_tune_state(folder: SweepFolder) -> bool:
    """True when Tune saved an experiment state to resume from (not just ``tuner.pkl``)."""
    from ray.tune import Tuner

    if not Tuner.can_restore(folder.tune_dir):
        return False
    fs, path = resolve_filesystem(folder.tune_dir)
    entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return any(e.base_name.startswith(EXPERIMENT_STATE_GLOB) for e in entries)


def grid_search(spec: SweepSpec):
    """The sweep's search algorithm: the grid, resumed from Tune's trials (see ``tune_state``)."""
    from orchestrator.tune_state import ResumableGridSearch

    return ResumableGridSearch(max_concurrent=spec.max_concurrent_trials or 0)


def build_tuner(spec: SweepSpec, trials: Sequence[TrialConfig], folder: SweepFolder,
                callbacks: Sequence[Any] = (), fault_spec: str | None = None):
    """``(tuner, resumed)``: a Tuner restored from the folder's Tune state, or a new one.

    A restore resumes unfinished trials and errored ones from their last checkpoint
    (``resume_errored=True``); finished trials stay finished.
    """
    from ray import tune

    from orchestrator.tune_state import TUNER_STATE, guard_tuner_state, tune_storage

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    trainable = tune.with_resources(make_trainable(folder.root, fault_spec), resources)
    space = param_space(trials)
    storage_path, storage_filesystem = tune_storage(folder.root)
    if guard_tuner_state(folder):
        logging.getLogger(__name__).warning(
            "Tune's %s in %s was damaged by an interrupted run; put back its verified copy",
            TUNER_STATE, folder.tune_dir)
    if has_tune_state(folder):
        tuner = tune.Tuner.restore(posixpath.join(storage_path, TUNE_DIR), trainable=trainable, param_space=space,
                                   resume_unfinished=True, resume_errored=True, restart_errored=False,
                                   storage_filesystem=storage_filesystem)
        # The restored RunConfig is the pickled one; give it this run's callbacks. The grid
        # search is this run's too (folders of older versions pickled Tune's default one).
        tuner._local_tuner.get_run_config().callbacks = [*callbacks, *result_loggers()]
        tuner._local_tuner._tune_config.search_alg = grid_search(spec)
        tuner._local_tuner._tune_config.max_concurrent_trials = None
        return tuner, True
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                    search_alg=grid_search(spec),
                                    # A finished trial's process takes the next trial: torch and
                                    # MiniGrid are imported once per worker, not once per trial.
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            callbacks=[*callbacks, *result_loggers()],
            verbose=0,
        ),
    )
    return tuner, False
