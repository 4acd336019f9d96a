"""Tune's experiment state across a killed driver: whole files, a grid restored from the trials."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pyarrow.fs as pafs
import pytest
from ray import tune
from ray.tune.experiment import Experiment, Trial
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.sweep_folder import SweepFolder
from orchestrator.tune_state import (PART_SUFFIX, TUNER_STATE, ResumableGridSearch, atomic_local_filesystem,
                                     guard_tuner_state, tune_storage)

OLDER, NEWER = "2026-01-01_00-00-00", "2026-01-01_00-05-00"


# --- whole files --------------------------------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
import pyarrow.fs as pafs
from orchestrator.tune_state import atomic_local_filesystem
fs = atomic_local_filesystem() if sys.argv[2] == "atomic" else pafs.LocalFileSystem()
stream = fs.open_output_stream(sys.argv[1])
stream.write(b"new state " * 1000)
stream.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind", ["atomic", "plain"])
def test_a_writer_killed_mid_file_leaves_the_previous_file_whole(tmp_path, kind):
    target = tmp_path / "experiment_state-x.json"
    target.write_bytes(b"old state")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), kind])
    assert result.returncode == -9
    if kind == "atomic":
        assert target.read_bytes() == b"old state"
        [part] = [p for p in os.listdir(tmp_path) if p != target.name]
        assert part.startswith(".experiment_state-x.json.") and part.endswith(PART_SUFFIX)
    else:  # what Tune's own local filesystem leaves: the file cut short
        assert target.read_bytes() != b"old state"


def test_the_atomic_filesystem_copies_folders_and_travels_by_pickle(tmp_path):
    source = tmp_path / "staging"
    (source / "checkpoint_000001").mkdir(parents=True)
    (source / "tuner.pkl").write_bytes(b"x" * 3_000_000)
    (source / "checkpoint_000001" / "state.pt").write_bytes(b"y" * 10)
    fs = pickle.loads(pickle.dumps(atomic_local_filesystem()))
    assert fs.equals(atomic_local_filesystem())
    pafs.copy_files(str(source), str(tmp_path / "storage"), destination_filesystem=fs)
    assert (tmp_path / "storage" / "tuner.pkl").read_bytes() == b"x" * 3_000_000
    assert (tmp_path / "storage" / "checkpoint_000001" / "state.pt").read_bytes() == b"y" * 10
    fs.copy_file(str(tmp_path / "storage" / "tuner.pkl"), str(tmp_path / "copy.pkl"))
    assert (tmp_path / "copy.pkl").read_bytes() == b"x" * 3_000_000
    leftovers = [name for _, _, names in os.walk(tmp_path) for name in names if name.endswith(PART_SUFFIX)]
    assert leftovers == []
    fs.delete_dir(str(tmp_path / "storage"))
    assert not (tmp_path / "storage").exists()


def test_local_roots_get_the_atomic_filesystem_and_a_plain_path(tmp_path):
    for root in (str(tmp_path / "results"), f"file://{tmp_path}/results"):
        path, fs = tune_storage(root)
        assert path == str(tmp_path / "results")
        assert fs.type_name == "py::mtrl-atomic-local"


# --- tuner.pkl ----------------------------------------------------------------------------------
def test_a_tuner_state_emptied_by_a_killed_driver_is_put_back(tmp_path):
    # Tune rewrites tuner.pkl without a rename each time a Tuner is built; a SIGKILL in that
    # moment left it empty in a kill-and-resume run, and Tuner.restore failed on it.
    folder = SweepFolder(str(tmp_path / "sweep"))
    os.makedirs(folder.tune_dir)
    state = os.path.join(folder.tune_dir, TUNER_STATE)
    assert guard_tuner_state(folder) is False  # nothing to guard yet
    good = pickle.dumps({"settings": list(range(1000))})
    with open(state, "wb") as f:
        f.write(good)
    assert guard_tuner_state(folder) is False  # complete: a copy is kept aside
    for damage in (b"", good[: len(good) // 2]):
        with open(state, "wb") as f:
            f.write(damage)
        assert guard_tuner_state(folder) is True
        with open(state, "rb") as f:
            assert f.read() == good
    assert sorted(os.listdir(folder.tune_dir)) == sorted([TUNER_STATE, ".tuner.pkl.verified"])


def test_a_damaged_tuner_state_without_a_copy_is_left_alone(tmp_path):
    folder = SweepFolder(str(tmp_path / "sweep"))
    os.makedirs(folder.tune_dir)
    with open(os.path.join(folder.tune_dir, TUNER_STATE), "wb") as f:
        f.write(b"")
    assert guard_tuner_state(folder) is False
    assert os.listdir(folder.tune_dir) == [TUNER_STATE]


# --- the grid, restored from the trials ---------------------------------------------------------
def _trainable(config: dict) -> None:
    pass


def _grid(tmp_path, searcher: BasicVariantGenerator, n_trials: int = 5) -> BasicVariantGenerator:
    space = {"trial": tune.grid_search([{"run_key": f"r{i}", "config": "{}"} for i in range(n_trials)])}
    searcher.add_configurations([Experiment("grid", _trainable, config=space, storage_path=str(tmp_path))])
    return searcher


def _save_experiment_state(dirpath, session: str, trials: list[Trial]) -> None:
    state = {"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {}, "stats": {}}
    with open(os.path.join(dirpath, f"experiment_state-{session}.json"), "w") as f:
        json.dump(state, f)


def _run_key(trial: Trial | None) -> str | None:
    return None if trial is None else trial.config["trial"]["run_key"]


def test_a_grid_state_older_than_the_trials_hands_out_only_what_tune_lacks(tmp_path):
    # The grid state was uploaded before trial r2 was handed out and r0 finished, the
    # experiment state after: Tune restores r0 (finished), r1 and r2 (unfinished).
    searcher = _grid(tmp_path, ResumableGridSearch(max_concurrent=2))
    r0, r1 = searcher.next_trial(), searcher.next_trial()
    searcher.save_to_dir(str(tmp_path), session_str=OLDER)
    searcher.on_trial_complete(r0.trial_id)
    r0.set_status(Trial.TERMINATED)
    r2 = searcher.next_trial()
    assert [_run_key(t) for t in (r0, r1, r2)] == ["r0", "r1", "r2"]
    _save_experiment_state(tmp_path, NEWER, [r0, r1, r2])

    # What Tune's own restore would do: hand out r2 a second time.
    plain = BasicVariantGenerator(max_concurrent=2)
    plain.restore_from_dir(str(tmp_path))
    plain.on_trial_complete(r0.trial_id)
    plain.on_trial_complete(r1.trial_id)
    assert _run_key(plain.next_trial()) == "r2"

    resumed = ResumableGridSearch(max_concurrent=2)  # as built for a restore: never configured
    assert resumed.has_checkpoint(str(tmp_path))
    resumed.restore_from_dir(str(tmp_path))
    assert resumed.next_trial() is None  # r1 and r2 still to run fill both places; r0 does not count
    resumed.on_trial_complete(r1.trial_id)
    r3 = resumed.next_trial()
    assert (_run_key(r3), r3.trial_id) == ("r3", r0.trial_id[:-5] + "00003")  # the id of the first hand-out
    assert resumed.next_trial() is None
    resumed.on_trial_complete(r2.trial_id)
    assert _run_key(resumed.next_trial()) == "r4"
    resumed.on_trial_complete(r3.trial_id)
    assert resumed.next_trial() is None and resumed.is_finished()


def test_a_grid_state_newer_than_the_trials_hands_out_the_trials_tune_never_recorded(tmp_path):
    searcher = _grid(tmp_path, ResumableGridSearch())
    handed_out = [searcher.next_trial() for _ in range(3)]
    searcher.save_to_dir(str(tmp_path), session_str=NEWER)
    _save_experiment_state(tmp_path, OLDER, handed_out[:2])  # r2 was handed out after this upload

    resumed = ResumableGridSearch()
    resumed.restore_from_dir(str(tmp_path))
    assert [_run_key(resumed.next_trial()) for _ in range(4)] == ["r2", "r3", "r4", None]


def test_a_damaged_grid_state_is_passed_over_for_a_readable_one(tmp_path, caplog):
    searcher = _grid(tmp_path, ResumableGridSearch())
    r0 = searcher.next_trial()
    searcher.save_to_dir(str(tmp_path), session_str=OLDER)
    searcher.save_to_dir(str(tmp_path), session_str=NEWER)
    newest = tmp_path / f"basic-variant-state-{NEWER}.json"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short by a killed upload
    _save_experiment_state(tmp_path, NEWER, [r0])

    resumed = ResumableGridSearch()
    resumed.restore_from_dir(str(tmp_path))
    assert f"basic-variant-state-{NEWER}.json" in caplog.text
    assert [_run_key(resumed.next_trial()) for _ in range(5)] == ["r1", "r2", "r3", "r4", None]

    (tmp_path / f"basic-variant-state-{OLDER}.json").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no readable basic-variant-state"):
        ResumableGridSearch().restore_from_dir(str(tmp_path))
