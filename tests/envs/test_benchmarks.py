"""Benchmarks and the paper's normalisation table (Table 3)."""

import pytest

from envs.multitask import make_task_env
from mtrl_plasticity.benchmarks import MULTI_TASK_BENCHMARKS, TASKS, get_benchmark, normalise_return, success_reward

PAPER_TABLE_3 = {  # task: (optimal steps, max steps, achievable reward as printed)
    "DoorKey-6x6-v0": (11, 360, 0.9725),
    "DistShift1-v0": (11, 252, 0.9607),
    "RedBlueDoors-6x6-v0": (8, 720, 0.9900),
    "LavaGapS7-v0": (8, 196, 0.9633),
    "MemoryS11-v0": (15, 605, 0.9777),
    "SimpleCrossingS9N2-v0": (15, 324, 0.9583),
    "MultiRoom-N2-S4-v0": (5, 40, 0.8875),
}


@pytest.mark.parametrize("task", PAPER_TABLE_3)
def test_best_reward_reproduces_table_3(task):
    optimal, max_steps, printed = PAPER_TABLE_3[task]
    spec = TASKS[task]
    assert (spec.optimal_steps, spec.max_steps) == (optimal, max_steps)
    assert round(spec.best_reward, 4) == printed
    # A success in the optimal number of steps scores exactly 1.0; a failure 0.
    assert normalise_return(success_reward(optimal, max_steps), task) == 1.0
    assert normalise_return(0.0, task) == 0.0


@pytest.mark.parametrize("task", list(TASKS))
def test_max_steps_match_the_installed_minigrid(task):
    assert make_task_env(task).max_steps == TASKS[task].max_steps


def test_benchmark_composition_and_experts():
    mt3, mt5, mt7 = (MULTI_TASK_BENCHMARKS[n] for n in ("MT3", "MT5", "MT7"))
    assert mt3.tasks == ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")
    assert mt5.tasks == mt3.tasks + ("DoorKey-6x6-v0", "DistShift1-v0")
    assert mt7.tasks == mt5.tasks + ("SimpleCrossingS9N2-v0", "MultiRoom-N2-S4-v0")
    assert (mt3.n_experts, mt5.n_experts, mt7.n_experts) == (2, 3, 4)
    assert get_benchmark("DoorKey-6x6-v0").tasks == ("DoorKey-6x6-v0",)


def test_unknown_benchmark_is_one_line():
    with pytest.raises(ValueError, match="unknown benchmark 'MT4'") as info:
        get_benchmark("MT4")
    assert "\n" not in str(info.value)
