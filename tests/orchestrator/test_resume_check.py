"""The resume check on real trials' files, without Ray: a flipped bit in any column of a finished
trial's Parquet is set aside and the trial redone to a clean run's rows; files written without page
checksums (earlier versions) still resume and load; stale temporary files of the trial are removed,
nobody else's; the analysis refuses a damaged file in one line naming it."""

from __future__ import annotations

import glob
import os
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.cli import mtrl
from analysis.load import load_evals
from mtrl_plasticity.errors import AnalysisError
from orchestrator.checkpoint import DirectoryCheckpointer, checkpoint_intact
from orchestrator.resume_check import check_trial, trial_checkpoint_dir
from orchestrator.sink import ParquetSink
from orchestrator.spec import expand, validate_spec
from orchestrator.sweep_folder import SweepFolder, claimed
from orchestrator.trial import run_trial
from testkit.damage import flip_bit_in_column
from testkit.spec import tiny_spec_data


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep folder of two finished trials, built without Ray; each test works on a copy."""
    spec = validate_spec(tiny_spec_data("crc", seeds=2), "s.yaml")
    folder = SweepFolder.for_spec(spec, str(tmp_path_factory.mktemp("clean")))
    with claimed(folder, spec):
        pass
    trials = expand(spec)
    for config in trials:
        run_trial(config, ParquetSink.for_config(folder.root, config),
                  DirectoryCheckpointer(trial_checkpoint_dir(folder.root, config.run_key)))
    return folder.root, trials


@pytest.fixture
def folder(finished, tmp_path):
    root, trials = finished
    copy = str(tmp_path / "crc")
    shutil.copytree(root, copy)
    return copy, trials


def compacted(root: str, config, dataset: str) -> str:
    [path] = ParquetSink.for_config(root, config).run_files(dataset)
    return path


def table(root: str, config, dataset: str) -> pd.DataFrame:
    frame = ParquetSink.for_config(root, config).read(dataset).to_pandas()
    return frame[[c for c in frame.columns if not c.startswith("perf/")]]


def test_a_flipped_bit_in_a_value_column_is_set_aside_and_the_trial_redone(finished, folder):
    root, trials = folder
    config = trials[0]
    path = compacted(root, config, "evals")
    flip_bit_in_column(path, "episode_length_mean")
    check = check_trial(root, config)
    assert not check.done and check.resume_step is None
    line = check.line(root) or ""
    assert "evals file" in line and os.path.basename(path) in line and "a page fails its checksum" in line
    assert "starts over" in line and "\n" not in line
    assert not os.path.exists(path)
    assert glob.glob(os.path.join(root, "set-aside", "metrics", "evals", "**", os.path.basename(path) + ".*"),
                     recursive=True)
    assert check_trial(root, trials[1]).done  # its neighbour in the same folder is untouched

    run_trial(config, ParquetSink.for_config(root, config),
              DirectoryCheckpointer(trial_checkpoint_dir(root, config.run_key)))
    assert check_trial(root, config).done
    for dataset in ("evals", "train"):
        pd.testing.assert_frame_equal(table(root, config, dataset), table(finished[0], config, dataset))


@pytest.mark.parametrize("column", ["run_key", "step", "task", "return_mean", "success_rate"])
def test_every_column_is_covered(folder, column):
    root, trials = folder
    flip_bit_in_column(compacted(root, trials[0], "evals"), column)
    check = check_trial(root, trials[0])
    assert not check.done and any("a page fails its checksum" in p for p in check.problems), check.problems


def test_files_without_page_checksums_still_resume_and_load(folder):
    """Files of earlier versions carry no page CRCs: pyarrow verifies only pages that have one."""
    root, trials = folder
    for config in trials:
        for dataset in ("evals", "train"):
            path = compacted(root, config, dataset)
            pq.write_table(pq.read_table(path), path, write_page_checksum=False)
    assert all(check_trial(root, config).done for config in trials)
    assert not os.path.exists(os.path.join(root, "set-aside"))
    assert len(load_evals(root)) == 2 * 3  # 2 trials x 3 evaluation points x 1 task


def test_stale_temporary_files_of_the_trial_are_removed_and_nothing_else(folder):
    root, trials = folder
    mine, other = trials[0].run_key, trials[1].run_key
    evals_dir = os.path.dirname(compacted(root, trials[0], "evals"))
    checkpoints = trial_checkpoint_dir(root, mine)
    stale = [os.path.join(checkpoints, ".step-000000600.pt.tmp"),
             os.path.join(evals_dir, f".{mine}__000000200-000000400.parquet.tmp"),
             os.path.join(evals_dir, f".{mine}.parquet.tmp")]
    kept = [os.path.join(evals_dir, f".{other}.parquet.tmp"),  # another trial's: its own check's business
            os.path.join(evals_dir, ".notes.tmp"), os.path.join(evals_dir, "notes.parquet.tmp"),
            os.path.join(checkpoints, ".mine.pt.tmp"), os.path.join(checkpoints, "step-000000600.pt.tmp")]
    for path in stale + kept:
        with open(path, "wb") as f:
            f.write(b"partial")
    assert check_trial(root, trials[0]).done
    assert [p for p in stale if os.path.exists(p)] == []
    assert [p for p in kept if not os.path.exists(p)] == []


def test_analysis_refuses_a_damaged_file_in_one_line_naming_it(folder, capsys):
    root, trials = folder
    path = compacted(root, trials[1], "evals")
    flip_bit_in_column(path, "normalised_return_mean")
    with pytest.raises(AnalysisError, match="a page fails its checksum") as raised:
        load_evals(root)
    assert path in str(raised.value)
    capsys.readouterr()
    assert mtrl(["analyze", root, "--out", os.path.join(root, "..", "report"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mtrl analyze: error: ") and path in err


def test_a_flipped_bit_in_a_checkpoint_is_still_caught(folder):
    """Checkpoints keep their zip CRCs: one flipped bit fails the driver's check and the trial's load."""
    root, trials = folder
    checkpoints = DirectoryCheckpointer(trial_checkpoint_dir(root, trials[0].run_key))
    step, path = checkpoints.steps()[-1]
    data = bytearray(open(path, "rb").read())
    assert checkpoint_intact(bytes(data))
    data[len(data) // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)
    assert not checkpoint_intact(bytes(data))
    lines: list[str] = []
    DirectoryCheckpointer(checkpoints.directory, aside_root=root, on_warning=lines.append).load()
    assert len(lines) == 1 and f"step-{step:09d}.pt is damaged" in lines[0] and not os.path.exists(path)
