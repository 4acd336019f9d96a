"""Fault injection for the sweep tests: one trial crashes once at a chosen step, or pauses mid-compaction.

A trial hook (``orchestrator.trial_hook``): run ``mtrl run`` with

    MTRL_TRIAL_HOOK=testkit.faults:inject  MTRL_INJECT_FAULT=<run_key>@<step>[,...]  PYTHONPATH=<tests>

(:func:`environment` builds these). The trial ``run_key`` raises :class:`InjectedFault` when
it reaches ``step``: at a checkpoint step right after its Parquet segment is written and
before the checkpoint is reported (the worst moment for duplicates), otherwise after the
epoch's rows are buffered. A marker file under ``<sweep folder>/.injected-faults/`` records
that the fault fired, so the retry (a fresh process) runs through.

``<run_key>@compact`` instead pauses that trial for :data:`PAUSE_S` seconds in the middle of
its final compaction (the evaluation rows compacted, the training segments not yet), after
writing the marker ``<run_key>@compact``, so a test can kill the driver at that moment.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Sequence
from typing import Any

import pyarrow.fs as pafs

from orchestrator.checkpoint import Accept, Checkpointer, Metrics, State
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.storage import resolve_filesystem
from orchestrator.trial_hook import TRIAL_HOOK_VARIABLE, Train

ENV_VAR = "MTRL_INJECT_FAULT"
HOOK = "testkit.faults:inject"
MARKER_DIR = ".injected-faults"
COMPACT = "compact"
PAUSE_S = 120.0
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class InjectedFault(RuntimeError):
    """The crash a test asked for."""


def environment(faults: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that make ``mtrl run`` inject ``faults`` (``"a@1000,b@compact"``)."""
    base = dict(os.environ if base is None else base)
    paths = [TESTS_DIR, *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {**base, TRIAL_HOOK_VARIABLE: HOOK, ENV_VAR: faults, "PYTHONPATH": os.pathsep.join(paths)}


def parse_faults(text: str | None) -> dict[str, int | str]:
    """``"a@1000,b@compact"`` -> ``{"a": 1000, "b": "compact"}``; ValueError on a malformed entry."""
    faults: dict[str, int | str] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        run_key, sep, step = entry.rpartition("@")
        if not sep or not run_key or not (step.isdigit() or step == COMPACT):
            raise ValueError(f"{ENV_VAR} expects run_key@step[,run_key@step...], got {entry!r}")
        faults[run_key] = int(step) if step.isdigit() else step
    return faults


def inject(config: TrialConfig, sweep_root: str, checkpointer: Checkpointer, sink: ParquetSink,
           train: Train) -> Any:
    """The trial hook: ``train`` with this trial's fault (from :data:`ENV_VAR`) wrapped around it."""
    fault = parse_faults(os.environ.get(ENV_VAR)).get(config.run_key)
    if isinstance(fault, int):
        checkpointer = FaultInjectingCheckpointer(checkpointer, config.run_key, fault, sweep_root)
    elif fault == COMPACT:
        pause_compaction(sink, config.run_key, sweep_root)
    return train(checkpointer, sink)


class FaultInjectingCheckpointer:
    """Wraps a checkpointer; raises once at ``step`` (see the module docstring)."""

    def __init__(self, inner: Checkpointer, run_key: str, step: int, sweep_root: str) -> None:
        self.inner, self.run_key, self.step = inner, run_key, step
        self.fs, root = resolve_filesystem(sweep_root)
        self.marker = posixpath.join(root, MARKER_DIR, f"{run_key}@{step}")

    def load(self, accept: Accept | None = None) -> State | None:
        return self.inner.load(accept)

    def save(self, state: State, metrics: Metrics) -> None:
        self._maybe_fail(metrics)
        self.inner.save(state, metrics)

    def report(self, metrics: Metrics) -> None:
        self._maybe_fail(metrics)
        self.inner.report(metrics)

    def _maybe_fail(self, metrics: Metrics) -> None:
        if metrics.get("step") != self.step:
            return
        if self.fs.get_file_info(self.marker).type != pafs.FileType.NotFound:
            return
        _write_marker(self.fs, self.marker, b"fired")
        raise InjectedFault(f"injected fault in {self.run_key} at step {self.step} ({ENV_VAR})")


def pause_compaction(sink: ParquetSink, run_key: str, sweep_root: str) -> None:
    """Make ``sink``'s final compaction pause half-way once (see the module docstring)."""
    fs, root = resolve_filesystem(sweep_root)
    marker = posixpath.join(root, MARKER_DIR, f"{run_key}@{COMPACT}")
    compact = sink.compact

    def paused_compact(datasets: Sequence[str] = ("evals", "train")) -> None:
        compact(["evals"])
        if fs.get_file_info(marker).type == pafs.FileType.NotFound:
            _write_marker(fs, marker, b"paused")
            time.sleep(PAUSE_S)
        compact(datasets)

    sink.compact = paused_compact  # type: ignore[method-assign]


def _write_marker(fs: pafs.FileSystem, path: str, text: bytes) -> None:
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text)
