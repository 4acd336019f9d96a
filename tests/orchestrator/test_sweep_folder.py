"""The sweep folder: claimed once, pinned to its spec, never written when foreign or locked."""

from __future__ import annotations

import os

import pytest
import yaml

from mtrl_plasticity.errors import ResultsDirError
from mtrl_plasticity.results import MARKER
from orchestrator.spec import validate_spec
from orchestrator.sweep_folder import SweepFolder, check_writable, driver_lock, inspect, prepare
from testkit.sweep import tiny_spec_data


def spec(**changes):
    return validate_spec(tiny_spec_data(**changes), "s.yaml")


def snapshot(root) -> dict:
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            out[path] = (os.path.getmtime(path), open(path, "rb").read())
    return out


def test_new_folder_gets_marker_and_resolved_spec(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    assert folder.root == str(tmp_path / "tiny")
    assert prepare(folder, spec()) is False
    assert sorted(os.listdir(folder.root)) == [MARKER, "sweep.yaml"]
    stored = yaml.safe_load(open(os.path.join(folder.root, "sweep.yaml")))
    assert stored["seeds"] == 2 and stored["max_concurrent_trials"] is None  # defaults filled in
    assert prepare(folder, spec()) is True  # the same spec resumes
    assert inspect(folder, spec()).startswith("resumes")


def test_changed_spec_is_refused_showing_the_difference(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    before = snapshot(tmp_path)
    with pytest.raises(ResultsDirError) as info:
        prepare(folder, spec(seeds=3))
    message = str(info.value)
    assert "seeds: 2 -> 3" in message and "--name" in message and "\n" not in message
    assert snapshot(tmp_path) == before
    assert inspect(folder, spec(seeds=3)).startswith("refused")


def test_storage_may_move_without_changing_the_sweep(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    assert prepare(folder, spec(storage="/somewhere/else")) is True


def test_foreign_and_other_folders_are_refused(tmp_path):
    foreign = tmp_path / "tiny"
    foreign.mkdir()
    (foreign / "data.csv").write_text("precious")
    with pytest.raises(ResultsDirError, match="not a results folder of this tool"):
        prepare(SweepFolder(str(foreign)), spec())
    assert os.listdir(foreign) == ["data.csv"]

    other = SweepFolder.for_spec(spec(name="other"), str(tmp_path))
    prepare(other, spec(name="other"))
    before = snapshot(tmp_path)
    # --storage pointing into another sweep's folder
    with pytest.raises(ResultsDirError, match="is itself a results folder"):
        prepare(SweepFolder.for_spec(spec(), other.root), spec())
    # a sweep folder renamed on disk
    os.rename(other.root, tmp_path / "renamed")
    with pytest.raises(ResultsDirError, match="holds sweep 'other', not 'renamed'"):
        prepare(SweepFolder(str(tmp_path / "renamed")), spec(name="renamed"))
    assert sorted(snapshot(tmp_path).values()) == sorted(before.values())


def test_trial_folder_is_not_a_sweep_folder(tmp_path):
    from orchestrator.storage import claim

    claim(str(tmp_path / "tiny"), layout="trial")
    with pytest.raises(ResultsDirError, match="is a trial results folder"):
        prepare(SweepFolder.for_spec(spec(), str(tmp_path)), spec())


def test_unwritable_storage_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="is not writable"):
        check_writable(str(blocker / "results"))
    with pytest.raises(PermissionError, match="is not writable"):
        check_writable("/proc/mtrl-results")
    check_writable(str(tmp_path / "fine"))
    assert os.listdir(tmp_path / "fine") == []  # the probe is gone


def test_one_driver_per_sweep_folder(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    with driver_lock(folder):
        with pytest.raises(ResultsDirError, match=r"being run by another `mtrl run` \(pid \d+"):
            with driver_lock(folder):
                pass
    with driver_lock(folder):  # released
        pass


def test_uri_storage_goes_through_pyarrow_fs(tmp_path):
    """``file://`` stands in for ``s3://``: the same pyarrow.fs code path, no local shortcuts."""
    storage = f"file://{tmp_path}/store"
    folder = SweepFolder.for_spec(spec(), storage)
    assert folder.root == f"{storage}/tiny" and folder.tune_dir == f"{storage}/tiny/tune"
    check_writable(storage)
    assert prepare(folder, spec()) is False
    assert sorted(os.listdir(tmp_path / "store" / "tiny")) == [MARKER, "sweep.yaml"]
    assert prepare(folder, spec()) is True
    with pytest.raises(ResultsDirError, match="seeds: 2 -> 3"):
        prepare(folder, spec(seeds=3))
    with pytest.raises(ResultsDirError, match="is itself a results folder"):
        prepare(SweepFolder.for_spec(spec(), folder.root), spec())
    (tmp_path / "foreign" / "tiny").mkdir(parents=True)
    (tmp_path / "foreign" / "tiny" / "x.csv").write_text("x")
    with pytest.raises(ResultsDirError, match="not a results folder of this tool"):
        prepare(SweepFolder.for_spec(spec(), f"file://{tmp_path}/foreign"), spec())
    with driver_lock(folder):  # no locks on object stores: a no-op
        pass
