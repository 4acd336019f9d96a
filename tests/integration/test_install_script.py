"""docker/install.sh, the image's install steps, in a fresh virtual environment: the install
works from the files the Dockerfile copies, then `mtrl run --dry-run` and a one-trial sweep run
with the installed package (not this checkout).

The virtual environment is truly fresh (no system site packages), so the pins in
constraints.txt must resolve from the package index; torch comes from pip's configured index
(on the development machine a local CPU wheel) as the script's TORCH_INDEX is unset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from testkit.ray import REPO, assert_rows_exactly_once, tiny_sweep, trials_of

pytestmark = pytest.mark.slow

# What docker/Dockerfile copies into the image.
IMAGE_FILES = ("pyproject.toml", "constraints.txt", "README.md", "agents", "envs", "orchestrator", "analysis",
               "mtrl_plasticity", "sweeps", "docker/install.sh", "docker/launch_sweep.py")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the project installed by docker/install.sh: (venv bin folder, environment)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "src"
    for name in IMAGE_FILES:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(os.path.join(REPO, name)):
            shutil.copytree(os.path.join(REPO, name), target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(os.path.join(REPO, name), target)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    bin_dir = tmp / "venv" / "bin"
    # The installed package only: no PYTHONPATH to this checkout, a HOME without Ray's files.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    env.update(HOME=str(tmp / "home"), PATH=f"{bin_dir}:{env['PATH']}", PYTHON=str(bin_dir / "python"))
    os.makedirs(env["HOME"])
    log = tmp / "install.log"
    with open(log, "w") as out:
        done = subprocess.run(["bash", str(source / "docker" / "install.sh")], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=tmp, timeout=1500)
    text = log.read_text()
    assert done.returncode == 0, text[-4000:]
    assert "install.sh: mtrl-plasticity installed with torch 2.13.0" in text
    return bin_dir, env


def test_install_sh_gives_a_working_mtrl_in_a_fresh_venv(installed, tmp_path):
    bin_dir, env = installed
    where = subprocess.run([str(bin_dir / "python"), "-c", "import orchestrator; print(orchestrator.__file__)"],
                           env=env, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert where.stdout.startswith(str(bin_dir.parent)), where.stdout  # the venv's copy, not the checkout

    plan = subprocess.run([str(bin_dir / "mtrl"), "run", os.path.join(REPO, "sweeps", "paper.yaml"), "--dry-run"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "2,100 trials" in plan.stdout

    sweep = tiny_sweep(tmp_path / "one.yaml", "one", seeds=1)
    run = subprocess.run([str(bin_dir / "mtrl"), "run", sweep, "--storage", str(tmp_path / "results"),
                          "--num-cpus", "1"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "all 1 trials done" in run.stdout
    assert_rows_exactly_once(str(tmp_path / "results" / "one"), trials_of(sweep))
