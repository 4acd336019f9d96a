"""A trial hook that holds one trial still once, mid-run, so a test can look at a running sweep.

Run ``mtrl run`` with :func:`environment` (``MTRL_TRIAL_HOOK=testkit.pause:pause``,
``MTRL_PAUSE_AT=<run_key>@<step>``): when that trial has reported ``step`` (an epoch without a
checkpoint: its trackers and progress record hold the step, its Parquet and checkpoint the one
before), it writes the marker ``<sweep>/.paused/<run_key>@<step>`` and sleeps for
:data:`PAUSE_S` seconds (``MTRL_PAUSE_S`` to change it) or until the test kills it, then trains on.
The marker keeps a rerun from pausing again.
"""

from __future__ import annotations

import os
import posixpath
import time
from typing import Any

import pyarrow.fs as pafs

from orchestrator.checkpoint import Accept, Checkpointer, Metrics, State
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.storage import resolve_filesystem, write_bytes_atomically
from orchestrator.trial_hook import TRIAL_HOOK_VARIABLE, Train

ENV_VAR = "MTRL_PAUSE_AT"
SECONDS_VAR = "MTRL_PAUSE_S"
HOOK = "testkit.pause:pause"
MARKER_DIR = ".paused"
PAUSE_S = 180.0
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(at: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that make ``mtrl run`` pause the trial ``at`` (``"<run_key>@<step>"``) once."""
    base = dict(os.environ if base is None else base)
    paths = [TESTS_DIR, *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {**base, TRIAL_HOOK_VARIABLE: HOOK, ENV_VAR: at, "PYTHONPATH": os.pathsep.join(paths)}


def marker_path(sweep_root: str, at: str) -> str:
    return os.path.join(sweep_root, MARKER_DIR, at)


def pause(config: TrialConfig, sweep_root: str, checkpointer: Checkpointer, sink: ParquetSink, train: Train) -> Any:
    """The trial hook (see the module docstring)."""
    run_key, _, step = (os.environ.get(ENV_VAR) or "").rpartition("@")
    if run_key == config.run_key and step.isdigit():
        checkpointer = PausingCheckpointer(checkpointer, int(step), posixpath.join(
            resolve_filesystem(sweep_root)[1], MARKER_DIR, f"{run_key}@{step}"))
    return train(checkpointer, sink)


class PausingCheckpointer:
    def __init__(self, inner: Checkpointer, step: int, marker: str) -> None:
        self.inner, self.step, self.marker = inner, step, marker
        self.fs = pafs.LocalFileSystem()

    def load(self, accept: Accept | None = None) -> State | None:
        return self.inner.load(accept)

    def save(self, state: State, metrics: Metrics) -> None:
        self.inner.save(state, metrics)

    def report(self, metrics: Metrics) -> None:
        self.inner.report(metrics)
        if metrics.get("step") == self.step and self.fs.get_file_info(self.marker).type == pafs.FileType.NotFound:
            write_bytes_atomically(self.fs, self.marker, b"paused")
            time.sleep(float(os.environ.get(SECONDS_VAR) or PAUSE_S))
