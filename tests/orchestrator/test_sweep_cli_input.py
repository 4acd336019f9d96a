"""`mtrl run` input handling: each mistake is one line and exit code 2; nothing starts or changes."""

from __future__ import annotations

import os
import subprocess

import pytest

from analysis.cli import mtrl
from orchestrator.spec import validate_spec
from orchestrator.sweep_folder import SweepFolder, prepare
from testkit.sweep import REPO, SWEEPS, tiny_spec_data


def files_under(root) -> dict:
    """Every file's mtime and bytes, but the driver lock: a refused run takes it (empty) before the spec check."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name == ".driver.lock":
                continue
            path = os.path.join(directory, name)
            out[path] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def run_refused(capsys, argv) -> str:
    import ray

    assert mtrl(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtrl run: error: "), err
    assert not ray.is_initialized()
    return lines[0]


@pytest.mark.parametrize("content, expected", [
    ("name: x\nbenchmarks: [MT3\n", "malformed YAML"),
    ({"benchmarks": ["MT3", "MT9"]}, "unknown benchmark 'MT9'"),
    ({"treatments": ["dense", "gmp42"]}, "unknown treatment 'gmp42'"),
    ({"seedz": 2}, "unknown key 'seedz' (did you mean 'seeds'?)"),
    ({"seeds": 0}, "seeds: must be a count >= 1"),
    ({"defaults": {"total_steps": 450}}, "must divide total_steps=450"),
])
def test_bad_sweep_files(tmp_path, write_sweep, capsys, content, expected):
    if isinstance(content, dict):
        content = tiny_spec_data(**content)
    path = write_sweep(content)
    storage = tmp_path / "store"
    line = run_refused(capsys, ["run", path, "--storage", str(storage)])
    assert expected in line and path in line
    assert not storage.exists()


def test_bad_set_values(write_sweep, tmp_path, capsys):
    path = write_sweep(tiny_spec_data())
    assert "unknown key 'seeds_count'" in run_refused(capsys, ["run", path, "--set", "seeds_count=1",
                                                               "--storage", str(tmp_path / "s")])
    assert "expects key=value" in run_refused(capsys, ["run", path, "--set", "seeds", "--storage", str(tmp_path)])


def test_unwritable_storage(write_sweep, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = run_refused(capsys, ["run", write_sweep(tiny_spec_data()), "--storage", str(blocker / "results")])
    assert "is not writable" in line
    assert blocker.read_text() == "x"


def test_results_folder_of_another_sweep_or_spec(write_sweep, tmp_path, capsys):
    storage = tmp_path / "store"
    original = validate_spec(tiny_spec_data(), "s.yaml")
    folder = SweepFolder.for_spec(original, str(storage))
    prepare(folder, original)
    os.makedirs(os.path.join(folder.root, "checkpoints", "Empty-5x5-v0-single-dense-s01"))
    open(os.path.join(folder.root, "checkpoints", "Empty-5x5-v0-single-dense-s01", "step-000000200.pt"), "wb").close()
    before = files_under(storage)
    changed = write_sweep(tiny_spec_data(seeds=5, defaults={**tiny_spec_data()["defaults"], "eval_episodes": 3}))
    line = run_refused(capsys, ["run", changed, "--storage", str(storage)])
    assert "changes the config of 1 trial(s) that already have results: eval_episodes: 2 -> 3 (1 trial)" in line
    line = run_refused(capsys, ["run", changed, "--storage", str(storage / "tiny")])
    assert "is itself a results folder" in line
    foreign = tmp_path / "foreign"
    (foreign / "tiny").mkdir(parents=True)
    (foreign / "tiny" / "notes.txt").write_text("mine")
    line = run_refused(capsys, ["run", write_sweep(tiny_spec_data()), "--storage", str(foreign)])
    assert "not a results folder of this tool" in line
    assert files_under(storage) == before
    assert os.listdir(foreign / "tiny") == ["notes.txt"]


def test_dry_run_prints_the_plan_and_starts_nothing(write_sweep, tmp_path, capsys):
    storage = tmp_path / "store"
    assert mtrl(["run", os.path.join(SWEEPS, "smoke.yaml"), "--dry-run", "--storage", str(storage),
                 "--set", "seeds=3"]) == 0
    out = capsys.readouterr().out
    assert "6 trials" in out and "MT3 / moe / dense" in out and "core-hours" in out
    assert "new sweep in" in out and not storage.exists()


def test_paper_dry_run_reports_2100_trials(tmp_path):
    result = subprocess.run(["mtrl", "run", os.path.join(SWEEPS, "paper.yaml"), "--dry-run",
                             "--storage", str(tmp_path / "store")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2,100 trials, about " in result.stdout and "core-hours" in result.stdout
    assert "MT7 / moore / wd" in result.stdout and "MultiRoom-N2-S4-v0 / single / dense" in result.stdout


def test_relative_storage_is_refused_on_a_cluster(write_sweep, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # never contacted: refused before
    line = run_refused(capsys, ["run", write_sweep(tiny_spec_data()), "--storage", "results"])
    assert "is relative: on a cluster" in line
