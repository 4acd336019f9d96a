"""The `mtrl` command: `trial`, `run`, `status`, `analyze`.

Installed plugins (entry points of the group ``mtrl.plugins``, :mod:`mtrl.plugins`) are
imported first, so their names are valid everywhere below. Every user error (bad flag value,
unknown name, impossible setting, foreign results folder, broken plugin)
ends as one line on stderr and exit code 2, before any work starts; so does a write that
fails for want of room or permission (the line names the file; a rerun resumes). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from orchestrator.errors import UserError, clip, write_error_message

MAX_MESSAGE = 1_000
"""Longest error line printed (a backstop: messages quote user input through errors.brief)."""

_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ELOOP}
"""OSErrors about a path the user gave (``--results``, ``--storage``): one line naming it."""


def build_parser() -> argparse.ArgumentParser:
    from orchestrator import local_trial
    from orchestrator.errors import OneLineArgumentParser

    parser = OneLineArgumentParser(prog="mtrl", description="Sparsity and plasticity in multi-task RL: "
                                   "run trials and sweeps, check their status, analyse results.")
    sub = parser.add_subparsers(dest="command", required=True)
    local_trial.register(sub)
    for module in _plugins():
        module.register(sub)
    return parser


def _plugins():
    import importlib

    found = []
    for name in ("orchestrator.sweep_cli", "analysis.cli"):
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


RERUN = {"trial": "rerun the same command with --resume", "run": "rerun the same command"}
"""How each command goes on after a failed write (these two continue from their last checkpoint)."""


def one_line_error(exc: BaseException, command: str) -> str | None:
    """The one line that reports ``exc`` to the user, or ``None`` when it is a bug (keep the traceback)."""
    if isinstance(exc, UserError):
        return str(exc)
    message = write_error_message(exc, RERUN.get(command, "rerun the same command"), resumes=command in RERUN)
    if message is not None:
        return message
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return None


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from mtrl.plugins import load_entry_points

    try:  # before the parser: the plugins' names are among its choices
        load_entry_points()
    except UserError as exc:
        print(f"mtrl: error: {clip(' '.join(str(exc).split()), MAX_MESSAGE)}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mtrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = one_line_error(exc, args.command)
        if message is None:
            raise
        line = " ".join(message.split())
        print(f"mtrl {args.command}: error: {clip(line, MAX_MESSAGE)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
