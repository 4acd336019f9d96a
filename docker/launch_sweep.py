#!/usr/bin/env python
"""Run ``mtrl run`` on the head node of a ``ray up`` cluster.

    ray submit docker/cluster.yaml docker/launch_sweep.py -- sweeps/paper.yaml --storage /mnt/shared/results

``ray submit`` copies this file to the head node and runs it there with the arguments after
``--``, which are those of ``mtrl run``. Two things differ from typing ``mtrl run`` on a
laptop:

* the sweep joins the running cluster (``--address auto``) instead of starting a local Ray
  instance, unless ``--address`` or ``RAY_ADDRESS`` says otherwise;
* a relative sweep file that does not exist in the working directory is looked up in the
  project folder of the image (``$MTRL_HOME``, ``/home/ray/mtrl`` in docker/Dockerfile).

Reruns resume, as with ``mtrl run``: submit the same command again after a head-node restart.
"""

from __future__ import annotations

import os
import sys

DEFAULT_HOME = "/home/ray/mtrl"


def launcher_argv(args: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """The ``mtrl`` argv for the launcher's arguments (see the module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    if not args or args[0].startswith("-"):
        raise SystemExit("usage: launch_sweep.py SWEEP.yaml [mtrl run options ...]")
    sweep, rest = args[0], list(args[1:])
    if not os.path.isabs(sweep) and not os.path.exists(sweep):
        candidate = os.path.join(environ.get("MTRL_HOME", DEFAULT_HOME), sweep)
        if os.path.exists(candidate):
            sweep = candidate
    joins = any(a == "--address" or a.startswith("--address=") for a in rest) or environ.get("RAY_ADDRESS")
    if not joins:
        rest += ["--address", "auto"]
    return ["run", sweep, *rest]


def main(args: list[str] | None = None) -> int:
    from orchestrator.cli import main as mtrl_main

    return mtrl_main(launcher_argv(sys.argv[1:] if args is None else args))


if __name__ == "__main__":
    sys.exit(main())
