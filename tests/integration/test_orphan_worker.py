"""After the driver's process group is SIGKILLed, a trial's worker lives on for a moment and may
write a segment and a checkpoint. A rerun started at once must not interleave with it: the worker
holds its trial's lock (``orchestrator.resume_check.trial_lock``) for its whole run, and the
rerun's resume check and the rerun's trial take that lock before they read or repair the trial's
files. The orphan here is a real worker, held inside its trial and then training on after the
kill; the rerun ends with every row exactly once and nothing set aside."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from orchestrator.checkpoint import LOCK_FILE
from orchestrator.resume_check import trial_checkpoint_dir
from orchestrator.storage import lock_holder
from testkit import pause
from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    compacted_run_keys,
    mtrl_command,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow
HELD_S = "2"
"""How long the worker stays inside its trial after the driver is killed, before it writes on."""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_rerun_started_while_a_killed_runs_worker_still_writes_waits_for_it(tmp_path, ray_tmp):
    sweep = tiny_sweep(tmp_path / "orphan.yaml", "orphan", seeds=2, total_steps=400)
    trials = trials_of(sweep)
    key = trials[0].run_key
    storage = tmp_path / "results"
    root = str(storage / "orphan")
    (tmp_path / "home").mkdir()
    env = pause.environment(f"{key}@300", subprocess_env(RAY_TMPDIR=ray_tmp, HOME=str(tmp_path / "home"),
                                                         **{pause.SECONDS_VAR: HELD_S}))
    command = mtrl_command("run", sweep, "--storage", str(storage), "--num-cpus", "1")
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                  start_new_session=True)
        try:
            wait_until(lambda: os.path.exists(pause.marker_path(root, f"{key}@300")), timeout=400, interval=0.05,
                       what="the held trial")
            # Its worker, not the driver, holds the trial's lock while it runs.
            holder = lock_holder(trial_checkpoint_dir(root, key), LOCK_FILE)
            assert holder and holder.startswith("pid "), holder
            worker = int(holder.split()[1])
            assert worker != driver.pid
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
    killed = time.monotonic()
    with open(tmp_path / "rerun.log", "w") as log:
        rerun = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        orphan_at_rerun = alive(worker)
        try:
            assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
        finally:
            if rerun.poll() is None:
                rerun.kill()
    log = (tmp_path / "rerun.log").read_text()
    print(f"orphan worker alive when the rerun started: {orphan_at_rerun}; "
          f"rerun took {time.monotonic() - killed:.1f} s")  # pytest -s: the closing note quotes it
    assert orphan_at_rerun, "the worker died with the driver: nothing was left to race"
    assert "set-aside" not in log and "Traceback" not in log, log[-3000:]
    assert "all 2 trials done" in log
    assert compacted_run_keys(root) == {t.run_key for t in trials}
    assert_rows_exactly_once(root, trials)
    assert not os.path.exists(os.path.join(root, "set-aside"))
