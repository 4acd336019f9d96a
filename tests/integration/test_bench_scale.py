"""bench/bench_scale.py at CI size (`--small`: one seed of sweeps/paper.yaml, 70 stand-in trials):
the scale bench keeps working, and its kill-and-rerun checks hold. No timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from testkit.ray import REPO, subprocess_env

pytestmark = pytest.mark.slow


def test_bench_scale_small_reruns_only_the_unfinished_trials(tmp_path):
    env = subprocess_env(HOME=str(tmp_path), PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_scale.py"), "--small"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-4000:]
    killed = re.search(r"killed at \d+ s with (\d+)/70 trials done", out)
    assert killed and 0 < int(killed.group(1)) < 70, out  # the kill left work for the rerun
    assert "exit 0; 70/70 done" in out and "finished trials run again: 0, their files touched: 0" in out, out
    assert re.search(r"mtrl status .* 70 done, exit 0", out) and re.search(r"mtrl analyze .* exit 0", out), out
    assert "STAND-IN TRIAL" in out.splitlines()[0]  # the stand-in is named on the first line
