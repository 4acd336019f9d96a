"""Each trial's log in the sweep folder: ``logs/<run_key>.log`` and ``logs/<run_key>.failures.json``.

The log holds the full text of every failed attempt (the traceback from the trial's worker,
then the error as Tune saw it); the JSON file the count of failed attempts over all runs and
the last error line, for ``mtrl status``. Both go through the storage layer, are rewritten
whole (object stores cannot append) and are read as text and JSON only. Ray-free.
"""

from __future__ import annotations

import time

from mtrl_plasticity.errors import FOLDER_TEXT_LIMIT, clip
from mtrl_plasticity.results import LOGS_DIR
from orchestrator.folder_logs import Count, LogModel, read_log
from orchestrator.storage import join, read_bytes, refuse_links, resolve_filesystem, write_bytes_atomically

FAILURES_SUFFIX = ".failures.json"
MAX_FAILURES_BYTES = 64 << 10
"""Largest ``logs/<run_key>.failures.json`` read (the tool writes a few hundred bytes)."""


class FailuresRecord(LogModel):
    """``logs/<run_key>.failures.json``: failed attempts of a trial over all runs, its last error line
    and when (UTC)."""

    failures: Count = 0
    last_error: str | None = None
    time: str | None = None


def trial_log_path(root: str, run_key: str) -> str:
    return join(root, LOGS_DIR, f"{run_key}.log")


def trial_failures_path(root: str, run_key: str) -> str:
    return join(root, LOGS_DIR, f"{run_key}{FAILURES_SUFFIX}")


def last_line(text: str) -> str:
    """The last non-blank line of an error's text, printable and at most
    :data:`~mtrl_plasticity.errors.FOLDER_TEXT_LIMIT` characters (then its length): how a failure is
    named in one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return clip(lines[-1] if lines else "unknown error", FOLDER_TEXT_LIMIT)


def utc_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_to_log(root: str, run_key: str, text: str) -> None:
    """Add ``text`` to ``logs/<run_key>.log`` (rewritten whole: object stores cannot append).

    Its writers take turns: the trial's worker before its attempt ends, the driver after.
    """
    fs, path = resolve_filesystem(trial_log_path(root, run_key))
    refuse_links(root, [path])  # the driver writes here while the sweep runs, long after claiming the folder
    write_bytes_atomically(fs, path, (read_bytes(fs, path) or b"") + text.encode())


def read_failures(root: str, run_key: str) -> FailuresRecord | None:
    """The failures record of a trial that failed, else ``None`` (also for a damaged one, with one warning
    line: :func:`orchestrator.folder_logs.read_log`)."""
    fs, path = resolve_filesystem(trial_failures_path(root, run_key))
    return read_log(fs, path, FailuresRecord, MAX_FAILURES_BYTES)


def write_failures(root: str, run_key: str, record: FailuresRecord) -> None:
    fs, path = resolve_filesystem(trial_failures_path(root, run_key))
    refuse_links(root, [path])
    write_bytes_atomically(fs, path, record.model_dump_json().encode())
