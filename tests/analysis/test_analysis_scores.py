"""Normalisation (paper Table 3) and the choice of the final score, on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisError, Cell, add_scores, final_scores, normalise, score_curves, single_task_baseline

MT3 = ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")


def test_normalisation_uses_the_best_reward_of_table_3(make_eval_row):
    rows = pd.DataFrame([
        make_eval_row("DoorKey-6x6-v0", "single", "dense", 0, 0, "DoorKey-6x6-v0", 0.9725),
        make_eval_row("MT3", "moe", "dense", 0, 0, "LavaGapS7-v0", 0.5),
        make_eval_row("MT7", "moe", "dense", 0, 0, "MultiRoom-N2-S4-v0", 0.8875 / 2),
        make_eval_row("MT3", "moe", "dense", 0, 0, "MemoryS11-v0", 0.0),
    ])
    scores = normalise(rows)
    # Table 3: DoorKey 1 - 0.9 * 11/360 = 0.9725, LavaGap 1 - 0.9 * 8/196, MultiRoom 1 - 0.9 * 5/40 = 0.8875
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert scores[1] == pytest.approx(0.5 / (1 - 0.9 * 8 / 196), abs=1e-12)
    assert scores[2] == pytest.approx(0.5, abs=1e-12)
    assert scores[3] == 0.0


def test_stored_normalised_values_are_checked(make_eval_row):
    good = make_eval_row("MT3", "moe", "dense", 0, 0, "LavaGapS7-v0", 0.5)
    bad = make_eval_row("MT3", "moe", "dense", 0, 0, "MemoryS11-v0", 0.5, normalised_return_mean=0.5)
    out = add_scores(pd.DataFrame([good, bad]))
    assert out.attrs["normalisation_mismatches"] == 1
    assert out["score"][1] == pytest.approx(0.5 / (1 - 0.9 * 15 / 605))


def test_unknown_task_is_refused(make_eval_row):
    row = make_eval_row("MT3", "moe", "dense", 0, 0, "LavaGapS7-v0", 0.5)
    row["task"] = "NotATask-v0"
    with pytest.raises(AnalysisError, match="NotATask-v0"):
        normalise(pd.DataFrame([row]))


def _frame(hand_evals, *runs):
    return pd.DataFrame([row for run in runs for row in hand_evals(*run)])


def test_final_score_is_the_last_evaluation_of_each_run(hand_evals):
    level = {"LavaGapS7-v0": 0.2, "RedBlueDoors-6x6-v0": 0.4, "MemoryS11-v0": 0.6}
    evals = _frame(
        hand_evals,
        ("MT3", "moe", "dense", 1, [0, 2000, 4000], lambda step, task: level[task] * step / 4000),
        ("MT3", "moe", "dense", 0, [0, 2000], lambda step, task: 0.9 if step == 2000 else 0.0),  # stopped early
    )
    finals = final_scores(evals, include_unfinished=True)
    matrix = finals[Cell("MT3", "moe", "dense")]
    assert matrix.tasks == MT3  # benchmark order
    assert matrix.seeds == [0, 1]  # rows ordered by seed
    np.testing.assert_array_equal(matrix.steps, [2000, 4000])
    np.testing.assert_allclose(matrix.scores, [[0.9, 0.9, 0.9], [0.2, 0.4, 0.6]], atol=1e-12)
    assert matrix.excluded == [] and matrix.unfinished == ["MT3-moe-dense-s00"] and matrix.table_step == 4000


def test_an_unfinished_run_is_left_out_of_the_table_by_default(hand_evals):
    """Seed 0 stopped at step 2,000 of a 4,000-step table: left out and named, not scored at 2,000."""
    evals = _frame(
        hand_evals,
        ("MT3", "moe", "dense", 1, [0, 2000, 4000]),
        ("MT3", "moe", "dense", 0, [0, 2000]),
        ("MT5", "moe", "dense", 0, [0, 2000]),  # another benchmark's shorter grid does not lower MT3's
    )
    finals = final_scores(evals)
    matrix = finals[Cell("MT3", "moe", "dense")]
    assert matrix.run_keys == ["MT3-moe-dense-s01"] and matrix.unfinished == [] and matrix.table_step == 4000
    assert matrix.excluded == [("MT3-moe-dense-s00", "unfinished: its last evaluation is at step 2,000, below the "
                                                     "table's step 4,000 (include it with --include-unfinished)")]
    assert finals[Cell("MT5", "moe", "dense")].run_keys == ["MT5-moe-dense-s00"]


def test_final_score_at_a_given_step(hand_evals):
    evals = _frame(
        hand_evals,
        ("MT3", "moe", "dense", 0, [0, 2000, 4000], lambda step, task: step / 10000),
        ("MT3", "moe", "dense", 1, [0, 2000], lambda step, task: step / 10000),
    )
    at_2000 = final_scores(evals, at_step=2000)[Cell("MT3", "moe", "dense")]
    np.testing.assert_allclose(at_2000.scores, np.full((2, 3), 0.2), atol=1e-12)
    at_4000 = final_scores(evals, at_step=4000)[Cell("MT3", "moe", "dense")]
    assert at_4000.run_keys == ["MT3-moe-dense-s00"]
    assert at_4000.excluded == [("MT3-moe-dense-s01", "no evaluation at step 4,000")]
    at_0 = final_scores(evals, at_step=0)[Cell("MT3", "moe", "dense")]
    np.testing.assert_allclose(at_0.scores, 0.0)


def test_a_run_missing_a_task_at_its_last_step_is_left_out_and_reported(hand_evals):
    evals = _frame(hand_evals, ("MT3", "mtppo", "dense", 0, [0, 2000]), ("MT3", "mtppo", "dense", 1, [0, 2000]))
    evals = evals[~((evals["seed"] == 1) & (evals["step"] == 2000) & (evals["task"] == "MemoryS11-v0"))]
    matrix = final_scores(evals)[Cell("MT3", "mtppo", "dense")]
    assert matrix.run_keys == ["MT3-mtppo-dense-s00"]
    assert matrix.excluded == [("MT3-mtppo-dense-s01", "no score for MemoryS11-v0 at step 2,000")]


def test_curves_have_nan_where_a_point_is_missing(hand_evals):
    evals = _frame(hand_evals, ("MT3", "moe", "gmp95", 0, [0, 2000, 4000]), ("MT3", "moe", "gmp95", 1, [0, 2000]))
    curve = score_curves(evals)[Cell("MT3", "moe", "gmp95")]
    assert curve.scores.shape == (2, 3, 3)
    np.testing.assert_array_equal(curve.steps, [0, 2000, 4000])
    assert np.isnan(curve.scores[1, :, 2]).all() and not np.isnan(curve.scores[0]).any()


def test_single_task_baseline_joins_the_tasks_on_common_seeds(hand_evals):
    runs = []
    for j, task in enumerate(MT3):
        for seed in (0, 1, 2):
            if task == "MemoryS11-v0" and seed == 2:
                continue  # the third seed is missing for one task
            runs.append((task, "single", "dense", seed, [0, 2000], lambda step, t, j=j, s=seed: (j + s) / 10))
    finals = final_scores(_frame(hand_evals, *runs))
    base = single_task_baseline(finals, "MT3")
    assert base.tasks == MT3 and base.seeds == [0, 1]
    np.testing.assert_allclose(base.scores, [[0.0, 0.1, 0.2], [0.1, 0.2, 0.3]], atol=1e-12)
    assert any("s02" in key for key, _ in base.excluded)
    assert single_task_baseline(finals, "MT5") is None  # DoorKey and DistShift have no runs


def test_a_run_whose_last_evaluation_is_nan_is_left_out_not_scored_earlier(hand_evals):
    evals = _frame(hand_evals, ("MT3", "moe", "dense", 0, [0, 2000, 4000]), ("MT3", "moe", "dense", 1, [0, 2000, 4000]))
    last = (evals["seed"] == 1) & (evals["step"] == 4000) & (evals["task"] == "LavaGapS7-v0")
    evals.loc[last, "return_mean"] = np.nan
    matrix = final_scores(evals)[Cell("MT3", "moe", "dense")]
    assert matrix.run_keys == ["MT3-moe-dense-s00"]
    assert matrix.excluded == [("MT3-moe-dense-s01", "its return_mean is NaN or null for LavaGapS7-v0 at step 4,000")]


def test_a_run_whose_returns_are_null_everywhere_is_left_out_with_a_reason(hand_evals):
    evals = _frame(hand_evals, ("MT3", "moe", "dense", 0, [0, 2000]), ("MT3", "moe", "dense", 1, [0, 2000]))
    evals.loc[evals["seed"] == 0, "return_mean"] = None
    matrix = final_scores(evals)[Cell("MT3", "moe", "dense")]
    assert matrix.run_keys == ["MT3-moe-dense-s01"]
    assert matrix.excluded == [("MT3-moe-dense-s00", "its return_mean is NaN, null or missing at every evaluation")]
