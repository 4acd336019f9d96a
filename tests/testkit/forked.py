"""The real ``mtrl`` command run many times, each run in its own forked child process.

A child per case: its own working directory, stdout and stderr (files there, not a terminal),
a cap on its address space and on its time, and an uncaught exception reported with its
traceback as Python would. One driver process imports the command once and forks the children,
so a table of cases pays the import time (1-2 s) once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testkit.sweep import REPO

MEMORY_CAP = 4 << 30
TIMEOUT_S = 60

DRIVER = r"""
import json, os, resource, signal, sys, time, traceback
from analysis import cli
# Imported once here rather than in every child:
import analysis.pipeline, analysis.report, orchestrator.spec, orchestrator.status, orchestrator.sweep_folder  # noqa
cases = json.load(sys.stdin)
for case in cases:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: the case's folder, its own output files, the caps; then mtrl
        code = 1
        try:
            os.chdir(case["cwd"])
            for stream, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), stream)
            resource.setrlimit(resource.RLIMIT_AS, (case["memory"], case["memory"]))
            signal.alarm(case["timeout"])
            code = cli.mtrl(case["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "seconds": time.monotonic() - start}), flush=True)
"""


def run_forked(jobs: list[dict], **env: str) -> list[dict]:
    """Run each job (``cwd``, ``argv``, ``memory`` bytes, ``timeout`` s) as ``mtrl <argv>`` in ``cwd``, with
    ``env`` added to the environment; per job ``returncode``, ``seconds``, ``stdout`` and ``stderr``
    (``stdout`` and ``stderr`` are also left as files in ``cwd``)."""
    jobs = [{"memory": MEMORY_CAP, "timeout": TIMEOUT_S, **job} for job in jobs]
    environment = {**os.environ, "PYTHONPATH": REPO, **env}
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(jobs), env=environment, cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT_S * len(jobs), check=True)
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(reports) == len(jobs), done.stderr[-3000:]
    return [{"returncode": os.waitstatus_to_exitcode(report["status"]), "seconds": report["seconds"],
             "stdout": open(os.path.join(job["cwd"], "stdout"), errors="replace").read(),
             "stderr": open(os.path.join(job["cwd"], "stderr"), errors="replace").read()}
            for job, report in zip(jobs, reports, strict=True)]
