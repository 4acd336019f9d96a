"""The ``mtrl`` console script: `mtrl run` takes SIGTERM as Ctrl-C before the commands load.

Loading the commands (pydantic models, pyarrow, rich, the registries) is most of a command's
start-up. SLURM's time limit, ``docker stop`` or a scheduler may send SIGTERM in that time; with
the handler installed first, `mtrl run` then ends as it does later on: the rerun line and exit
code 130, not a silent death by the signal. Only the interpreter's own start-up, before this
module runs, stays unguarded.
"""

from __future__ import annotations

import contextlib
import sys

from orchestrator.interrupts import interrupted_line, sigterm_as_ctrl_c


def mtrl() -> int:
    """The ``mtrl`` command (:func:`analysis.cli.mtrl`), SIGTERM handled first; returns its exit code."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    with sigterm_as_ctrl_c() if command == "run" else contextlib.nullcontext():
        try:
            from analysis.cli import mtrl as whole_command  # the commands load here, after the handler (see above)
        except KeyboardInterrupt:
            print(interrupted_line(command), file=sys.stderr)
            sys.exit(130)
        return whole_command()
