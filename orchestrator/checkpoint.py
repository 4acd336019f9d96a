"""Checkpoint files and the checkpointer interface the trial loop talks to.

A checkpoint is one ``torch.save`` file of plain containers and tensors, loaded back with
``torch.load(..., weights_only=True)``: no arbitrary unpickling of files a user may have
been handed. ``run_trial`` only sees the :class:`Checkpointer` protocol; the directory
implementation below serves ``mtrl trial``, and ``orchestrator.tune_glue`` adapts the same
protocol to Ray Tune's checkpoints.
"""

from __future__ import annotations

import os
import re
from typing import Protocol

STATE_FILE = "state.pt"


class Checkpointer(Protocol):
    def load(self) -> dict | None:
        """The latest complete checkpoint's state, or ``None`` for a fresh start."""

    def save(self, state: dict, metrics: dict) -> None:
        """Persist ``state`` (the rows up to it are already in Parquet) and report ``metrics``."""

    def report(self, metrics: dict) -> None:
        """Progress of an epoch without a checkpoint."""


def dump_state(state: dict, path: str) -> None:
    """Write ``state`` to ``path`` atomically (a complete file or none)."""
    import torch  # here, not at module level: the CLI and the Ray driver import this module

    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


class DirectoryCheckpointer:
    """Checkpoints as ``<dir>/step-<step>.pt``; the rename is the completion marker.

    Keeps the newest ``keep`` files. ``on_report`` (optional) receives every metrics dict,
    e.g. to drive a progress bar.
    """

    _pattern = re.compile(r"^step-(\d+)\.pt$")

    def __init__(self, directory: str, keep: int = 2, on_report=None) -> None:
        self.directory = directory
        self.keep = keep
        self.on_report = on_report

    def _complete(self) -> list[tuple[int, str]]:
        if not os.path.isdir(self.directory):
            return []
        found = [(int(m.group(1)), name) for name in os.listdir(self.directory)
                 if (m := self._pattern.match(name))]
        return sorted(found)

    def latest_step(self) -> int | None:
        complete = self._complete()
        return complete[-1][0] if complete else None

    def load(self) -> dict | None:
        complete = self._complete()
        if not complete:
            return None
        return load_state(os.path.join(self.directory, complete[-1][1]))

    def save(self, state: dict, metrics: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        dump_state(state, os.path.join(self.directory, f"step-{state['progress']['step']:09d}.pt"))
        for _, name in self._complete()[: -self.keep]:
            os.remove(os.path.join(self.directory, name))
        self.report(metrics)

    def report(self, metrics: dict) -> None:
        if self.on_report is not None:
            self.on_report(metrics)
