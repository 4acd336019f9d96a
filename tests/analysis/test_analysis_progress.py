"""`mtrl analyze` shows a progress bar over its stages: the pipeline's and writing the outputs."""

from __future__ import annotations

import re

from analysis.cli import main
from analysis.pipeline import STAGES, compute


def test_compute_announces_each_of_its_stages(e2e_results):
    said: list[str] = []
    compute(e2e_results, reps=10, band_reps=10, jobs=1, progress=said.append)
    assert len(said) == STAGES and said[0] == "loading evaluations"


def test_analyze_prints_every_stage_of_its_bar_in_a_log(e2e_results, tmp_path, capsys):
    assert main([str(e2e_results), "--out", str(tmp_path / "out"), "--reps", "10", "--band-reps", "10", "--jobs", "1",
                 "--no-figures"]) == 0
    out = capsys.readouterr().out
    total = STAGES + 1
    shown = [int(n) for n in re.findall(rf"\[(\d+)/{total}\] ", out)]
    assert shown == list(range(1, total + 1))
    assert f"[{total}/{total}] writing tables" in out
    assert re.search(rf"analyze done .*{total}/{total}", out)
