"""The JSON logs of a sweep folder, read with their shape checked: one reader, pydantic models.

``logs/<run_key>.failures.json``, ``progress/*.json`` and Tune's experiment state under
``tune/`` are logs: written by the tool's processes (or Tune's), never read to resume, and
shown by ``mtrl status`` and ``mtrl run``. A results folder can hold anything in them (it may
come from someone else), so each is read through :func:`read_log` as a pydantic model (declared
next to its writer: :class:`orchestrator.trial_logs.FailuresRecord`,
:class:`orchestrator.progress.ProgressRecord`, ...) with :class:`LogModel`'s strict types and
bounded numbers: a file that is too large, not JSON, nested too deeply or of another shape is
skipped with one warning line on stderr, and the command goes on as if it were absent.
Text fields are kept as read; what prints them bounds them (``mtrl_plasticity.errors.clip``).
"""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtrl_plasticity.errors import FOLDER_TEXT_LIMIT, clip, printable, validation_message
from orchestrator.storage import read_json

MAX_COUNT = 10**9
"""Largest count (failed attempts, steps) a log may hold; larger is a damaged file."""

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A count or a step in a log: an integer (not ``true``, ``1.0`` or ``"1"``) in 0 .. :data:`MAX_COUNT`."""


class LogModel(BaseModel):
    """The shape of one JSON log: exact JSON types (no ``"1"`` for 1, no ``true`` for 1), finite
    numbers (no ``NaN``/``Infinity``), and fields it does not name ignored (a newer writer may add some)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


M = TypeVar("M", bound=BaseModel)


def read_log(fs: pafs.FileSystem, path: str, model: type[M], limit: int) -> M | None:
    """The log ``path`` as ``model``, or ``None`` when it does not exist.

    A file larger than ``limit`` bytes, unreadable, not JSON, nested too deeply or not of the
    model's shape is skipped: ``None``, with one warning line on stderr naming it.
    """
    try:
        data = read_json(fs, path, limit)
        if data is None and fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        return model.model_validate(data)
    except ValidationError as exc:  # before ValueError: it is one
        reason = validation_message(exc, limit=1)
    except (OSError, ValueError) as exc:
        reason = str(exc)
    warn(f"skipped the log {printable(path)}: {clip(reason, FOLDER_TEXT_LIMIT)}")
    return None


def warn(line: str) -> None:
    print(f"mtrl: warning: {line}", file=sys.stderr, flush=True)


__all__ = ["MAX_COUNT", "Count", "LogModel", "read_log", "warn"]
