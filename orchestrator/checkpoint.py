"""Checkpoint files and the checkpointer interface the trial loop talks to.

A checkpoint is one ``torch.save`` file of plain containers and tensors, loaded back with
``torch.load(..., weights_only=True)``: no arbitrary unpickling of files a user may have
been handed. ``run_trial`` only sees the :class:`Checkpointer` protocol; the
:class:`DirectoryCheckpointer` below keeps ``step-<step>.pt`` files in a folder of the
storage layer (a local path, NFS or ``s3://``): ``mtrl trial`` uses it directly, and
``orchestrator.tune_glue`` uses it on the sweep folder and reports progress to Tune.

A checkpoint that cannot be loaded (cut short, corrupt, another step inside) or that its trial
does not accept (another trial's or configuration's, copied in) is moved aside with one warning
line, and the previous one is used; with none left the trial starts over.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from mtrl_plasticity.errors import ResultsDirError
from orchestrator.storage import (
    LockHeld,
    exclusive_lock,
    list_files,
    move_aside,
    read_bytes,
    remove_temporaries,
    resolve_filesystem,
    write_bytes_atomically,
)

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.pt$")
LOCK_FILE = ".lock"

State = dict[str, Any]
"""A trial's checkpoint: plain containers, numbers, strings and tensors."""
Metrics = dict[str, Any]
"""What a trial reports after an epoch: ``step``, ``epoch``, ``run_key`` and the metric columns."""


Accept = Callable[[State], None]
"""Raises (``ValueError``, ...) when a loaded state is not one its trial can continue from."""


class Checkpointer(Protocol):
    def load(self, accept: Accept | None = None) -> State | None:
        """The latest complete checkpoint's state that ``accept`` takes, or ``None`` for a fresh start."""

    def save(self, state: State, metrics: Metrics) -> None:
        """Persist ``state`` (the rows up to it are already in Parquet) and report ``metrics``."""

    def report(self, metrics: Metrics) -> None:
        """Progress of an epoch without a checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}.pt"


def state_bytes(state: State) -> bytes:
    import torch  # here, not at module level: the CLI and the Ray driver import this module, torch-free

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_state_bytes(data: bytes) -> State:
    import torch  # the trial's worker only: the driver checks checkpoints with checkpoint_intact

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def checkpoint_intact(data: bytes) -> bool:
    """Whether ``data`` is a whole ``torch.save`` archive (every member's CRC checks), unpickling nothing.

    The driver checks checkpoints this way without importing torch.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.testzip() is None and bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class DirectoryCheckpointer:
    """Checkpoints as ``<directory>/step-<step>.pt`` on any storage; the rename is the completion marker.

    Keeps the newest ``keep`` files. ``on_report`` (optional) receives every metrics dict,
    e.g. to drive a progress bar. A damaged checkpoint goes to ``<aside_root>/set-aside/``
    (default: the checkpoint folder's parent) with one line to ``on_warning``.
    """

    def __init__(self, directory: str, keep: int = 2, on_report: Callable[[Metrics], None] | None = None,
                 aside_root: str | None = None, on_warning: Callable[[str], None] = warn) -> None:
        self.directory = directory
        self.keep = keep
        self.on_report = on_report
        self.on_warning = on_warning
        self.fs, self.path = resolve_filesystem(directory)
        self.aside_root = resolve_filesystem(aside_root)[1] if aside_root else posixpath.dirname(self.path)

    def steps(self) -> list[tuple[int, str]]:
        """``(step, path)`` of every checkpoint file, oldest first."""
        found = [(int(m.group(1)), info.path) for info in list_files(self.fs, self.path)
                 if (m := CHECKPOINT_NAME.match(info.base_name))]
        return sorted(found)

    def remove_temporaries(self) -> list[str]:
        """Delete the partial checkpoints (``.step-<step>.pt.tmp``) a failed or killed write left."""
        return remove_temporaries(self.fs, self.path, lambda name: CHECKPOINT_NAME.match(name) is not None)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1][0] if steps else None

    def load(self, accept: Accept | None = None) -> State | None:
        """The newest checkpoint that loads, holds the step of its name and that ``accept`` (the trial's
        own check: its configuration) takes; each one before it is moved aside with one line."""
        found = self.steps()
        for index in range(len(found) - 1, -1, -1):
            step, path = found[index]
            data = read_bytes(self.fs, path)
            try:
                # torch.load does not check every member's CRC: a flipped bit in a tensor would load.
                if not checkpoint_intact(data or b""):
                    raise ValueError("a zip CRC fails, or it is not a whole archive")
                state = load_state_bytes(data or b"")
                if int(state["progress"]["step"]) != step:
                    raise ValueError(f"it holds step {state['progress']['step']}")
                if accept is not None:
                    accept(state)
                return state
            except Exception as exc:  # cut short, corrupt or another trial's: never trusted, never deleted
                reason = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else type(exc).__name__
                moved = move_aside(self.fs, self.aside_root, path)
                then = "using the previous one" if index else "starting over"
                self.on_warning(f"checkpoint {path} is damaged ({reason}); moved to {moved}; {then}")
        return None

    def save(self, state: State, metrics: Metrics) -> None:
        step = int(state["progress"]["step"])
        write_bytes_atomically(self.fs, posixpath.join(self.path, checkpoint_name(step)), self.encode(state))
        for _, path in self.steps()[: -self.keep]:
            self.fs.delete_file(path)
        self.report(metrics)

    def encode(self, state: State) -> bytes:
        """The file's bytes: ``torch.save`` of ``state``."""
        return state_bytes(state)

    def report(self, metrics: Metrics) -> None:
        if self.on_report is not None:
            self.on_report(metrics)

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Hold ``<directory>/.lock`` (local and NFS paths): one writer per trial.

        Raises :class:`~mtrl_plasticity.errors.ResultsDirError` (one line, exit 2) naming ``what``
        when another process holds it. Object stores have no locks: there one writer per trial
        is the scheduler's job.
        """
        try:
            with exclusive_lock(self.directory, LOCK_FILE):
                yield
        except LockHeld:
            raise ResultsDirError(f"{what} is being run by another process; wait for it to end") from None
