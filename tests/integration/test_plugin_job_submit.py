"""A sweep with ``plugins:`` on a cluster (a local `ray start --head`): the plugin reaches the workers.

Two routes, the package outside this checkout and not installed:

* `ray job submit --working-dir <folder> -- mtrl run ...`, the package in that folder beside
  the sweep file: the job's driver finds it in its working folder;
* `mtrl run --address <head>` with the package on the driver's ``PYTHONPATH`` only: the
  head's workers start in another folder (where `ray start` ran), with another
  ``PYTHONPATH``, and Ray adds only the driver's working folder to their path; as on a
  node of a real cluster, only the ``py_modules`` that ``mtrl run`` gives Ray
  (``mtrl.plugins.runtime_env_for``) can bring the package to them.
"""

from __future__ import annotations

import os
import sys

import pytest

from testkit.plugins import assert_counter_column, copy_package, lab_plugin_registered, lab_sweep
from testkit.ray import REPO, assert_rows_exactly_once, ray_head, run_and_log, trials_of

pytestmark = pytest.mark.slow

MTRL = os.path.join(os.path.dirname(sys.executable), "mtrl")


@pytest.fixture
def head_node(tmp_path):
    """The head starts in a folder of its own, with this checkout (not the plugin) on its path."""
    head_cwd = tmp_path / "head"
    head_cwd.mkdir()
    with ray_head(tmp_path, cwd=head_cwd, PYTHONPATH=REPO) as head:
        yield head


def test_plugin_sweep_runs_through_job_submit_and_against_the_cluster(tmp_path, head_node):
    work = tmp_path / "work"
    work.mkdir()
    copy_package(work)
    sweep = lab_sweep(work / "lab.yaml", "lab")
    storage = tmp_path / "results"

    submitted = run_and_log(["ray", "job", "submit", "--address", head_node["dashboard"], "--working-dir", str(work),
                             "--", "mtrl", "run", "lab.yaml", "--storage", str(storage)],
                            tmp_path / "job.log", head_node["env"], timeout=400)
    log = (tmp_path / "job.log").read_text()
    assert submitted.returncode == 0 and "all 4 trials done" in log and "succeeded" in log, log[-3000:]

    # The driver here, the workers on the head: the package travels as py_modules.
    libs, driver_cwd = tmp_path / "libs", tmp_path / "driver"
    libs.mkdir()
    driver_cwd.mkdir()
    copy_package(libs)
    other = lab_sweep(driver_cwd / "direct.yaml", "direct", archs=("lab_wide",))
    env = dict(head_node["env"], PYTHONPATH=os.pathsep.join([REPO, str(libs)]))
    direct = run_and_log([MTRL, "run", "direct.yaml", "--storage", str(storage), "--address", head_node["gcs"]],
                         tmp_path / "direct.log", env, timeout=400, cwd=driver_cwd)
    log = (tmp_path / "direct.log").read_text()
    assert direct.returncode == 0 and "all 2 trials done" in log, log[-3000:]

    with lab_plugin_registered():
        for name, sweep_file in (("lab", sweep), ("direct", other)):
            assert_rows_exactly_once(str(storage / name), trials_of(sweep_file))
            assert_counter_column(str(storage / name))
