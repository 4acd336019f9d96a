"""Each trial's log in the sweep folder: ``logs/<run_key>.log`` and ``logs/<run_key>.failures.json``.

The log holds the full text of every failed attempt (the traceback from the trial's worker,
then the error as Tune saw it); the JSON file the count of failed attempts over all runs and
the last error line, for ``mtrl status``. Both go through the storage layer, are rewritten
whole (object stores cannot append) and are read as text and JSON only. Ray-free.
"""

from __future__ import annotations

import json
import time

from mtrl_plasticity.results import LOGS_DIR
from orchestrator.storage import join, read_bytes, refuse_links, resolve_filesystem, write_bytes_atomically

FAILURES_SUFFIX = ".failures.json"


def trial_log_path(root: str, run_key: str) -> str:
    return join(root, LOGS_DIR, f"{run_key}.log")


def trial_failures_path(root: str, run_key: str) -> str:
    return join(root, LOGS_DIR, f"{run_key}{FAILURES_SUFFIX}")


def last_line(text: str) -> str:
    """The last non-blank line of an error's text (at most 200 characters): how a failure is named in one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error")[:200]


def utc_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_to_log(root: str, run_key: str, text: str) -> None:
    """Add ``text`` to ``logs/<run_key>.log`` (rewritten whole: object stores cannot append).

    Its writers take turns: the trial's worker before its attempt ends, the driver after.
    """
    fs, path = resolve_filesystem(trial_log_path(root, run_key))
    refuse_links(root, [path])  # the driver writes here while the sweep runs, long after claiming the folder
    write_bytes_atomically(fs, path, (read_bytes(fs, path) or b"") + text.encode())


def read_failures(root: str, run_key: str) -> dict | None:
    """``{"failures": n, "last_error": line, "time": iso}`` of a trial that failed, else ``None`` (JSON only)."""
    fs, path = resolve_filesystem(trial_failures_path(root, run_key))
    try:
        data = read_bytes(fs, path)
        record = None if data is None else json.loads(data.decode())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_failures(root: str, run_key: str, record: dict) -> None:
    fs, path = resolve_filesystem(trial_failures_path(root, run_key))
    refuse_links(root, [path])
    write_bytes_atomically(fs, path, json.dumps(record).encode())
