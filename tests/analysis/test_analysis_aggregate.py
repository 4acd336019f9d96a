"""IQM, confidence intervals, probability of improvement and profiles against known values and rliable."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from analysis import aggregate as ag


def test_rliable_library_is_importable_and_used(monkeypatch):
    calls = []
    original = rly.get_interval_estimates

    def spy(*args, **kwargs):
        calls.append(kwargs.get("reps"))
        return original(*args, **kwargs)

    monkeypatch.setattr(rly, "get_interval_estimates", spy)
    ag.iqm_with_ci({"a": np.arange(12.0).reshape(4, 3)}, reps=20)
    ag.poi_with_ci({"a": (np.ones((3, 2)), np.zeros((3, 2)))}, reps=20)
    assert calls == [20, 20]
    assert hasattr(rly, "StratifiedBootstrap")


def test_iqm_of_a_matrix_whose_middle_half_is_known():
    # 8 scores 1..8: the 2 lowest and 2 highest are trimmed, the IQM is mean(3, 4, 5, 6) = 4.5
    scores = np.array([[1.0, 8.0], [7.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    assert ag.iqm(scores) == 4.5
    # outliers do not move it: replace the extremes by huge values
    scores = np.array([[-1e9, 1e9], [1e9, -1e9], [3.0, 6.0], [5.0, 4.0]])
    assert ag.iqm(scores) == 4.5
    # 12 scores 0..11 (shuffled): int(0.25 * 12) = 3 trimmed at each end -> mean of 3..8 = 5.5
    values = np.random.default_rng(0).permutation(12).astype(float).reshape(4, 3)
    assert ag.iqm(values) == 5.5


@pytest.mark.parametrize("shape", [(30, 7), (5, 3), (1, 1), (7, 2), (3, 5), (10, 1)])
def test_iqm_equals_rliable_aggregate_iqm(shape):
    scores = np.random.default_rng(sum(shape)).random(shape)
    assert ag.iqm(scores) == metrics.aggregate_iqm(scores)


def test_iqm_per_step_equals_iqm_at_each_step():
    scores = np.random.default_rng(1).random((6, 3, 9))
    expected = [metrics.aggregate_iqm(scores[:, :, k]) for k in range(9)]
    np.testing.assert_allclose(ag.iqm_per_step(scores), expected, rtol=0, atol=1e-12)


def test_ci_of_a_constant_matrix_is_exact():
    result = ag.iqm_with_ci({"c": np.full((5, 3), 0.7)}, reps=100)["c"]
    assert (result.point, result.low, result.high) == (pytest.approx(0.7, abs=1e-15),) * 3


def test_ci_of_one_run_per_task_is_degenerate():
    # with one run per task every stratified resample is the original matrix
    scores = np.array([[0.1, 0.9, 0.4]])
    result = ag.iqm_with_ci({"x": scores}, reps=50)["x"]
    assert result.low == result.point == result.high == pytest.approx(metrics.aggregate_iqm(scores))


@pytest.mark.parametrize("seed", [0, 7])
def test_iqm_ci_agrees_with_rliable_called_directly(seed):
    scores = np.random.default_rng(3).beta(2, 2, size=(30, 5))
    np.random.seed(seed)
    points, intervals = rly.get_interval_estimates(
        {"m": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=500)
    ours = ag.iqm_with_ci({"m": scores}, reps=500, seed=seed)["m"]
    assert ours.point == pytest.approx(points["m"][0], abs=1e-12)
    assert ours.low == pytest.approx(intervals["m"][0, 0], abs=1e-12)
    assert ours.high == pytest.approx(intervals["m"][1, 0], abs=1e-12)
    assert ours.low < ours.point < ours.high


def test_ci_is_reproducible_and_restores_the_global_rng():
    scores = np.random.default_rng(5).random((10, 3))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = ag.iqm_with_ci({"a": scores, "b": scores * 0.5}, reps=200, seed=4)
    after = np.random.get_state()[1]
    np.testing.assert_array_equal(before, after)
    # a key's interval depends only on its own scores, reps and seed
    alone = ag.iqm_with_ci({"b": scores * 0.5}, reps=200, seed=4)
    assert first["b"] == alone["b"]
    assert ag.iqm_with_ci({"a": scores}, reps=200, seed=5)["a"] != first["a"]


def test_worker_processes_do_not_change_the_numbers():
    rng = np.random.default_rng(9)
    matrices = {k: rng.random((8, 3)) for k in range(4)}
    assert ag.iqm_with_ci(matrices, reps=100, jobs=1) == ag.iqm_with_ci(matrices, reps=100, jobs=2)
    curves = {k: (np.arange(4), rng.random((5, 2, 4))) for k in range(3)}
    serial = ag.iqm_curves_with_ci(curves, reps=50, jobs=1)
    parallel = ag.iqm_curves_with_ci(curves, reps=50, jobs=2)
    for k in curves:
        np.testing.assert_array_equal(serial[k].low, parallel[k].low)


def test_empty_matrices_are_left_out():
    assert ag.iqm_with_ci({"none": np.empty((0, 3))}, reps=10) == {}


def test_probability_of_improvement_equals_rliable_including_ties():
    rng = np.random.default_rng(11)
    for _ in range(50):
        x = rng.integers(0, 4, size=(rng.integers(1, 9), 3)).astype(float)
        y = rng.integers(0, 4, size=(rng.integers(1, 9), 3)).astype(float)
        assert ag.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    x = rng.random((5, 2))
    assert ag.probability_of_improvement(x, x) == 0.5
    assert ag.probability_of_improvement(x + 2, x) == 1.0


def test_poi_ci_agrees_with_rliable_called_directly():
    rng = np.random.default_rng(2)
    x, y = rng.random((6, 3)) + 0.1, rng.random((5, 3))
    np.random.seed(0)
    points, intervals = rly.get_interval_estimates(
        {"p": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=60)
    ours = ag.poi_with_ci({"p": (x, y)}, reps=60, seed=0)["p"]
    assert ours.point == pytest.approx(points["p"][0], abs=1e-12)
    assert ours.low == pytest.approx(intervals["p"][0, 0], abs=1e-12)
    assert ours.high == pytest.approx(intervals["p"][1, 0], abs=1e-12)


def test_performance_profile_agrees_with_rliable_default_profile():
    scores = np.random.default_rng(4).random((7, 3))
    taus = np.linspace(0, 1, 11)
    np.random.seed(0)
    profiles, cis = rly.create_performance_profile({"s": scores}, taus, reps=40)
    ours = ag.performance_profiles({"s": scores}, taus=taus, reps=40, seed=0)["s"]
    np.testing.assert_allclose(ours.point, profiles["s"], atol=1e-12)
    np.testing.assert_allclose(np.vstack([ours.low, ours.high]), cis["s"], atol=1e-12)
    # fraction above tau: all 21 scores are > 0, none > 1
    assert ours.point[0] == 1.0 and ours.point[-1] == 0.0


def test_curve_bands_use_the_runs_present_at_each_step():
    steps = np.array([0, 10, 20])
    scores = np.array([
        [[0.0, 0.2, 0.4], [0.0, 0.3, 0.5]],
        [[0.0, 0.4, np.nan], [0.0, 0.5, np.nan]],  # stopped after step 10
    ])
    band = ag.iqm_curves_with_ci({"c": (steps, scores)}, reps=50)["c"]
    np.testing.assert_array_equal(band.x, steps)
    assert band.point[1] == pytest.approx(metrics.aggregate_iqm(scores[:, :, 1]))
    assert band.point[2] == pytest.approx(metrics.aggregate_iqm(scores[:1, :, 2]))
    assert band.low[2] == band.high[2] == band.point[2]  # one run left: no uncertainty from resampling
    assert np.all(band.low <= band.point + 1e-12) and np.all(band.point <= band.high + 1e-12)
    # a step that no run completed is dropped
    scores[:, 0, 0] = np.nan
    band = ag.iqm_curves_with_ci({"c": (steps, scores)}, reps=20)["c"]
    np.testing.assert_array_equal(band.x, [10, 20])
