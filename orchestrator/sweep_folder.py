"""A sweep's results folder on its storage: check it is writable, claim it, record its grid.

Layout of ``<storage>/<sweep name>/`` (the names: :mod:`mtrl_plasticity.results`)::

    mtrl-results.json   marker (see orchestrator.storage): layout "sweep"
    sweep.yaml          the resolved spec: the grid's latest version
    history/            every version of the grid the folder accepted (orchestrator.sweep_history)
    tune/               Ray Tune's experiment folder (state, per-trial checkpoints)
    metrics/evals/...   Parquet (orchestrator.schema)
    metrics/train/...

Storage is a local or NFS path or a URI that ``pyarrow.fs`` understands (``s3://...``);
every check here goes through ``pyarrow.fs`` for URIs and refuses before anything is
written into a folder that is foreign, belongs to another sweep, or holds trials with
results whose config the new spec would change (a grown grid is accepted:
:mod:`orchestrator.sweep_history`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import yaml

from mtrl_plasticity.errors import NotWritableError, ResultsDirError
from mtrl_plasticity.results import MARKER, SPEC_FILE, TUNE_DIR
from orchestrator import estimate
from orchestrator.config import TrialConfig
from orchestrator.spec import SweepSpec, expand, validate_spec
from orchestrator.storage import (
    LockHeld,
    claim,
    exclusive_lock,
    file_type,
    join,
    lock_holder,
    read_bytes,
    read_marker,
    refuse_foreign,
    resolve_filesystem,
)
from orchestrator.sweep_history import Growth, plan_growth, record_version
from orchestrator.yaml_input import MAX_FILE_BYTES, load_yaml_bytes

LOCK_FILE = ".driver.lock"


@dataclass(frozen=True)
class SweepFolder:
    """Where one sweep lives: ``root`` is an absolute local path or a URI."""

    root: str

    @classmethod
    def for_spec(cls, spec: SweepSpec, storage: str | None = None) -> "SweepFolder":
        return cls(join(storage or spec.storage, spec.name))

    @property
    def tune_dir(self) -> str:
        return join(self.root, TUNE_DIR)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        return resolve_filesystem(self.root)

    def read_bytes(self, name: str, limit: int = -1) -> bytes | None:
        """Contents of ``<root>/<name>`` (at most ``limit`` bytes if given), or ``None`` when it does not exist."""
        fs, path = self.filesystem()
        return read_bytes(fs, posixpath.join(path, name), limit)

    def stored_spec(self) -> SweepSpec | None:
        """The grid's latest version in this folder (``sweep.yaml``), or ``None`` for a new folder."""
        data = self.read_bytes(SPEC_FILE, limit=MAX_FILE_BYTES + 1)
        if data is None:
            return None
        source = f"{self.root}/{SPEC_FILE}"
        return validate_spec(load_yaml_bytes(data, source), source, stored=True)


