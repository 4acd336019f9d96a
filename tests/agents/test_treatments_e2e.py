"""Every treatment runs end to end in a short trial and is deterministic across kill and resume.

A trial is run straight through; the same trial is run again, killed right after its first
checkpoint, and resumed by a fresh ``run_trial`` that rebuilds every object from the
checkpoint. Both must leave the same Parquet rows (wall-clock ``perf/*`` columns aside).
Parameters shrink the intervention frequencies so that each intervention fires both before
and after the checkpoint in a 1000-step budget.
"""

import pandas as pd
import pytest

from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.config import TrialConfig
from orchestrator.schema import deterministic_columns
from orchestrator.sink import ParquetSink
from orchestrator.trial import run_trial
from testkit.agents import single_thread  # noqa: F401

CASES = [
    ("dense", "mtppo", {}),
    ("gmp80", "mtppo", {}),  # prunes at 500 (before the checkpoint) and 800 (t_end)
    ("gmp95", "moe", {"frequency": 100}),
    ("gmp99", "moore", {"scope": "erk"}),
    ("gmp", "mtppo", {"final_sparsity": 0.9, "scope": "layer", "prune_task_encoder": True}),
    ("set95", "moore", {"rewire_every": 200}),
    ("set", "mtppo", {"epsilon": 11, "zeta": 0.2, "rewire_every": 300, "layers": "all"}),
    ("redo", "moe", {"every": 300, "batch_size": 128, "tau": 0.1}),
    ("reset", "mtppo", {"every": 300, "max_resets": 2}),
    ("wd", "moore", {"coef": 1e-3}),
]


class Killed(RuntimeError):
    pass


class KilledAfterFirstCheckpoint(DirectoryCheckpointer):
    def save(self, state, metrics):
        super().save(state, metrics)
        raise Killed(f"killed after step {state['progress']['step']}")


def _config(treatment, arch, params):
    return TrialConfig(benchmark="Empty-5x5-v0", arch=arch, treatment=treatment, treatment_params=params,
                       n_experts=2, total_steps=1000, steps_per_epoch=250, eval_interval_steps=500,
                       eval_episodes=2, checkpoint_interval_steps=500, policy_epochs=2,
                       metric_batch_size=256, plasticity_buffer_size=1500, device="cpu", seed=3)


def _rows(sink, dataset):
    table = sink.read(dataset).to_pandas()
    return table[deterministic_columns(table.columns)].reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("treatment,arch,params", CASES, ids=[c[0] for c in CASES])
def test_treatment_runs_end_to_end_and_resumes_deterministically(tmp_path, treatment, arch, params):
    config = _config(treatment, arch, params)
    straight = ParquetSink.for_config(str(tmp_path / "straight"), config)
    run_trial(config, straight, DirectoryCheckpointer(str(tmp_path / "straight-ckpt")))

    interrupted = ParquetSink.for_config(str(tmp_path / "resumed"), config)
    with pytest.raises(Killed):
        run_trial(config, interrupted, KilledAfterFirstCheckpoint(str(tmp_path / "resumed-ckpt")))
    result = run_trial(config, ParquetSink.for_config(str(tmp_path / "resumed"), config),
                       DirectoryCheckpointer(str(tmp_path / "resumed-ckpt")))
    assert result.resumed_from_step == 500

    train = _rows(straight, "train")
    assert list(train["step"]) == [250, 500, 750, 1000]
    pd.testing.assert_frame_equal(train, _rows(interrupted, "train"))
    pd.testing.assert_frame_equal(_rows(straight, "evals"), _rows(interrupted, "evals"))

    at_eval = train[train["step"] % 500 == 0]
    assert at_eval[[c for c in train.columns if c.startswith("plasticity/")]].notna().all().all()
    last = train.iloc[-1]
    counters = {c.split("/")[1]: last[c] for c in train.columns if c.startswith("interventions/")}
    fired = {"gmp": "prune_events", "set": "set_rewires", "redo": "neurons_recycled", "reset": "resets_done"}
    for prefix, counter in fired.items():
        if treatment.startswith(prefix):
            assert counters[counter] > 0, counters
            mid = train[train["step"] == 500]["interventions/" + counter].item()
            assert 0 < mid < counters[counter] or counter == "neurons_recycled" and mid == 0, (mid, counters)
        else:
            assert counters[counter] == 0
    if treatment == "reset":
        assert counters["resets_done"] == 2
    if treatment.startswith("gmp"):
        target = {"gmp80": 0.8, "gmp95": 0.95, "gmp99": 0.99, "gmp": 0.9}[treatment]
        assert last["sparsity/actor"] == pytest.approx(target, abs=0.01)
        assert last["sparsity/critic"] == pytest.approx(target, abs=0.01)
    if treatment.startswith("set"):
        assert 0.8 < last["sparsity/actor"] < 0.96
        # Masks keep their size through rewiring; the column counts exact zeros, so a regrown
        # weight whose gradient is zero (a dead input) adds a hair.
        assert train["sparsity/actor"].max() - train["sparsity/actor"].min() < 2e-3
