"""One process at a time on a trial's files: the driver's resume check waits (bounded) for a trial whose
lock another process holds, as a worker of a killed driver's run does while it still writes
(end to end: tests/integration/test_orphan_worker.py)."""

from __future__ import annotations

import threading
import time

import pytest

from mtrl_plasticity.errors import ResultsDirError
from orchestrator.resume_check import check_sweep, trial_lock
from orchestrator.spec import expand, validate_spec
from testkit.sweep import tiny_spec_data

HELD_S = 1.0


def test_the_resume_check_waits_for_a_held_trial_and_refuses_one_held_past_the_bound(tmp_path):
    trials = expand(validate_spec(tiny_spec_data("held"), "held.yaml"))
    root = str(tmp_path / "held")
    key = trials[1].run_key
    taken, release = threading.Event(), threading.Event()

    def other_process() -> None:  # flock: another open file holds it, as another process would
        with trial_lock(root, key):
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=other_process)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(ResultsDirError, match=f"trial {key} in .* is still being written by pid "):
            check_sweep(root, trials, wait_s=0.2)
        threading.Timer(HELD_S, release.set).start()
        began = time.monotonic()
        checks = check_sweep(root, trials, wait_s=30)
        assert time.monotonic() - began >= HELD_S * 0.9
    finally:
        release.set()
        holder.join()
    assert [(c.run_key, c.done, c.resume_step) for c in checks] == [(t.run_key, False, None) for t in trials]
