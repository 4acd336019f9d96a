"""Links inside a sweep folder are refused (``tests/orchestrator/test_folder_trust.py``); a link TO the
storage or to the sweep folder itself is a normal setup (``/scratch -> /mnt/big``) and runs, resumes
and reports as any folder does (issue 29, item 4)."""

from __future__ import annotations

import logging
import os

import pytest

from analysis.cli import mtrl
from testkit.ray import assert_rows_exactly_once, tiny_sweep, trials_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_storage_root_and_a_sweep_folder_that_are_links_run(tmp_path, capsys):
    sweep = tiny_sweep(tmp_path / "sweep.yaml", "linked", seeds=1, total_steps=400)
    (tmp_path / "big").mkdir()
    os.symlink(tmp_path / "big", tmp_path / "scratch")  # the storage root is a link
    assert mtrl(["run", sweep, "--storage", str(tmp_path / "scratch")]) == 0
    real = tmp_path / "big" / "linked"
    assert_rows_exactly_once(str(real), trials_of(sweep))
    # The sweep folder itself reached through a link: a rerun resumes it (nothing left to do).
    (tmp_path / "other").mkdir()
    os.symlink(real, tmp_path / "other" / "linked")
    capsys.readouterr()
    assert mtrl(["run", sweep, "--storage", str(tmp_path / "other")]) == 0
    assert "all 1 trials done" in capsys.readouterr().out
    assert mtrl(["status", str(tmp_path / "other" / "linked")]) == 0
    assert mtrl(["analyze", str(tmp_path / "scratch" / "linked"), "--quiet", "--no-figures"]) == 0
    assert not [p for p, _, names in os.walk(real) for n in names if os.path.islink(os.path.join(p, n))]
