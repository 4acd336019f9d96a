"""The errors a user sees in one line, and the helpers that keep them to one line.

:class:`UserError` is the one root of bad input: a flag, a sweep file, a registration, a
results folder. The ``mtrl`` command prints its message on one line and exits with status 2
before any work starts. Every error class of the project that means "the input is wrong" is
defined here and derives from it, so one ``except UserError`` catches them all. A failed
write (disk full, file too large, quota, permission lost) is reported in one line too, by
:func:`write_error_message`. Every other exception is a bug: it keeps its traceback.

Messages quote user input through :func:`brief` and :func:`clip`, so a huge or deeply nested
value never makes a long line, and pydantic's multi-line reports become one line through
:func:`validation_message`. Text read from a results folder (a trial's last error, file names)
is shown through :func:`clip` too, bounded by :data:`FOLDER_TEXT_LIMIT`: it can hold anything,
including escape sequences a terminal would obey.
"""

from __future__ import annotations

import errno
import os
import re
import reprlib
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(ValueError):
    """Bad input, described in one line that names the problem (exit code 2, nothing started)."""


class RegistryError(UserError):
    """A registration that cannot stand: bad name, name clash, invalid defaults."""


class UnknownName(UserError):
    """A name no registration gave (the message lists the choices)."""


class PluginError(UserError):
    """A plugin that cannot be loaded: missing, failing on import, or registering something invalid."""


class TreatmentError(UserError):
    """Parameters a treatment refuses (the message names the treatment)."""


class NetworkInterfaceError(UserError):
    """A registered architecture whose network does not follow the network interface."""


class TaskEnvError(UserError):
    """A registered task whose environment is not what its registration says (the message names the task)."""


class SpecError(UserError):
    """A sweep file that cannot run as written."""


class UsageError(UserError):
    """Bad input on the command line."""


class ResultsDirError(UserError):
    """A results folder that cannot be used as asked (foreign, another trial's, damaged marker, ...)."""


class NotWritableError(UserError, PermissionError):
    """A folder the user named (``--storage``) cannot be written: found by a probe before any work."""


class ClusterError(UserError):
    """A Ray cluster (``--address``, ``RAY_ADDRESS``) that cannot be reached: found before anything is written."""


class AnalysisError(UserError):
    """Input the analysis cannot use: an unreadable file, an unknown schema version, a bad option value."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --- quoting user input -----------------------------------------------------------------------
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 2


def brief(value: object) -> str:
    """``repr(value)`` bounded to about 80 characters, with the size of what was cut.

    For error messages that quote user input: a 1 MB string or a deeply nested list is shown
    as its start, never in full (building the full ``repr`` could itself exhaust memory).
    """
    shown = _SHORT.repr(value)
    if isinstance(value, str) and len(value) > _SHORT.maxstring:
        shown += f" ({len(value):,} characters)"
    elif isinstance(value, (list, tuple, dict, set)) and len(value) > _SHORT.maxlist:
        shown += f" ({len(value):,} items)"
    return shown


FOLDER_TEXT_LIMIT = 200
"""Most characters of one piece of text from a results folder that a command prints (then ``...`` and
the original length)."""
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"      # CSI: colours, cursor moves, clearing the screen
                              r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, DCS, ...: titles, links
                              r"|\x1b[ -/]*[0-~]?"              # any other escape
                              r"|\x9b[0-?]*[ -/]*[@-~]")        # the one-byte (C1) CSI


def printable(text: str) -> str:
    """``text`` with every escape sequence and control character removed (line breaks and tabs become
    spaces), so that printing it cannot move the cursor, clear the screen or retitle the terminal."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " if c.isspace() else "" for c in text)


def clip(text: str, limit: int = 60, *, keep_controls: bool = False) -> str:
    """``text`` itself when short, else its start and its original length (for names quoted in messages,
    and text from a results folder with ``limit=FOLDER_TEXT_LIMIT``).

    Control characters and escape sequences are removed (:func:`printable`) unless ``keep_controls``
    (for JSON, which escapes them itself).
    """
    shown = text if keep_controls else printable(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text):,} characters)"


def validation_message(exc: ValidationError, *, limit: int = 3, show_input: bool = False,
                       describe: Callable[[Any, list[str]], str | None] | None = None) -> str:
    """pydantic's report as one line: ``where: problem; where: problem`` (at most ``limit`` problems).

    ``show_input`` adds the offending value (``tau: Input should be greater than 0 (got 0)``).
    ``describe(error, location)`` (``error`` one of pydantic's ``ErrorDetails``) may phrase a
    problem itself (a sweep file names unknown keys with a suggestion); it returns ``None`` to
    keep pydantic's wording.
    """
    parts = []
    for err in exc.errors():
        location = [clip(str(p), keep_controls=True) for p in err["loc"]]  # a describe() may show them escaped
        special = describe(err, location) if describe is not None else None
        if special is not None:
            parts.append(special)
            continue
        where = ".".join(location)
        message = err["msg"].removeprefix("Value error, ")
        shown = f"{where}: {message}" if where else message
        if show_input and where and "input" in err:
            shown += f" (got {brief(err['input'])})"
        parts.append(" ".join(shown.split()))
    return "; ".join(list(dict.fromkeys(parts))[:limit])


# --- failed writes ----------------------------------------------------------------------------
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
# torch.save reports a failed write from its C++ zip writer as a RuntimeError without errno.
_TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos")
# Names under which the project's writers hold the file they write (final name first).
_PATH_LOCALS = ("path", "target", "tmp")
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_error_message(exc: BaseException, rerun: str = "rerun the same command",
                        resumes: bool = True) -> str | None:
    """One line for a write that failed for want of room or permission, or ``None`` for anything else.

    The line names the file (from the exception, else from the project's frame that was
    writing it), says that nothing already written is lost (segments and checkpoints are
    written to a temporary name and renamed), and how to go on (``rerun``, e.g. "rerun the
    same command with --resume"; ``resumes``: the rerun continues from the last checkpoint).
    """
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM | _NO_ACCESS:
        reason = os.strerror(exc.errno)
        no_room = exc.errno in _NO_ROOM
    elif isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES):
        reason, no_room = "the write failed (disk full or file too large?)", True
    else:
        return None
    filename = getattr(exc, "filename", None) or _file_being_written(exc.__traceback__)
    target = f"could not write {filename}" if filename else "could not write a results file"
    until = "once there is room" if no_room else "once the storage is writable again"
    resume = "; it continues from the last checkpoint" if resumes else ""
    return f"{target}: {reason}; nothing written before was lost: {rerun} {until}{resume}"


def write_failure_in(text: str) -> str | None:
    """The reason of a failed write reported in ``text`` (a trial's error as Ray passes it on), or ``None``.

    Ray hands the driver a remote trial's error as text; this finds the errno (or torch's
    write failure) in its last lines, so the sweep's summary can say "no room" in one line.
    """
    tail = "\n".join(text.strip().splitlines()[-3:])
    for match in re.finditer(r"\[errno (\d+)\]", tail, flags=re.IGNORECASE):
        number = int(match.group(1))
        if number in _NO_ROOM | _NO_ACCESS:
            return os.strerror(number)
    if any(s in tail for s in _TORCH_WRITE_FAILURES):
        return "the write failed (disk full or file too large?)"
    return None


def _file_being_written(tb: TracebackType | None) -> str | None:
    """The path a project function was writing when ``tb`` was raised (innermost frame first)."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        if not os.path.abspath(frame.f_code.co_filename).startswith(_PROJECT + os.sep):
            continue
        for name in _PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, str):
                return value
    return None
