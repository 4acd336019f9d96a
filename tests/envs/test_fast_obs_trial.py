"""A trial with fast observations gives the rows of one without; check mode stops at a difference."""

import json
import os

import pytest

from analysis.cli import mtrl
from envs import fast_obs
from envs.fast_obs import ObservationMismatch
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.trial import run_trial

TINY = dict(benchmark="MT3", total_steps=300, steps_per_epoch=150, eval_interval_steps=150,
            checkpoint_interval_steps=300, eval_episodes=2, plasticity_buffer_size=1000, metric_batch_size=64)


def _run(config: TrialConfig, results: str) -> None:
    run_trial(config, ParquetSink.for_config(results, config), DirectoryCheckpointer(os.path.join(results, "ck")))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_fast_and_plain_observations_give_identical_rows(tmp_path, rows, arch):
    fast, plain = str(tmp_path / "fast"), str(tmp_path / "plain")
    _run(TrialConfig(arch=arch, seed=4, **TINY), fast)
    _run(TrialConfig(arch=arch, seed=4, fast_observations=False, **TINY), plain)
    for dataset, count in (("evals", 3 * 3), ("train", 2)):
        a, b = rows(fast, dataset), rows(plain, dataset)
        assert len(a) == count
        assert a.equals(b)


def test_check_observations_from_the_command_line(tmp_path):
    results = str(tmp_path)
    code = mtrl(["trial", "--benchmark", "LavaGapS7-v0", "--arch", "single", "--results", results, "--quiet",
                 "--total-steps", "150", "--eval-episodes", "1", "--set", "check_observations=true",
                 "--set", "plasticity_buffer_size=500", "--set", "metric_batch_size=32"])
    assert code == 0
    with open(os.path.join(results, "trials", "LavaGapS7-v0-single-dense-s00", "config.json")) as f:
        stored = json.load(f)
    assert stored["check_observations"] is True and stored["fast_observations"] is True


def test_check_observations_stops_the_trial_at_the_first_difference(tmp_path, monkeypatch):
    # A fault in the fast path (walls encoded red) must stop the trial, naming env, step and cell.
    def wrong_colour(obj):
        kind, colour, state = obj.encode()
        return (kind, 0 if obj.type == "wall" else colour, state), 1 if obj.see_behind() else 0

    monkeypatch.setattr(fast_obs, "_encode_static", wrong_colour)
    config = TrialConfig(arch="single", check_observations=True, **{**TINY, "benchmark": "LavaGapS7-v0"})
    with pytest.raises(ObservationMismatch) as caught:
        _run(config, str(tmp_path))
    message = str(caught.value)
    assert message.startswith("fast observation differs from MiniGrid's on MiniGrid-LavaGapS7-v0 at step 0 ")
    assert "MiniGrid has (2, 5, 0)" in message and "(reset, episode seed " in message
