"""A sweep folder's grid over time: the versions of its spec it accepted, and what a new one does.

A sweep folder grows: a rerun of ``mtrl run`` with more seeds, benchmarks, architectures,
treatments, variants, axis values or baselines runs only the new trials. Its rules:

* a trial is a deterministic function of its config and is named by its run_key, so a trial
  that already has results (Parquet rows or a checkpoint) keeps its config: a new spec that
  would change it (a default, an override, ``total_steps``, a labelled treatment's parameters,
  the protocol) is refused, naming the changed fields and how many such trials each touches;
* adding or removing an axis field renames every trial, so a folder with results refuses it;
* values left out of the new grid leave their trials on disk: they are *outside the grid*
  (``mtrl status`` lists them, ``mtrl analyze`` leaves them out unless asked);
* every accepted version is kept as ``history/<NNNN>-<UTC time>.yaml``; ``sweep.yaml`` is
  the latest, which ``mtrl status`` and ``mtrl analyze`` read. A folder from before the
  history has its ``sweep.yaml`` recorded as version 1 when it first grows.

Everything here reads through the storage layer; :func:`record_version` is the only writer.
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from mtrl_plasticity.errors import UserError, brief
from mtrl_plasticity.results import CHECKPOINTS_DIR, HISTORY_DIR, METRICS_DIR, SPEC_FILE, run_key_of_file
from orchestrator.config import TrialConfig
from orchestrator.spec import SweepSpec, expand, validate_spec
from orchestrator.storage import list_files, read_bytes, resolve_filesystem, write_bytes_atomically
from orchestrator.yaml_input import MAX_FILE_BYTES, load_yaml_bytes

__all__ = ["Growth", "history_files", "known_trials", "plan_growth", "record_version", "run_keys_with_results"]


def history_files(root: str) -> list[str]:
    """The paths of the folder's recorded versions, oldest first (none for a folder from before the history)."""
    fs, path = resolve_filesystem(root)
    return [info.path for info in list_files(fs, posixpath.join(path, HISTORY_DIR))
            if info.base_name.endswith(".yaml") and not info.base_name.startswith(".")]


def _version_name(number: int, when: float) -> str:
    return f"{number:04d}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(when))}.yaml"


def record_version(root: str, text: str) -> str:
    """Record ``text`` (a resolved spec as YAML) as the folder's next version, then make it ``sweep.yaml``.

    A folder whose ``sweep.yaml`` predates the history first gets that file as version 1 (dated
    by its modification time). The history entry is written before ``sweep.yaml``: a crash
    between the two leaves the old ``sweep.yaml`` in charge and the next run records again.
    Returns the new version's file name.
    """
    fs, path = resolve_filesystem(root)
    existing = history_files(root)
    spec_path = posixpath.join(path, SPEC_FILE)
    if not existing:
        old = read_bytes(fs, spec_path)
        if old is not None:
            info = fs.get_file_info(spec_path)
            when = info.mtime.timestamp() if info.mtime else time.time()
            first = posixpath.join(path, HISTORY_DIR, _version_name(1, when))
            write_bytes_atomically(fs, first, old)
            existing = [first]
    name = _version_name(len(existing) + 1, time.time())
    write_bytes_atomically(fs, posixpath.join(path, HISTORY_DIR, name), text.encode())
    write_bytes_atomically(fs, spec_path, text.encode())
    return name


def _read_version(fs: pafs.FileSystem, path: str) -> SweepSpec | None:
    data = read_bytes(fs, path, MAX_FILE_BYTES + 1)
    if data is None:
        return None
    try:
        return validate_spec(load_yaml_bytes(data, path), path, stored=True)
    except UserError:
        return None  # e.g. a plugin no longer installed: its trials read as rows of unknown runs


def known_trials(root: str, latest: SweepSpec) -> dict[str, TrialConfig]:
    """``{run_key: config}`` of every trial any recorded version of the grid held, the latest's config
    winning (versions that no longer validate are skipped)."""
    fs, _ = resolve_filesystem(root)
    out: dict[str, TrialConfig] = {}
    for path in history_files(root):
        spec = _read_version(fs, path)
        if spec is not None:
            try:
                out.update((t.run_key, t) for t in expand(spec))
            except UserError:
                continue
    out.update((t.run_key, t) for t in expand(latest))
    return out


