"""The ``mtrl`` command's frame, and its orchestration commands: ``trial``, ``run``, ``status``.

Installed plugins (entry points of the group ``mtrl_plasticity.plugins``,
:mod:`mtrl_plasticity.plugins`) are imported first, so their names are valid everywhere below.
Every user error (bad flag value, unknown name, impossible setting, foreign results folder,
broken plugin) ends as one line on stderr and exit code 2, before any work starts; so does a
write that fails for want of room or permission (the line names the file; a rerun resumes).
Anything else is a bug and keeps its traceback.

The whole ``mtrl`` command adds the analysis's ``analyze`` (``analysis.cli.mtrl``, the
console script): the analysis stands on the orchestrator, so its command is added from above.
``python -m orchestrator.cli`` runs the orchestration commands alone.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from mtrl_plasticity.errors import UserError, clip, write_error_message
from mtrl_plasticity.plugins import load_entry_points
from orchestrator import local_trial, sweep_cli
from orchestrator.interrupts import RERUN, interrupted_line, sigterm_as_ctrl_c

MAX_MESSAGE = 1_000
"""Longest error line printed (a backstop: messages quote user input through errors.brief)."""

_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ELOOP}
"""OSErrors about a path the user gave (``--results``, ``--storage``): one line naming it."""

Register = Callable[[Any], Any]
"""``register(subparsers)``: adds one or more sub-commands, each with ``func`` as its default."""

COMMANDS: tuple[Register, ...] = (local_trial.register, sweep_cli.register)
"""The orchestration commands: ``trial``, then ``run`` and ``status``."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line and exit 2, like every other bad input.

    argparse prints the whole usage block above the error; the block says nothing about what
    was wrong, so only the error is printed, with a pointer to ``--help``. Subparsers made by
    ``add_subparsers`` inherit this class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: Sequence[Register] = COMMANDS) -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="mtrl", description="Sparsity and plasticity in multi-task RL: "
                                   "run trials and sweeps, check their status, analyse results.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in commands:
        register(sub)
    return parser




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


def main(argv: list[str] | None = None, commands: Sequence[Register] = COMMANDS) -> int:
    """Run one ``mtrl`` command line; returns its exit code (0 done, 2 bad input, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else ""
    # `mtrl run` stops on SIGTERM as on Ctrl-C from its first statement (SLURM's time limit, docker
    # stop), so a signal during start-up also ends in the rerun line and 130.
    stops = sigterm_as_ctrl_c() if command == "run" else contextlib.nullcontext()
    try:
        with stops:
            return _main(argv, commands)
    except KeyboardInterrupt:
        print(interrupted_line(command), file=sys.stderr)
        return 130


def _main(argv: list[str], commands: Sequence[Register]) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:  # before the parser: the plugins' names are among its choices
        load_entry_points()
    except UserError as exc:
        print(f"mtrl: error: {clip(' '.join(str(exc).split()), MAX_MESSAGE)}", file=sys.stderr)
        return 2
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        message = one_line_error(exc, args.command)
        if message is None:
            raise
        line = " ".join(message.split())
        print(f"mtrl {args.command}: error: {clip(line, MAX_MESSAGE)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
