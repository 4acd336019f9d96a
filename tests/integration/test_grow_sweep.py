"""A sweep folder grows (issue 27), on one local Ray instance shared by the tests of this module.

A tiny sweep grown three times (more seeds; another treatment and a variant; another value of
its grid axis) runs exactly the new trials each time, never touches an older trial's files, and
ends with the rows a fresh sweep of the final grid writes. A change to trials that have results
is refused in one line with nothing written. Variants and an axis of an MT3 sweep are told apart
in `mtrl status`, Table 1 and the figures, and pandas filters on the axis column.
"""

from __future__ import annotations

import glob
import io
import logging
import os
from contextlib import redirect_stdout

import pandas as pd
import pytest
import yaml
from rich.console import Console

from analysis.cli import mtrl
from analysis.figures import learning_curves_figure
from analysis.pipeline import compute
from orchestrator.status import read_status, render_status
from testkit.ray import assert_rows_exactly_once, read_dataset, trials_of
from testkit.spec import tiny_spec_data

pytestmark = pytest.mark.slow

TREATMENTS_V3 = ["dense", "wd", {"wd": {"coef": 0.01}, "label": "wd-strong"}, {"wd": {"coef": 0.0001}}]
VERSIONS = [
    {"seeds": 1},
    {"seeds": 2},  # more seeds
    {"seeds": 2, "treatments": TREATMENTS_V3},  # another treatment (wd), a labelled and a derived variant
    {"seeds": 2, "treatments": TREATMENTS_V3, "axes": {"gamma": [0.99, 0.9]}},  # another axis value
]
"""The grid's versions: each a superset of the one before."""


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def sweep_file(path, name: str = "grow", **version) -> str:
    data = tiny_spec_data(name, axes={"gamma": [0.99]}, max_failures=1)
    data["defaults"].update(total_steps=400, eval_episodes=2)
    data.update(version)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def trial_files(root: str) -> dict[str, tuple[int, bytes]]:
    """``{path: (mtime_ns, bytes)}`` of every Parquet file and checkpoint of the sweep."""
    out = {}
    for folder in ("metrics", "checkpoints"):
        for directory, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                path = os.path.join(directory, name)
                out[path] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def folder_files(root: str) -> dict[str, tuple[int, bytes]]:
    """Every file of the sweep folder but the driver's lock (a refused run takes it before the check)."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name != ".driver.lock":
                path = os.path.join(directory, name)
                out[path] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def launched(root: str) -> set[str]:
    """The trials the newest `mtrl run` gave Tune (its run folder's trial folders)."""
    newest = sorted(glob.glob(os.path.join(root, "tune", "run-*")))[-1]
    return {name for name in os.listdir(newest) if os.path.isdir(os.path.join(newest, name))}


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """The sweep grown version by version; per version what the run printed, launched and left."""
    tmp = tmp_path_factory.mktemp("grow")
    storage = tmp / "results"
    root = str(storage / "grow")
    steps = []
    for number, version in enumerate(VERSIONS, start=1):
        path = sweep_file(tmp / f"v{number}.yaml", **version)
        before = trial_files(root) if os.path.isdir(root) else {}
        known = {t.run_key for t in trials_of(str(tmp / f"v{number - 1}.yaml"))} if number > 1 else set()
        out = io.StringIO()
        with redirect_stdout(out):
            code = mtrl(["run", path, "--storage", str(storage)])
        trials = trials_of(path)
        steps.append({"code": code, "out": out.getvalue(), "trials": trials, "launched": launched(root),
                      "new": {t.run_key for t in trials} - known, "before": before, "after": trial_files(root)})
    return {"root": root, "storage": storage, "final": path, "steps": steps, "tmp": tmp}


def test_each_rerun_runs_exactly_the_new_trials_and_leaves_older_files_alone(grown):
    steps = grown["steps"]
    assert [len(s["trials"]) for s in steps] == [1, 2, 8, 16]
    for number, step in enumerate(steps, start=1):
        assert step["code"] == 0, step["out"]
        assert step["launched"] == step["new"], number  # only the new trials went to Tune
        assert {p: step["after"][p] for p in step["before"]} == step["before"]  # older files byte-identical
        if number > 1:
            assert f"the grid grows by {len(step['new'])} trial(s)" in step["out"]
    assert_rows_exactly_once(grown["root"], steps[-1]["trials"])
    # Labels name the trials: the registered name, the user's label, the derived one; the axis value.
    keys = {t.run_key for t in steps[-1]["trials"]}
    assert {"Empty-5x5-v0-single-wd-strong-gamma-0.9-s01", "Empty-5x5-v0-single-wd.coef-0.0001-gamma-0.99-s00",
            "Empty-5x5-v0-single-dense-gamma-0.99-s00"} <= keys
    history = sorted(os.listdir(os.path.join(grown["root"], "history")))
    assert [name[:4] for name in history] == ["0001", "0002", "0003", "0004"]
    assert open(os.path.join(grown["root"], "history", history[-1])).read() == \
        open(os.path.join(grown["root"], "sweep.yaml")).read()
    status = read_status(grown["root"])
    assert [t.state for t in status.trials] == ["done"] * 16 and not status.outside_grid


def test_the_grown_folder_equals_a_fresh_sweep_of_the_final_grid(grown):
    fresh = grown["tmp"] / "fresh"
    assert mtrl(["run", grown["final"], "--storage", str(fresh)]) == 0
    for dataset in ("evals", "train"):
        assert read_dataset(grown["root"], dataset).equals(read_dataset(str(fresh / "grow"), dataset)), dataset


@pytest.mark.parametrize("change, expected", [
    ({"defaults": {"total_steps": 800}}, "total_steps: 400 -> 800 (16 trials)"),
    ({"overrides": [{"match": {"treatment": "wd"}, "set": {"ent_coef": 0.02}}]}, "ent_coef: 0.01 -> 0.02 (12 trials)"),
    ({"treatments": ["dense", "wd", {"wd": {"coef": 0.02}, "label": "wd-strong"}, {"wd": {"coef": 0.0001}}]},
     "treatment_params.coef: 0.01 -> 0.02 (4 trials)"),
])
def test_a_change_to_trials_with_results_is_refused_in_one_line(grown, capsys, change, expected):
    data = yaml.safe_load(open(grown["final"]))
    for key, value in change.items():
        data[key] = {**data[key], **value} if key == "defaults" else value
    path = grown["tmp"] / "changed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = folder_files(grown["root"])
    capsys.readouterr()
    assert mtrl(["run", str(path), "--storage", str(grown["storage"])]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "--name NEW_NAME" in lines[0], lines
    assert folder_files(grown["root"]) == before
    # --dry-run says the same, and starts nothing
    assert mtrl(["run", str(path), "--storage", str(grown["storage"]), "--dry-run"]) == 0
    assert expected in capsys.readouterr().out
    assert folder_files(grown["root"]) == before


def test_dry_run_of_a_grown_spec_and_values_left_out_of_the_grid(grown, capsys):
    data = yaml.safe_load(open(grown["final"]))
    data["seeds"] = 3
    path = grown["tmp"] / "more.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    capsys.readouterr()
    assert mtrl(["run", str(path), "--storage", str(grown["storage"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grows the sweep in" in out and "adds 8 trial(s)" in out

    # Removing values: their trials stay on disk, outside the grid; analyze leaves them out unless asked.
    smaller = dict(data, seeds=[1], axes={"gamma": [0.99, 0.9]})
    path.write_text(yaml.safe_dump(smaller, sort_keys=False))
    before = trial_files(grown["root"])
    assert mtrl(["run", str(path), "--storage", str(grown["storage"])]) == 0
    assert "8 trial(s) with results are now outside the grid" in capsys.readouterr().out
    assert trial_files(grown["root"]) == before  # nothing ran, nothing was rewritten
    status = read_status(grown["root"])
    assert len(status.trials) == 8 and len(status.outside_grid) == 8
    assert all(t.config.seed == 0 for t in status.outside_grid)
    text = _rendered(status)
    assert "(outside the grid)" in text and "8 trial(s) of earlier versions of the grid are outside it now" in text
    # back to the full grid: nothing to run
    assert mtrl(["run", grown["final"], "--storage", str(grown["storage"])]) == 0
    assert "all 16 trials done" in capsys.readouterr().out


def _rendered(status) -> str:
    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(render_status(status))
    return console.export_text()


def test_variants_and_an_axis_are_told_apart_everywhere(tmp_path, capsys):
    """Two variants of one treatment and a two-value axis, on MT3 (Table 1 is of multi-task cells)."""
    data = tiny_spec_data("variants", benchmarks=["MT3"], archs=["mtppo"], seeds=1,
                          treatments=["dense", {"wd": {"coef": 0.01}}, {"wd": {"coef": 0.0001}, "label": "wd-light"}],
                          axes={"gamma": [0.99, 0.9]})
    data["defaults"].update(total_steps=200, eval_episodes=1)
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    storage = tmp_path / "results"
    root = str(storage / "variants")
    assert mtrl(["run", str(path), "--storage", str(storage)]) == 0
    trials = trials_of(str(path))
    assert sorted(t.run_key for t in trials) == sorted(
        f"MT3-mtppo-{label}-gamma-{gamma}-s00" for label in ("dense", "wd.coef-0.01", "wd-light")
        for gamma in ("0.99", "0.9"))

    text = _rendered(read_status(root))
    for label in ("MT3 / mtppo / wd.coef-0.01 / gamma=0.9", "MT3 / mtppo / wd-light / gamma=0.99",
                  "MT3 / mtppo / dense / gamma=0.9"):
        assert label in text

    out = tmp_path / "analysis"
    assert mtrl(["analyze", root, "--out", str(out), "--reps", "50", "--band-reps", "20", "--quiet"]) == 0
    table = pd.read_csv(out / "table1.csv")
    assert sorted(zip(table["treatment"], table["gamma"], strict=True)) == sorted(
        (label, gamma) for label in ("dense", "wd.coef-0.01", "wd-light") for gamma in (0.99, 0.9))
    markdown = (out / "table1.md").read_text()
    assert "| Architecture | Treatment | gamma |" in markdown
    assert "| MTPPO | wd.coef-0.01 | 0.9 |" in markdown and "| MTPPO | wd-light | 0.99 |" in markdown
    assert "wd.coef-0.01 is Weight Decay (coef=0.01)" in markdown  # the long form, in the caption
    latex = (out / "table1.tex").read_text()
    assert r"wd.coef-0.01 & 0.9 &" in latex and r"wd-light & 0.99 &" in latex

    result = compute(root, reps=50, band_reps=20, jobs=1)
    figure = learning_curves_figure(result.curve_bands, ["dense", "wd.coef-0.01", "wd-light"],
                                    variants=result.variants)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "wd.coef-0.01: Weight Decay (coef=0.01), gamma=0.9" in legend
    assert "wd-light: Weight Decay (coef=0.0001), gamma=0.99" in legend
    assert "Dense, gamma=0.99" in legend and len(legend) == 6

    evals = pd.read_parquet(os.path.join(root, "metrics", "evals"), filters=[("gamma", "==", 0.9)])
    assert set(evals["run_key"]) == {t.run_key for t in trials if t.gamma == 0.9}
    assert set(evals["axes"]) == {"gamma-0.9"} and len(evals) == 3 * 2 * 3  # 3 trials x 2 points x 3 tasks
