"""A grown rerun killed mid-way (issue 27): the same command again completes the grown grid, the
trials of the first version are never touched, every row is there once, and the rows equal a
fresh sweep of the grown grid. Real `mtrl` drivers in child processes, each its own local Ray."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    checkpointed_run_keys,
    kill_ray_processes,
    mtrl_command,
    read_dataset,
    run_and_log,
    subprocess_env,
    tiny_sweep,
    trials_of,
    wait_until,
)

pytestmark = pytest.mark.slow


def files_of(root: str, run_keys: set[str]) -> dict[str, tuple[int, bytes]]:
    """``{path: (mtime_ns, bytes)}`` of the Parquet files and checkpoints of ``run_keys``."""
    out = {}
    for folder in ("metrics", "checkpoints"):
        for directory, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                path = os.path.join(directory, name)
                owner = os.path.basename(directory) if folder == "checkpoints" else name.split("__")[0].removesuffix(
                    ".parquet")
                if owner in run_keys:
                    out[path] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def test_a_grown_rerun_killed_midway_completes_with_the_fresh_result(tmp_path, ray_tmp):
    first = tiny_sweep(tmp_path / "v1.yaml", "grow", seeds=2, total_steps=1000)
    grown = tiny_sweep(tmp_path / "v2.yaml", "grow", seeds=4, total_steps=1000)
    env = subprocess_env(RAY_TMPDIR=ray_tmp)
    storage = tmp_path / "results"
    root = str(storage / "grow")

    done = run_and_log(mtrl_command("run", first, "--storage", str(storage)), tmp_path / "v1.log", env, timeout=400)
    assert done.returncode == 0, (tmp_path / "v1.log").read_text()[-3000:]
    old = {t.run_key for t in trials_of(first)}
    old_files = files_of(root, old)
    new = {t.run_key for t in trials_of(grown)} - old

    with open(tmp_path / "killed.log", "w") as log:
        driver = subprocess.Popen(mtrl_command("run", grown, "--storage", str(storage)), stdout=log,
                                  stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_until(lambda: bool(checkpointed_run_keys(root) & new), timeout=300, interval=0.1,
                       what="a checkpoint of a new trial")
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=60)
    kill_ray_processes(ray_tmp)
    assert "the grid grows by 2 trial(s)" in (tmp_path / "killed.log").read_text()

    again = run_and_log(mtrl_command("run", grown, "--storage", str(storage)), tmp_path / "again.log", env,
                        timeout=400)
    log = (tmp_path / "again.log").read_text()
    assert again.returncode == 0, log[-3000:]
    assert "all 4 trials done" in log and "grows" not in log  # the grown version was recorded before the kill
    assert files_of(root, old) == old_files
    assert_rows_exactly_once(root, trials_of(grown))
    assert len(os.listdir(os.path.join(root, "history"))) == 2

    fresh = run_and_log(mtrl_command("run", grown, "--storage", str(tmp_path / "fresh")), tmp_path / "fresh.log",
                        env, timeout=400)
    assert fresh.returncode == 0, (tmp_path / "fresh.log").read_text()[-3000:]
    for dataset in ("evals", "train"):
        assert read_dataset(root, dataset).equals(read_dataset(str(tmp_path / "fresh" / "grow"), dataset)), dataset