def run_keys_with_results(root: str) -> set[str]:
    """Run keys that have Parquet files (any dataset) or a checkpoint in the sweep folder."""
    fs, path = resolve_filesystem(root)
    keys = {run_key_of_file(info.base_name) for info in list_files(fs, posixpath.join(path, METRICS_DIR),
                                                                        recursive=True)}
    checkpoints = posixpath.join(path, CHECKPOINTS_DIR)
    for info in list_files(fs, checkpoints, recursive=True):
        keys.add(posixpath.relpath(info.path, checkpoints).split("/")[0])
    keys.discard(None)
    return {k for k in keys if k}


@dataclass
class Growth:
    """What a sweep file does to a folder that already holds the sweep (see the module docstring)."""

    added: list[TrialConfig] = field(default_factory=list)
    """Trials of the new grid that no recorded version had."""
    outside: list[str] = field(default_factory=list)
    """Run keys with results that the new grid leaves out (they stay on disk)."""
    changed: Counter = field(default_factory=Counter)
    """``"total_steps: 400 -> 800"`` -> how many trials with results that change touches."""
    renamed_by_axes: str | None = None
    """The axis fields added or removed, when the folder has results (every trial would be renamed)."""
    with_results: int = 0
    """Trials of the folder with results."""
    changed_trials: set[str] = field(default_factory=set)
    """Run keys of the trials with results whose config the spec changes."""

    @property
    def refused(self) -> bool:
        return bool(self.changed) or self.renamed_by_axes is not None

    def refusal(self, root: str, name: str) -> str:
        """The one line that refuses the spec (only when :attr:`refused`)."""
        how = "start a new sweep with --name NEW_NAME or another --storage"
        if self.renamed_by_axes is not None:
            return (f"{root} holds sweep {name!r} with results of {self.with_results} trial(s); {self.renamed_by_axes} "
                    f"would rename every trial (an axis is part of the run_key); {how}")
        shown = "; ".join(f"{change} ({n} trial{'s' if n != 1 else ''})" for change, n in
                          sorted(self.changed.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
        more = f"; and {len(self.changed) - 4} more changes" if len(self.changed) > 4 else ""
        return (f"{root} holds sweep {name!r}; this spec changes the config of {len(self.changed_trials)} trial(s) "
                f"that already have "
                f"results: {shown}{more}; keep those values to grow the sweep, or {how}")


def config_changes(old: TrialConfig, new: TrialConfig) -> list[str]:
    """``["total_steps: 400 -> 800", "treatment_params.tau: 0.001 -> 0.002"]`` between two configs of one trial."""
    a, b = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    missing = object()
    return [f"{key}: {_show(a.get(key, missing), missing)} -> {_show(b.get(key, missing), missing)}"
            for key in sorted(set(a) | set(b)) if a.get(key, missing) != b.get(key, missing)]


def _show(value: Any, missing: object) -> str:
    return "(default)" if value is missing else brief(value)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def plan_growth(root: str, stored: SweepSpec, spec: SweepSpec, trials: list[TrialConfig]) -> Growth:
    """Compare ``spec`` (expanded: ``trials``) with the folder's recorded grid (``stored`` the latest)."""
    known = known_trials(root, stored)
    with_results = run_keys_with_results(root) & set(known)
    growth = Growth(with_results=len(with_results))
    if set(stored.axes) != set(spec.axes) and with_results:
        added = sorted(set(spec.axes) - set(stored.axes))
        removed = sorted(set(stored.axes) - set(spec.axes))
        parts = ([f"adding the axis {', '.join(added)}"] if added else []) + \
            ([f"removing the axis {', '.join(removed)}"] if removed else [])
        growth.renamed_by_axes = " and ".join(parts)
        return growth
    new_keys = set()
    for trial in trials:
        new_keys.add(trial.run_key)
        old = known.get(trial.run_key)
        if old is None:
            growth.added.append(trial)
        elif trial.run_key in with_results and old != trial:
            growth.changed_trials.add(trial.run_key)
            growth.changed.update(config_changes(old, trial))
    growth.outside = sorted(with_results - new_keys)
    return growth
