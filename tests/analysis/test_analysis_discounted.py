"""``--score discounted`` and folders of schema version 1 (issue 27)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from analysis.cli import mtrl
from analysis.load import load_evals
from analysis.pipeline import compute
from analysis.report import table1_caption
from mtrl_plasticity.errors import AnalysisError
from orchestrator.schema import EVALS_SCHEMA
from testkit.synthetic import DISCOUNT_OF_A_SUCCESS, write_synthetic_sweep


def test_the_discounted_score_is_normalised_and_aggregated_like_the_return(tmp_path):
    """The synthetic rows' discounted return is the return times 0.99^19: IQM and its CI scale with it."""
    root = tmp_path / "results"
    write_synthetic_sweep(root, archs=("mtppo", "moe"), treatments=("dense", "gmp95"), seeds=range(4),
                          single_task=False, total_steps=4_000, sweep_yaml={"name": "s", "protocol": "draft"})
    plain = compute(root, reps=200, band_reps=20, jobs=1)
    discounted = compute(root, reps=200, band_reps=20, jobs=1, score="discounted")
    for column in ("iqm", "ci_low", "ci_high"):
        np.testing.assert_allclose(discounted.table1[column], plain.table1[column] * DISCOUNT_OF_A_SUCCESS,
                                   rtol=1e-12)
    assert plain.paper_compare and not discounted.paper_compare  # the paper's Table 1 is undiscounted
    assert "this table's of undiscounted returns" in plain.paper_reason
    assert "this table scores discounted returns" in discounted.paper_reason
    assert "normalised scores (discounted returns (each trial's gamma) / best reward)" in table1_caption(discounted)
    assert "normalised scores (undiscounted returns / best reward)" in table1_caption(plain)
    out = tmp_path / "out"
    assert mtrl(["analyze", str(root), "--out", str(out), "--score", "discounted", "--reps", "50", "--band-reps",
                 "10", "--no-figures", "--quiet"]) == 0
    assert "Score: normalised discounted returns (each trial's gamma) (`--score discounted`)" in \
        (out / "index.md").read_text()


def test_a_schema_version_1_folder_reads_with_the_new_columns_null(tmp_path, make_eval_row, rows_writer):
    v1 = pa.schema([f for f in EVALS_SCHEMA if f.name not in ("axes", "discounted_return_mean")])
    tasks = ("LavaGapS7-v0", "RedBlueDoors-6x6-v0", "MemoryS11-v0")
    rows = [make_eval_row("MT3", "moe", "dense", seed, step, task, 0.5, schema_version=1)
            for seed in (0, 1) for step in (0, 2000) for task in tasks]
    rows_writer(tmp_path, "evals", rows, schema=v1)
    evals = load_evals(tmp_path)
    assert set(evals["schema_version"]) == {1} and set(evals["axes"]) == {""}
    assert evals["discounted_return_mean"].isna().all()
    assert compute(tmp_path, reps=20, band_reps=10, jobs=1).table1["n_runs"].tolist() == [2]
    with pytest.raises(AnalysisError, match="no evaluation row has discounted_return_mean .*use --score return"):
        compute(tmp_path, reps=20, band_reps=10, jobs=1, score="discounted")
