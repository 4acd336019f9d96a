"""The dry-run cost model's arithmetic (orchestrator/estimate.py) on hand-computed values."""

import pytest

from orchestrator import estimate
from orchestrator.config import TrialConfig


def test_each_critic_epoch_past_the_first_adds_its_cost():
    base = estimate.update_s_per_task_step("single", 0)
    assert base == pytest.approx(0.5e-3)
    assert estimate.update_s_per_task_step("single", 0, critic_epochs=10) == pytest.approx(0.5e-3 + 9 * 0.08e-3)
    assert estimate.update_s_per_task_step("moore", 3, critic_epochs=2) == pytest.approx(1.5e-3 + 0.08e-3)


def test_the_single_task_baseline_is_priced_with_its_ten_critic_epochs():
    """arch single gets MOORE's 10 critic epochs by default, and the estimate counts them."""
    single = TrialConfig(benchmark="DoorKey-6x6-v0", arch="single", treatment="dense", seed=0,
                         total_steps=4_000, eval_interval_steps=2_000, checkpoint_interval_steps=4_000,
                         measure_plasticity=False)
    one_epoch = single.model_copy(update={"critic_epochs": 1})
    extra = estimate.trial_core_seconds(single) - estimate.trial_core_seconds(one_epoch)
    assert single.critic_epochs == 10
    assert extra == pytest.approx(4_000 * 9 * 0.08e-3)
