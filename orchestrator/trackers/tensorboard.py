"""TensorBoard scalars of a trial, written by torch's ``SummaryWriter`` on the trial's worker.

Event files go to ``<results>/tensorboard/<run_key>/`` (``tensorboard --logdir
<results>/tensorboard`` shows every trial). The x-axis is the lock-step training step.

Exactly one point per tag and step across kills and resumes: every run of a trial opens its
writer with ``purge_step`` = the first step it may log (0 from scratch, the checkpoint step + 1
on a resume). The writer then records a session start at that step, and TensorBoard's reader
drops every earlier point at or past it (``tensorboard.backend.event_processing``'s
``purge_orphaned_data``, on by default), so what a killed run logged after its last checkpoint
is hidden and the resume's points, equal to the Parquet's, take their place. Everything is
flushed before each checkpoint: a point at or before a checkpoint is never logged again.

Object stores (``s3://``) cannot take appends: the event files are written in a local
temporary folder on the worker and uploaded whole through :mod:`orchestrator.storage` at each
checkpoint and at the end, so on ``s3://`` the curves move at checkpoints, not at every epoch.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from mtrl_plasticity.results import TENSORBOARD_DIR
from orchestrator.storage import is_uri, join, resolve_filesystem, write_bytes_atomically
from orchestrator.trackers.base import TrackerRun


def event_dir(results_root: str, run_key: str) -> str:
    """Where a trial's event files live: ``<results>/tensorboard/<run_key>`` (a path or a URI)."""
    return join(results_root, TENSORBOARD_DIR, run_key)


class TensorBoardTracker:
    """One ``SummaryWriter`` per run of a trial (see the module docstring)."""

    def __init__(self, run: TrackerRun) -> None:
        self.run = run
        self.target = event_dir(run.results_root, run.run_key)
        self.remote = is_uri(self.target)
        self.writer: Any = None
        self.local_dir = ""

    def start(self, resumed_from: int | None) -> None:
        # torch's writer (it needs the tensorboard package): on the trial's worker only, never in the driver.
        from torch.utils.tensorboard import SummaryWriter

        if self.remote:
            self.local_dir = tempfile.mkdtemp(prefix=f"mtrl-tensorboard-{self.run.run_key}-")
        else:
            self.local_dir = self.target
            os.makedirs(self.local_dir, exist_ok=True)
        first_step = 0 if resumed_from is None else resumed_from + 1
        self.writer = SummaryWriter(log_dir=self.local_dir, purge_step=first_step, max_queue=1000, flush_secs=3600)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)
        if not self.remote:
            self.writer.flush()  # live curves on local and NFS storage: every epoch

    def checkpoint(self, step: int) -> None:
        self.writer.flush()
        if self.remote:
            self._upload()

    def close(self, finished: bool) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        if self.remote:
            try:
                self._upload()
            finally:
                shutil.rmtree(self.local_dir, ignore_errors=True)

    def _upload(self) -> None:
        """Copy this run's event files whole to the object store (each run writes files of its own names)."""
        fs, path = resolve_filesystem(self.target)
        for name in sorted(os.listdir(self.local_dir)):
            with open(os.path.join(self.local_dir, name), "rb") as handle:
                write_bytes_atomically(fs, posixpath.join(path, name), handle.read())
