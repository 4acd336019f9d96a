"""A trial worker frozen (SIGSTOP, as a swapped-out or frozen VM would be) long enough for Ray to
give up on it, then continued: the sweep completes with every row exactly once, and the failure
is one console line, not a traceback.

Ray gives up on a silent worker when gRPC keepalive pings go unanswered: after
``grpc_client_keepalive_time_ms`` + ``grpc_client_keepalive_timeout_ms`` (5 + 2 minutes by
default, hence the seven minutes seen for real). This test only shortens them, through Ray's
environment variables ``RAY_grpc_client_keepalive_time_ms``/``..._timeout_ms`` and
``RAY_grpc_keepalive_time_ms``/``..._timeout_ms``, set for the test's own driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid

import pytest

from orchestrator.status import read_status
from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    checkpointed_run_keys,
    kill_ray_processes,
    mtrl_command,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow
KEEPALIVE_MS = "3000"


def trial_workers(mark: str) -> list[int]:
    """Tune's function-trainable worker processes of the Ray instance whose environment holds ``mark``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if b"ImplicitFunc" in cmdline and mark.encode() in environ:
            found.append(int(entry))
    return found


def test_a_stopped_worker_is_given_up_and_its_trial_continues(tmp_path):
    sweep = tiny_sweep(tmp_path / "stop.yaml", "stop", seeds=2, total_steps=4000)
    trials = trials_of(sweep)
    storage = tmp_path / "results"
    root = str(storage / "stop")
    ray_tmp = f"/tmp/mtrl-stop-{uuid.uuid4().hex[:8]}"
    os.makedirs(ray_tmp)
    env = subprocess_env(RAY_TMPDIR=ray_tmp, RAY_grpc_client_keepalive_time_ms=KEEPALIVE_MS,
                         RAY_grpc_client_keepalive_timeout_ms=KEEPALIVE_MS,
                         RAY_grpc_keepalive_time_ms=KEEPALIVE_MS, RAY_grpc_keepalive_timeout_ms=KEEPALIVE_MS)
    stopped = None
    try:
        with open(tmp_path / "run.log", "w") as log:
            driver = subprocess.Popen(mtrl_command("run", sweep, "--storage", str(storage)), stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=REPO)
            try:
                wait_until(lambda: bool(checkpointed_run_keys(root)) and bool(trial_workers(ray_tmp)), timeout=300,
                           interval=0.1, what="a checkpoint")
                stopped = trial_workers(ray_tmp)[0]
                os.kill(stopped, signal.SIGSTOP)
                wait_until(lambda: "attempt 1 of" in (tmp_path / "run.log").read_text(), timeout=180, interval=0.5,
                           what="Ray to give up on the stopped worker")
                with contextlib.suppress(ProcessLookupError):  # Ray may have killed the actor it gave up on
                    os.kill(stopped, signal.SIGCONT)
                stopped = None
                assert driver.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]
            finally:
                if stopped is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(stopped, signal.SIGCONT)
                if driver.poll() is None:
                    driver.kill()
    finally:
        kill_ray_processes(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = (tmp_path / "run.log").read_text()
    failures = [line for line in log.splitlines() if "attempt 1 of 3 failed" in line]
    assert len(failures) == 1 and "log: " in failures[0]
    assert "Traceback" not in log and "all 2 trials done" in log
    assert_rows_exactly_once(root, trials)
    assert sum(t.retries for t in read_status(root).trials) == 1
