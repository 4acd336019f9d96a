"""SIGTERM as Ctrl-C, and the line an interrupted command ends with (standard library only).

Kept free of the project's heavier modules so that the ``mtrl`` console script can install the
handler before it loads the commands (:mod:`analysis.console`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

RERUN = {"trial": "rerun the same command with --resume", "run": "rerun the same command"}
"""How each command goes on after an interruption or a failed write (these two continue from their
last checkpoint)."""


def interrupted_line(command: str) -> str:
    """``mtrl run: interrupted; rerun the same command to resume`` (no advice for other commands)."""
    rerun = f"; {RERUN[command]} to resume" if command in RERUN else ""
    return f"mtrl {command}: interrupted{rerun}"


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM stops the sweep as Ctrl-C does: Tune stops the trials and
    `mtrl run` exits 130. The previous handler (the default if it was not Python's) comes back after.

    Only the first SIGTERM counts: SLURM signals every process of a job and the batch script
    forwards the signal too, and a second SIGINT would make Tune quit without saving. Nested
    blocks share that one SIGTERM: an inner block leaves the outer one's handler in place.
    """
    current = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or getattr(current, "ctrl_c", False):
        yield  # signal handlers belong to the main thread; or an outer block already handles SIGTERM
        return

    def interrupt(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.raise_signal(signal.SIGINT)

    interrupt.ctrl_c = True  # type: ignore[attr-defined]
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