def check_writable(storage: str) -> None:
    """Create ``storage`` if needed and write then delete a probe file; ``PermissionError`` if not."""
    probe = f".mtrl-probe-{uuid.uuid4().hex}"
    try:
        fs, path = resolve_filesystem(storage)
        fs.create_dir(path, recursive=True)
        target = posixpath.join(path, probe)
        with fs.open_output_stream(target) as f:
            f.write(b"probe")
        fs.delete_file(target)
    except (OSError, pa.ArrowException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise NotWritableError(f"storage {storage} is not writable ({reason})") from None


@dataclass(frozen=True)
class Claim:
    """What :func:`prepare` found and did."""

    existed: bool
    """The folder held this sweep before."""
    version: str | None = None
    """The history file this call recorded (a new folder, or a grown or otherwise changed spec); None: unchanged."""
    growth: Growth | None = None
    """How the spec relates to the folder's grid (None for a new folder)."""


def prepare(folder: SweepFolder, spec: SweepSpec, trials: list[TrialConfig] | None = None) -> Claim:
    """Claim ``folder`` for ``spec``'s sweep (``trials``: its expansion, computed if not given).

    Refuses (``ResultsDirError``) a foreign folder, a trial folder, another sweep's folder, and
    a spec that would change the config of a trial with results or rename every trial
    (:func:`orchestrator.sweep_history.plan_growth`, naming the changes). A new folder gets
    its marker; a new or changed spec is recorded in the history and becomes ``sweep.yaml``.
    ``mtrl run`` calls it through :func:`claimed`, under the driver lock.
    """
    _refuse_nested(folder)
    _refuse_foreign(folder)
    claim(folder.root, "sweep", ignore=(LOCK_FILE,))
    stored = folder.stored_spec()
    if stored is None:
        return Claim(False, record_version(folder.root, _spec_text(spec)))
    if stored.name != spec.name:
        raise ResultsDirError(f"{folder.root} holds sweep {stored.name!r}, not {spec.name!r}")
    growth = plan_growth(folder.root, stored, spec, trials if trials is not None else expand(spec))
    if growth.refused:
        raise ResultsDirError(growth.refusal(folder.root, spec.name))
    if _same(stored, spec):
        return Claim(True, None, growth)
    return Claim(True, record_version(folder.root, _spec_text(spec)), growth)


NOT_RECORDED = {"storage": "", "trackers": []}
"""Settings of one run, not of the grid: a rerun may change them without a new version in the history
(``--storage`` may name the same folder another way; ``--tracker`` picks this run's live curves)."""


def _same(stored: SweepSpec, spec: SweepSpec) -> bool:
    """The same spec, but for :data:`NOT_RECORDED`."""
    return stored.model_copy(update=NOT_RECORDED).resolved() == spec.model_copy(update=NOT_RECORDED).resolved()


@contextlib.contextmanager
def claimed(folder: SweepFolder, spec: SweepSpec, trials: list[TrialConfig] | None = None) -> Iterator[Claim]:
    """:func:`prepare` under the driver lock, held until the block ends; yields its :class:`Claim`.

    The lock is taken before the spec is checked or written: of two drivers started at once
    on a new folder, one writes ``sweep.yaml`` and the other is refused. A foreign folder is
    refused before the lock file is made in it.
    """
    _refuse_nested(folder)
    _refuse_foreign(folder)
    with driver_lock(folder):
        yield prepare(folder, spec, trials)


@contextlib.contextmanager
def driver_lock(folder: SweepFolder) -> Iterator[None]:
    """Hold the sweep's driver lock: one ``mtrl run`` per sweep folder at a time.

    A ``flock`` on ``<root>/.driver.lock`` (local and NFS paths), released by the kernel
    when the driver exits or is killed. Object stores (``s3://``) have no locks: there,
    running one driver per sweep is the user's job.
    """
    try:
        # A little patience: `mtrl status` peeks at the lock briefly.
        with exclusive_lock(folder.root, LOCK_FILE, holder=f"pid {os.getpid()} on {socket.gethostname()}",
                            patience_s=2.0):
            yield
    except LockHeld as held:
        raise ResultsDirError(f"{folder.root} is being run by another `mtrl run` ({held.holder}); "
                              f"wait for it to end or stop it first") from None


def driver_running(folder: SweepFolder) -> str | None:
    """``"pid N on HOST"`` while an ``mtrl run`` drives the sweep, ``""`` when none does,
    ``None`` when unknown (object stores have no locks)."""
    return lock_holder(folder.root, LOCK_FILE)


def inspect(folder: SweepFolder, spec: SweepSpec, trials: list[TrialConfig] | None = None) -> str:
    """What ``mtrl run`` would do with ``folder`` (read-only; for ``--dry-run``). A marker or ``sweep.yaml``
    that ``mtrl run`` would refuse is refused here too (:class:`~mtrl_plasticity.errors.UserError`)."""
    try:
        read_marker(folder.root)
        stored = folder.stored_spec()
    except OSError as exc:  # an unreadable spec is refused (UserError) as `mtrl run` would
        return f"cannot read {folder.root}: {exc}"
    if stored is None:
        return f"new sweep in {folder.root}"
    if stored.name != spec.name:
        return f"refused: {folder.root} holds sweep {stored.name!r}, not {spec.name!r}"
    growth = plan_growth(folder.root, stored, spec, trials if trials is not None else expand(spec))
    if growth.refused:
        return f"refused: {growth.refusal(folder.root, spec.name)}"
    outside = (f"; {len(growth.outside):,} trial(s) with results fall outside the new grid (kept on disk, "
               f"listed by mtrl status)" if growth.outside else "")
    if growth.added:
        return (f"grows the sweep in {folder.root}: adds {len(growth.added):,} trial(s), about "
                f"{estimate.core_hours(growth.added):,.2f} core-hours{outside}")
    if _same(stored, spec):
        return f"resumes the sweep in {folder.root}"
    return f"resumes the sweep in {folder.root} with a changed spec (recorded in its history){outside}"


def _refuse_nested(folder: SweepFolder) -> None:
    """A sweep folder never goes inside another results folder (``--storage results/paper``)."""
    fs, path = folder.filesystem()
    parent = posixpath.dirname(path.rstrip("/"))
    if fs.get_file_info(posixpath.join(parent, MARKER)).type == pafs.FileType.File:
        storage = folder.root.rsplit("/", 1)[0]
        raise ResultsDirError(f"storage {storage} is itself a results folder; give the folder that holds "
                              f"sweep folders (e.g. results), not a sweep's own folder")


def _refuse_foreign(folder: SweepFolder) -> None:
    """A file, or files but no marker (another program's data): never written into (read-only check)."""
    if file_type(folder.root) == pafs.FileType.File:
        raise ResultsDirError(f"{folder.root} is a file, not a sweep folder; move it or choose another "
                              f"--storage or --name")
    refuse_foreign(folder.root, ignore=(LOCK_FILE,))


def _spec_text(spec: SweepSpec) -> str:
    return yaml.safe_dump(spec.resolved(), sort_keys=False)


__all__ = ["Claim", "SweepFolder", "check_writable", "claimed", "driver_lock", "driver_running", "inspect", "prepare"]
