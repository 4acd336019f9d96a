"""The sweep folder: claimed once, its grid recorded, never written when foreign or locked."""

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


def with_results(folder: SweepFolder, *run_keys: str) -> None:
    """Give trials of ``folder`` a (placeholder) checkpoint: what makes a trial one "with results"."""
    for key in run_keys:
        path = os.path.join(folder.root, "checkpoints", key)
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "step-000000200.pt"), "wb").close()


def test_new_folder_gets_marker_resolved_spec_and_its_first_version(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    assert folder.root == str(tmp_path / "tiny")
    claim = prepare(folder, spec())
    assert claim.existed is False and claim.version.startswith("0001-")
    assert sorted(os.listdir(folder.root)) == sorted([MARKER, "history", "sweep.yaml"])
    text = open(os.path.join(folder.root, "sweep.yaml")).read()
    assert open(os.path.join(folder.root, "history", claim.version)).read() == text
    stored = yaml.safe_load(text)
    assert stored["seeds"] == 2 and stored["max_concurrent_trials"] is None  # defaults filled in
    again = prepare(folder, spec())  # the same spec resumes, nothing recorded
    assert again.existed is True and again.version is None
    assert inspect(folder, spec()).startswith("resumes")


def test_a_grown_grid_is_recorded_and_a_changed_trial_refused(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    with_results(folder, "Empty-5x5-v0-single-dense-s00")
    before = snapshot(tmp_path)
    longer = {**tiny_spec_data()["defaults"], "total_steps": 800}
    with pytest.raises(ResultsDirError) as info:
        prepare(folder, spec(seeds=3, defaults=longer))
    message = str(info.value)
    assert "changes the config of 1 trial(s) that already have results: total_steps: 400 -> 800 (1 trial)" in message
    assert "--name" in message and "\n" not in message
    assert snapshot(tmp_path) == before  # nothing written
    assert inspect(folder, spec(defaults=longer)).startswith("refused")
    assert inspect(folder, spec(seeds=3)).startswith("grows the sweep") and "adds 1 trial(s)" in inspect(
        folder, spec(seeds=3))

    grown = prepare(folder, spec(seeds=3))
    assert grown.version.startswith("0002-") and [t.run_key for t in grown.growth.added] == [
        "Empty-5x5-v0-single-dense-s02"]
    assert sorted(os.listdir(os.path.join(folder.root, "history")))[0].startswith("0001-")
    shrunk = prepare(folder, spec(seeds=[1, 2]))  # seed 0 has results: kept, outside the grid
    assert shrunk.growth.outside == ["Empty-5x5-v0-single-dense-s00"] and not shrunk.growth.added
    assert len(os.listdir(os.path.join(folder.root, "history"))) == 3
    # a trial without results may change; one with results may not, even outside the grid
    assert prepare(folder, spec(seeds=[1, 2], defaults=longer)).version.startswith("0004-")
    with pytest.raises(ResultsDirError, match="total_steps: 400 -> 800"):
        prepare(folder, spec(seeds=[0], defaults=longer))


def test_adding_an_axis_to_a_folder_with_results_is_refused(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    assert prepare(folder, spec(axes={"gamma": [0.9]})).version  # no results yet: the trials are renamed
    with_results(folder, "Empty-5x5-v0-single-dense-gamma-0.9-s00")
    with pytest.raises(ResultsDirError, match="removing the axis gamma would rename every trial"):
        prepare(folder, spec())
    assert prepare(folder, spec(axes={"gamma": [0.9, 0.8]})).growth.added  # another value: grows


def test_storage_may_move_without_changing_the_sweep(tmp_path):
    folder = SweepFolder.for_spec(spec(), str(tmp_path))
    prepare(folder, spec())
    claim = prepare(folder, spec(storage="/somewhere/else"))
    assert claim.existed is True and claim.version is None


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
    assert prepare(folder, spec()).existed is False
    assert sorted(os.listdir(tmp_path / "store" / "tiny")) == sorted([MARKER, "history", "sweep.yaml"])
    assert prepare(folder, spec()).existed is True
    with_results(SweepFolder(str(tmp_path / "store" / "tiny")), "Empty-5x5-v0-single-dense-s01")
    with pytest.raises(ResultsDirError, match="gamma: 0.99 -> 0.9"):
        prepare(folder, spec(defaults={**tiny_spec_data()["defaults"], "gamma": 0.9}))
    with pytest.raises(ResultsDirError, match="is itself a results folder"):
        prepare(SweepFolder.for_spec(spec(), folder.root), spec())
    (tmp_path / "foreign" / "tiny").mkdir(parents=True)
    (tmp_path / "foreign" / "tiny" / "x.csv").write_text("x")
    with pytest.raises(ResultsDirError, match="not a results folder of this tool"):
        prepare(SweepFolder.for_spec(spec(), f"file://{tmp_path}/foreign"), spec())
    with driver_lock(folder):  # no locks on object stores: a no-op
        pass


def test_a_folder_of_schema_version_1_resumes_under_its_old_names(tmp_path):
    """Marker version 1 and a sweep.yaml without labels, as the tool before issue 27 wrote them."""
    import json

    from orchestrator.spec import expand, labels_of
    from orchestrator.status import read_status

    legacy = tiny_spec_data(treatments=["dense", {"wd": {"coef": 0.01}}])
    root = tmp_path / "tiny"
    root.mkdir()
    (root / MARKER).write_text(json.dumps({"kind": "mtrl-results", "schema_version": 1, "layout": "sweep"}))
    (root / "sweep.yaml").write_text(yaml.safe_dump(legacy, sort_keys=False))
    folder = SweepFolder(str(root))
    stored = folder.stored_spec()
    given = validate_spec(legacy, "s.yaml", known_labels=labels_of(stored))
    claim = prepare(folder, given)
    assert claim.existed and claim.version is None  # the same grid: nothing recorded, nothing renamed
    assert [t.run_key for t in expand(given)][2:] == ["Empty-5x5-v0-single-wd-s00", "Empty-5x5-v0-single-wd-s01"]
    assert len(read_status(str(root)).trials) == 4
    assert json.loads((root / MARKER).read_text())["schema_version"] == 1  # the marker is left as it was
