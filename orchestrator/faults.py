"""Testing only: make one trial crash once at a chosen step, to exercise retries.

Set ``MTRL_INJECT_FAULT=<run_key>@<step>`` in the environment of ``mtrl run``. The trial
``run_key`` raises :class:`InjectedFault` when it reaches ``step``: at a checkpoint step
right after its Parquet segment is written and before the checkpoint is reported (the
worst moment for duplicates), otherwise after the epoch's rows are buffered. A marker
file under ``<sweep folder>/.injected-faults/`` records that the fault fired, so the retry
(a fresh process) runs through. Several faults are separated by commas. This is not part of
the sweep file on purpose: it never changes what a sweep computes.

``<run_key>@compact`` instead pauses that trial for ``PAUSE_S`` seconds in the middle of its
final compaction (the evaluation rows compacted, the training segments not yet), after
writing the marker ``<run_key>@compact``, so a test can kill the driver at that moment.
"""

from __future__ import annotations

import os
import posixpath
import time

import pyarrow.fs as pafs

from orchestrator.checkpoint import Checkpointer
from orchestrator.sink import resolve_filesystem

ENV_VAR = "MTRL_INJECT_FAULT"
MARKER_DIR = ".injected-faults"
COMPACT = "compact"
PAUSE_S = 120.0


class InjectedFault(RuntimeError):
    """The crash a test asked for."""


def parse_faults(text: str | None) -> dict[str, int | str]:
    """``"a@1000,b@compact"`` -> ``{"a": 1000, "b": "compact"}``; ValueError on a malformed entry."""
    faults: dict[str, int | str] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        run_key, sep, step = entry.rpartition("@")
        if not sep or not run_key or not (step.isdigit() or step == COMPACT):
            raise ValueError(f"{ENV_VAR} expects run_key@step[,run_key@step...], got {entry!r}")
        faults[run_key] = int(step) if step.isdigit() else step
    return faults


def faults_from_environment() -> str | None:
    """The raw fault list of this process (validated), to hand to the trainable."""
    text = os.environ.get(ENV_VAR) or None
    parse_faults(text)
    return text


class FaultInjectingCheckpointer:
    """Wraps a checkpointer; raises once at ``step`` (see the module docstring)."""

    def __init__(self, inner: Checkpointer, run_key: str, step: int, sweep_root: str) -> None:
        self.inner, self.run_key, self.step = inner, run_key, step
        self.fs, root = resolve_filesystem(sweep_root)
        self.marker = posixpath.join(root, MARKER_DIR, f"{run_key}@{step}")

    def load(self) -> dict | None:
        return self.inner.load()

    def save(self, state: dict, metrics: dict) -> None:
        self._maybe_fail(metrics)
        self.inner.save(state, metrics)

    def report(self, metrics: dict) -> None:
        self._maybe_fail(metrics)
        self.inner.report(metrics)

    def _maybe_fail(self, metrics: dict) -> None:
        if metrics.get("step") != self.step:
            return
        if self.fs.get_file_info(self.marker).type != pafs.FileType.NotFound:
            return
        self.fs.create_dir(posixpath.dirname(self.marker), recursive=True)
        with self.fs.open_output_stream(self.marker) as f:
            f.write(b"fired")
        raise InjectedFault(f"injected fault in {self.run_key} at step {self.step} ({ENV_VAR})")


def wrap(checkpointer: Checkpointer, run_key: str, faults: str | None, sweep_root: str) -> Checkpointer:
    """``checkpointer`` itself, or wrapped when ``faults`` names ``run_key`` at a step."""
    step = parse_faults(faults).get(run_key)
    if not isinstance(step, int):
        return checkpointer
    return FaultInjectingCheckpointer(checkpointer, run_key, step, sweep_root)


def wrap_sink(sink, run_key: str, faults: str | None, sweep_root: str):
    """``sink`` itself, or one whose compaction pauses half-way when ``faults`` names ``run_key@compact``."""
    if parse_faults(faults).get(run_key) != COMPACT:
        return sink
    fs, root = resolve_filesystem(sweep_root)
    marker = posixpath.join(root, MARKER_DIR, f"{run_key}@{COMPACT}")
    compact = sink.compact

    def paused_compact(datasets=("evals", "train")) -> None:
        compact(["evals"])
        if fs.get_file_info(marker).type == pafs.FileType.NotFound:
            fs.create_dir(posixpath.dirname(marker), recursive=True)
            with fs.open_output_stream(marker) as f:
                f.write(b"paused")
            time.sleep(PAUSE_S)
        compact(datasets)

    sink.compact = paused_compact
    return sink
