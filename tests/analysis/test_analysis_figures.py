"""Figures and curves say what they show: interval labels, padded axes, missing cells, titles from the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import Cell
from analysis.aggregate import Band, Interval
from analysis.figures import learning_curves_figure, plasticity_figure, poi_figure, profiles_figure
from analysis.pipeline import compute
from analysis.plasticity import plasticity_curves
from analysis.report import write_outputs
from testkit.synthetic import write_synthetic_sweep


def _band(x=(0, 1000, 2000)) -> Band:
    x = np.asarray(x, dtype=float)
    return Band(x=x, point=np.full(len(x), 0.5), low=np.full(len(x), 0.4), high=np.full(len(x), 0.6))


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_plasticity_bands_are_student_t_intervals_of_the_mean():
    """Three runs measuring 0, 1, 2 at a step: mean 1, sd 1, half-width t(0.975, 2) / sqrt(3) = 2.484
    (the normal 1.96 / sqrt(3) = 1.13 would be far too narrow); one run gives no band."""
    cell = {"benchmark": "MT3", "arch": "moe", "treatment": "dense"}
    rows = [{**cell, "step": 2000, "srank": v} for v in (0.0, 1.0, 2.0)]
    rows.append({"benchmark": "MT3", "arch": "moe", "treatment": "dense", "step": 4000, "srank": 5.0})
    from analysis.plasticity import Metric

    curves = plasticity_curves(pd.DataFrame(rows), metrics=(Metric("srank", "srank"),))
    first, second = curves.iloc[0], curves.iloc[1]
    half = stats.t.ppf(0.975, 2) / np.sqrt(3)
    assert half == pytest.approx(2.4841, abs=1e-4)
    assert (first["mean"], first["low"], first["high"], first["n"]) == (1.0, pytest.approx(1 - half),
                                                                        pytest.approx(1 + half), 3)
    assert second["n"] == 1 and np.isnan(second["low"]) and np.isnan(second["high"])


def test_plasticity_figure_is_labelled_with_its_interval_and_names_only_treatments_with_data():
    curves = pd.DataFrame([{"benchmark": "MT5", "arch": "moe", "treatment": t, "metric": "sparsity/actor",
                            "step": 2000, "mean": 1.0, "low": 0.5, "high": 1.5, "n": 3} for t in ("dense", "redo")])
    fig = plasticity_figure(curves, "MT5", ["dense", "gmp95", "redo"])
    title = fig._suptitle.get_text()
    assert "95% t-interval" in title and "95% CI" not in title
    assert "ReDo" in title and "95% Sparsity" not in title
    sparsity_panel = fig.axes[4]
    assert "no data: 95% Sparsity" in _texts(sparsity_panel)


def test_poi_axis_is_padded_so_a_certain_improvement_is_off_the_frame():
    poi = {Cell("MT3", "moe", "gmp95"): Interval(1.0, 1.0, 1.0), Cell("MT3", "moe", "redo"): Interval(0.0, 0.0, 0.0)}
    ax = poi_figure(poi).axes[0]
    low, high = ax.get_xlim()
    assert low < 0.0 and high > 1.0
    assert list(ax.get_xticks()) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_missing_cell_is_marked_in_its_panel():
    bands = {Cell("MT3", "moe", "dense"): _band(), Cell("MT3", "moe", "gmp95"): _band(),
             Cell("MT3", "mtppo", "dense"): _band()}  # MT3/mtppo/gmp95 has no data
    fig = learning_curves_figure(bands, ["dense", "gmp95"])
    mtppo, moe = fig.axes[0], fig.axes[1]  # rows: MTPPO, then MoE
    assert mtppo.get_title().startswith("MTPPO") and _texts(mtppo) == ["no data: 95% Sparsity"]
    assert _texts(moe) == []
    profiles = {Cell("MT3", "moe", "dense"): _band((0.0, 0.5, 1.0))}
    fig = profiles_figure(profiles, "MT3", treatments=["dense", "redo"])
    assert _texts(fig.axes[0]) == ["no data: ReDo"]
    poi = {Cell("MT3", "moe", "redo"): Interval(0.6, 0.5, 0.7), Cell("MT5", "moe", "gmp95"): Interval(0.6, 0.5, 0.7)}
    mt3, mt5 = poi_figure(poi).axes
    assert _texts(mt3) == ["no data"] and _texts(mt5) == ["no data"]
    ax = poi_figure(poi, expected=[Cell("MT3", "mtppo", "redo")]).axes[0]  # a cell with no estimate anywhere
    assert [t.get_text() for t in ax.get_yticklabels()] == ["MoE: ReDo", "MoE: 95% Sparsity", "MTPPO: ReDo"]
    assert _texts(ax) == ["no data", "no data"]  # MoE: 95% Sparsity and MTPPO: ReDo on MT3


def test_figure_titles_name_only_the_pruning_levels_in_the_data(tmp_path):
    """gmp95 ran on MT3 only: MT5's plasticity figure must not promise 95% pruning."""
    root = tmp_path / "results"
    write_synthetic_sweep(root, benchmarks=("MT3", "MT5"), archs=("moe",), treatments=("dense", "gmp95", "redo"),
                          seeds=range(2), total_steps=4000, single_task=False,
                          skip=["MT5-moe-gmp95-s00", "MT5-moe-gmp95-s01"])
    result = compute(root, reps=10, band_reps=10, jobs=1)
    written = write_outputs(result, tmp_path / "out")
    titles = [o.title for o in written.outputs if o.kind == "figure"]
    assert "Plasticity metrics on MT5, other interventions (paper Figure 9)" in titles
    assert "Plasticity metrics on MT3, 95% pruning vs. other interventions (paper Figure 8)" in titles
    assert "Plasticity metrics on MT5, no pruning level with data (paper Figure 6)" in titles
    assert "Plasticity metrics on MT3, pruning levels 95% (paper Figure 5)" in titles
