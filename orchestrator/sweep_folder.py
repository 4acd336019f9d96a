"""A sweep's results folder on its storage: check it is writable, claim it, pin its spec.

Layout of ``<storage>/<sweep name>/`` (the names: :mod:`mtrl_plasticity.results`)::

    mtrl-results.json   marker (see orchestrator.storage): layout "sweep"
    sweep.yaml          the resolved spec, written once; a rerun must give the same spec
    tune/               Ray Tune's experiment folder (state, per-trial checkpoints)
    metrics/evals/...   Parquet (orchestrator.schema)
    metrics/train/...

Storage is a local or NFS path or a URI that ``pyarrow.fs`` understands (``s3://...``);
every check here goes through ``pyarrow.fs`` for URIs and refuses before anything is
written into a folder that is foreign, belongs to another sweep, or pins another spec.
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
from orchestrator.spec import SweepSpec, spec_differences, validate_spec
from orchestrator.storage import (
    LockHeld,
    claim,
    exclusive_lock,
    file_type,
    join,
    lock_holder,
    read_bytes,
    refuse_foreign,
    resolve_filesystem,
    write_bytes_atomically,
)
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
        """The spec this folder was started with, or ``None`` for a new folder."""
        data = self.read_bytes(SPEC_FILE, limit=MAX_FILE_BYTES + 1)
        if data is None:
            return None
        source = f"{self.root}/{SPEC_FILE}"
        return validate_spec(load_yaml_bytes(data, source), source)


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


def prepare(folder: SweepFolder, spec: SweepSpec) -> bool:
    """Claim ``folder`` for ``spec``'s sweep; returns True when the sweep already existed.

    Refuses (``ResultsDirError``) a foreign folder, a trial folder, another sweep's folder,
    or this sweep's folder pinned to a different spec (showing what differs). Only a new
    folder gets its marker and ``sweep.yaml`` written. ``mtrl run`` calls it through
    :func:`claimed`, under the driver lock.
    """
    _refuse_nested(folder)
    _refuse_foreign(folder)
    claim(folder.root, "sweep", ignore=(LOCK_FILE,))
    stored = folder.stored_spec()
    if stored is None:
        _write_spec(folder, spec)
        return False
    if stored.name != spec.name:
        raise ResultsDirError(f"{folder.root} holds sweep {stored.name!r}, not {spec.name!r}")
    differences = spec_differences(stored.resolved(), spec.resolved())
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise ResultsDirError(
            f"{folder.root} holds sweep {spec.name!r} with a different spec ({shown}); rerun the original "
            f"spec to resume it, or start a new sweep with --name NEW_NAME or another --storage")
    return True


@contextlib.contextmanager
def claimed(folder: SweepFolder, spec: SweepSpec) -> Iterator[bool]:
    """:func:`prepare` under the driver lock, held until the block ends; yields whether the sweep existed.

    The lock is taken before the spec is checked or written: of two drivers started at once
    on a new folder, one writes ``sweep.yaml`` and the other is refused. A foreign folder is
    refused before the lock file is made in it.
    """
    _refuse_nested(folder)
    _refuse_foreign(folder)
    with driver_lock(folder):
        yield prepare(folder, spec)


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


def inspect(folder: SweepFolder, spec: SweepSpec) -> str:
    """What ``mtrl run`` would do with ``folder`` (read-only; for ``--dry-run``)."""
    try:
        stored = folder.stored_spec()
    except OSError as exc:  # an unreadable spec is refused (UserError) as `mtrl run` would
        return f"cannot read {folder.root}: {exc}"
    if stored is None:
        return f"new sweep in {folder.root}"
    differences = spec_differences(stored.resolved(), spec.resolved())
    if stored.name != spec.name or differences:
        return f"refused: {folder.root} holds a different spec ({'; '.join(differences[:3])})"
    return f"resumes the sweep in {folder.root}"


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


def _write_spec(folder: SweepFolder, spec: SweepSpec) -> None:
    fs, path = folder.filesystem()
    text = yaml.safe_dump(spec.resolved(), sort_keys=False)
    write_bytes_atomically(fs, posixpath.join(path, SPEC_FILE), text.encode())


__all__ = ["SweepFolder", "check_writable", "claimed", "driver_lock", "driver_running", "inspect", "prepare"]
