"""The cubic GMP schedule and the ERK layer split."""

import math

import pytest

from agents.sparsity.distribution import er_epsilon_densities, erk_densities, pruned_counts, uniform_densities
from agents.sparsity.schedule import PruningSchedule, cubic_sparsity


def test_cubic_schedule_start_middle_end_match_the_formula():
    # Draft protocol: 200k steps, pruning from 5% (10k) to 80% (160k) of training.
    s = PruningSchedule.from_fractions(200_000, 0.95, 0.05, 0.8, 500)
    assert (s.start_step, s.end_step, s.frequency) == (10_000, 160_000, 500)
    assert s.sparsity_at(0) == 0.0
    assert s.sparsity_at(9_999) == 0.0
    assert s.sparsity_at(10_000) == 0.0  # rho_F * (1 - 1**3)
    assert s.sparsity_at(85_000) == pytest.approx(0.95 * (1 - 0.5 ** 3))  # middle: 0.83125
    assert s.sparsity_at(40_000) == pytest.approx(0.95 * (1 - (1 - 0.2) ** 3))
    assert s.sparsity_at(160_000) == pytest.approx(0.95)
    assert s.sparsity_at(200_000) == pytest.approx(0.95)


@pytest.mark.parametrize("final", [0.8, 0.95, 0.99])
def test_cubic_schedule_is_monotone_and_ends_at_the_final_sparsity(final):
    values = [cubic_sparsity(t, final, 100, 1600) for t in range(0, 2001, 50)]
    assert values == sorted(values)
    assert values[-1] == final


def test_pruning_steps_are_multiples_of_the_frequency_inside_the_window():
    s = PruningSchedule.from_fractions(200_000, 0.95, 0.05, 0.8, 500)
    steps = [t for t in range(1, 200_001) if s.is_pruning_step(t)]
    assert steps[0] == 10_000 and steps[-1] == 160_000
    assert all(t % 500 == 0 for t in steps)
    assert len(steps) == (160_000 - 10_000) // 500 + 1


def test_end_step_off_the_grid_is_a_pruning_step_so_the_final_sparsity_is_reached():
    s = PruningSchedule.from_fractions(2_100, 0.9, 0.05, 0.8, 500)  # end_step = 1680
    assert s.end_step == 1680
    assert [t for t in range(1, 2101) if s.is_pruning_step(t)] == [500, 1000, 1500, 1680]
    assert s.sparsity_at(1680) == 0.9


def test_erk_densities_hit_the_target_and_follow_the_formula():
    shapes = {"conv": (16, 3, 2, 2), "hidden": (128, 1024), "out": (7, 128)}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    raw = {"conv": (16 + 3 + 2 + 2) / 192, "hidden": (128 + 1024) / (128 * 1024), "out": (7 + 128) / (7 * 128)}
    # 95%: no layer exceeds density 1, all densities are eps * sum(shape) / prod(shape).
    d = erk_densities(shapes, 0.95)
    assert sum(d[n] * sizes[n] for n in shapes) == pytest.approx(0.05 * total)
    eps = 0.05 * total / sum(raw[n] * sizes[n] for n in shapes)
    assert d == {n: pytest.approx(eps * raw[n]) for n in shapes}
    # 80%: "out" and then "conv" would exceed 1, so they are dense and "hidden" takes the rest.
    d = erk_densities(shapes, 0.8)
    assert d["out"] == 1.0 and d["conv"] == 1.0
    assert d["hidden"] == pytest.approx((0.2 * total - sizes["conv"] - sizes["out"]) / sizes["hidden"])


def test_other_distributions():
    shapes = {"a": (10, 20), "b": (7, 128)}
    assert uniform_densities(shapes, 0.9) == {"a": pytest.approx(0.1), "b": pytest.approx(0.1)}
    assert er_epsilon_densities(shapes, 1.0) == {"a": pytest.approx(30 / 200), "b": pytest.approx(135 / 896)}
    assert er_epsilon_densities(shapes, 100.0) == {"a": 1.0, "b": 1.0}
    assert pruned_counts({"a": 200, "b": 896}, {"a": 0.1, "b": 0.5}) == {"a": 180, "b": 448}
    assert erk_densities(shapes, 0.0) == {"a": 1.0, "b": 1.0}
