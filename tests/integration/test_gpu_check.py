"""bench/gpu_check.py at small size on the CPU (`--device cpu --small`): the GPU machine's
script keeps working where CI has no GPU. Its verdict line must say the rows were identical."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testkit.ray import REPO, subprocess_env

pytestmark = pytest.mark.slow


def test_gpu_check_runs_on_cpu_with_identical_rows(tmp_path):
    env = subprocess_env(HOME=str(tmp_path), PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--device", "cpu", "--small"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-4000:]
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("gpu_check: identical rows from the same seed: yes (4 architectures on cpu); "
                              "shared sweep: ok"), verdict
    assert out.count(" rows, identical, ") == 4
    assert out.count(": device cpu") == 4 and "all 4 trials done" in out
