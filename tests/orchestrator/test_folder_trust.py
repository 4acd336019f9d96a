"""Links, special files and the marker inside a results folder (issue 29, items 4, 6, 8c and 8e).

* A symbolic link anywhere inside a sweep or trial folder is refused in one line naming it and
  where it points, before any work, and the folder it points to is left exactly as it was
  (``mtrl run``, ``mtrl trial --resume``); the writers that run later (``move_aside``, the
  trial logs, a trial's worker) refuse a link made since.
* Only regular files are read: a FIFO or a device, as the sweep file or inside the folder, is
  one line and exit 2 in bounded time (each command runs in a child with a timeout), and
  nothing in the folder is rewritten.
* One rule for the marker: every command refuses an empty one.
* ``mtrl analyze`` names what a results folder that is not a folder is.

No Ray starts here: every case is refused before it would. (That a sweep whose storage root
is itself a link runs: ``tests/integration/test_folder_links.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from analysis.cli import mtrl
from mtrl_plasticity.errors import ResultsDirError
from mtrl_plasticity.results import MARKER
from orchestrator.config import TrialConfig
from orchestrator.local_trial import prepare_results
from orchestrator.spec import validate_spec
from orchestrator.storage import move_aside, refuse_links, refuse_odd_entries, resolve_filesystem
from orchestrator.sweep_folder import SweepFolder, prepare
from orchestrator.trial_logs import append_to_log
from testkit.sweep import REPO, tiny_spec_data
from testkit.synthetic import write_synthetic_sweep

RUN_KEY = "Empty-5x5-v0-single-dense-s00"
PARTITION = "benchmark=Empty-5x5-v0/arch=single/treatment=dense"
TIMEOUT_S = 60
TRIAL = ["trial", "--benchmark", "Empty-5x5-v0", "--arch", "single", "--total-steps", "400",
         "--steps-per-epoch", "100", "--eval-interval", "200", "--checkpoint-interval", "200", "--quiet"]


# --- helpers -----------------------------------------------------------------------------------------------
def snapshot(root) -> dict[str, object]:
    """Every entry under ``root`` (links and FIFOs not followed or opened): name -> bytes, or its kind."""
    out: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if os.path.islink(path):
                out[relative] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                out[relative] = open(path, "rb").read()
            else:
                out[relative] = "folder" if os.path.isdir(path) else "special"
    return out


def sweep_folder(tmp_path):
    """A sweep folder of the tiny spec (``store/tiny``) with files in every place a trial writes; its sweep file."""
    spec = validate_spec(tiny_spec_data(), "sweep.yaml")
    root = tmp_path / "store" / "tiny"
    prepare(SweepFolder.for_spec(spec, str(tmp_path / "store")), spec)
    write_synthetic_sweep(root, benchmarks=("Empty-5x5-v0",), archs=(), treatments=(), seeds=range(1),
                          total_steps=400, eval_interval=200, steps_per_epoch=100, segment_steps=200)
    for folder, name in (("checkpoints/" + RUN_KEY, "step-000000200.pt"), ("logs", RUN_KEY + ".log"),
                         ("set-aside", "old.parquet.x"), ("tensorboard/" + RUN_KEY, "events.out"),
                         ("progress", RUN_KEY + ".json")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(b"{}")
    (root / ".driver.lock").write_bytes(b"")  # as a run before left it
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text((root / "sweep.yaml").read_text())
    return root, str(sweep_file)


def outside_folder(tmp_path):
    """A user's own folder beside the results, with a file of theirs in it."""
    outside = tmp_path / "mine"
    outside.mkdir()
    (outside / "thesis.tex").write_text("\\section{Results}\n")
    return outside


def plant_link(root, relative: str, outside) -> str:
    """Replace ``root/relative`` (file or folder) by a link to a copy of it in ``outside``; returns the target."""
    path = root / relative
    target = outside / relative.replace("/", "_")
    os.rename(path, target)
    os.symlink(target, path)
    return str(target)


def refused(capsys, argv: list[str], command: str) -> str:
    """Run ``mtrl argv`` in this process: exit 2 with one line; that line."""
    code = mtrl(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"mtrl {command}: error: "), err
    return err[0]


def refused_in_a_child(argv: list[str], cwd, command: str) -> str:
    """Run ``mtrl argv`` in a child with a timeout (a read that blocks would hang it): exit 2 with one line."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "analysis.cli", *argv], cwd=cwd, capture_output=True, text=True,
                            timeout=TIMEOUT_S, env={**os.environ, "PYTHONPATH": REPO, "HOME": str(cwd)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"mtrl {command}: error: "), \
        result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout and time.monotonic() - start < TIMEOUT_S
    return lines[0]


# --- item 4: links inside the folder -----------------------------------------------------------------------
LINKED = ["set-aside", f"checkpoints/{RUN_KEY}", f"metrics/evals/{PARTITION}", "metrics/train", "logs",
          "tensorboard", f"progress/{RUN_KEY}.json", "history", "sweep.yaml", MARKER, ".driver.lock"]


@pytest.mark.parametrize("relative", LINKED)
def test_mtrl_run_refuses_a_link_inside_the_folder(tmp_path, capsys, relative):
    root, sweep_file = sweep_folder(tmp_path)
    outside = outside_folder(tmp_path)
    target = plant_link(root, relative, outside)
    before, folder_before = snapshot(outside), snapshot(root)
    line = refused(capsys, ["run", sweep_file, "--storage", str(tmp_path / "store"), "--num-cpus", "1"], "run")
    assert f"{root / relative} is a symbolic link (to {target})" in line
    assert snapshot(outside) == before  # the user's folder: same names, same bytes
    assert snapshot(root) == folder_before  # nothing written, moved or set aside
    assert not (root / "tune").exists()


def test_mtrl_trial_resume_refuses_a_linked_checkpoint_folder(tmp_path, capsys):
    results = tmp_path / "r"
    argv = [*TRIAL, "--results", str(results)]
    config = TrialConfig(benchmark="Empty-5x5-v0", arch="single", seed=0, total_steps=400, steps_per_epoch=100,
                         eval_interval_steps=200, checkpoint_interval_steps=200)
    trial_dir = prepare_results(str(results), config, resume=False)
    outside = outside_folder(tmp_path)
    os.symlink(outside, os.path.join(trial_dir, "checkpoints"))
    before = snapshot(outside)
    line = refused(capsys, [*argv, "--resume"], "trial")
    assert f"{trial_dir}/checkpoints is a symbolic link (to {outside})" in line
    assert snapshot(outside) == before
    assert not (results / "metrics").exists()


def test_writers_refuse_a_link_made_after_the_folder_was_claimed(tmp_path):
    """The race the claim's scan cannot see: set-aside/ or logs/ turned into a link mid-run."""
    root, _ = sweep_folder(tmp_path)
    outside = outside_folder(tmp_path)
    plant_link(root, "set-aside", outside)
    plant_link(root, "logs", outside)
    before = snapshot(outside)
    segment = next((root / "metrics" / "evals").rglob("*.parquet"))
    fs, path = resolve_filesystem(str(root))
    with pytest.raises(ResultsDirError, match="set-aside is a symbolic link"):
        move_aside(fs, path, str(segment))
    with pytest.raises(ResultsDirError, match="logs is a symbolic link"):
        append_to_log(str(root), RUN_KEY, "text\n")
    assert segment.exists() and snapshot(outside) == before


def test_the_folder_itself_may_be_a_link_and_object_stores_are_not_scanned(tmp_path):
    root, _ = sweep_folder(tmp_path)
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    refuse_odd_entries(str(alias))
    refuse_links(str(alias), [str(alias / "checkpoints" / RUN_KEY), str(alias / "set-aside" / "x")])
    # No links on an object store: nothing is looked up (no credentials or network needed).
    refuse_odd_entries("s3://no-such-bucket/results/tiny")
    refuse_links("s3://no-such-bucket/results/tiny", ["s3://no-such-bucket/results/tiny/set-aside"])


def test_the_links_wandb_and_tune_make_in_their_own_folders_are_not_refused(tmp_path):
    # W&B offline links wandb/latest-run and its debug logs; the project never writes through them.
    path, _ = sweep_folder(tmp_path)
    root = str(path)
    run = os.path.join(root, "wandb", "offline-run-1")
    os.makedirs(run)
    os.symlink("offline-run-1", os.path.join(root, "wandb", "latest-run"))
    os.makedirs(os.path.join(root, "tune", "run-1"))
    os.symlink(run, os.path.join(root, "tune", "run-1", "elsewhere"))
    refuse_odd_entries(root)
    os.symlink(run, os.path.join(root, "logs-link"))
    with pytest.raises(ResultsDirError, match="logs-link is a symbolic link"):
        refuse_odd_entries(root)


# --- item 6: special files ---------------------------------------------------------------------------------
def test_a_fifo_as_the_sweep_file_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "sweep.yaml")
    for extra in ([], ["--dry-run"]):
        line = refused_in_a_child(["run", "sweep.yaml", *extra], tmp_path, "run")
        assert "sweep.yaml: is not a regular file, so not a sweep file" in line
    assert sorted(os.listdir(tmp_path)) == ["sweep.yaml"]


SPECIAL = {
    "FIFO sweep.yaml": ("sweep.yaml", "fifo", "is a FIFO"),
    "sweep.yaml -> /dev/zero": ("sweep.yaml", "/dev/zero", None),
    "FIFO segment": (f"metrics/evals/{PARTITION}/{RUN_KEY}__0-200.parquet", "fifo", "is a FIFO"),
    "FIFO checkpoint": (f"checkpoints/{RUN_KEY}/step-000000400.pt", "fifo", "is a FIFO"),
}


@pytest.mark.parametrize("case", SPECIAL)
def test_a_special_file_in_the_folder_is_one_line(tmp_path, case):
    relative, kind, words = SPECIAL[case]
    root, sweep_file = sweep_folder(tmp_path)
    path = root / relative
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(kind, path)
    before = snapshot(root)
    commands = [["run", sweep_file, "--storage", "store", "--num-cpus", "1"]]
    if relative == "sweep.yaml":  # --dry-run reads sweep.yaml but no rows or checkpoints
        commands.append(["run", sweep_file, "--storage", "store", "--dry-run"])
    if not relative.startswith("checkpoints"):  # status and analyze read no checkpoints
        commands += [["status", "store/tiny"], ["analyze", "store/tiny", "--quiet", "--no-figures"]]
    for argv in commands:
        line = refused_in_a_child(argv, tmp_path, argv[0])
        assert str(path) in line, (argv, line)
        if argv[-1] == "1" and kind != "fifo":
            assert "is a symbolic link (to /dev/zero)" in line
        else:
            assert (words or "is a character device") in line, (argv, line)
        assert snapshot(root) == before, argv  # nothing rewritten


def test_mtrl_trial_resume_refuses_a_fifo_checkpoint(tmp_path):
    config = TrialConfig(benchmark="Empty-5x5-v0", arch="single", seed=0, total_steps=400, steps_per_epoch=100,
                         eval_interval_steps=200, checkpoint_interval_steps=200)
    trial_dir = prepare_results(str(tmp_path / "r"), config, resume=False)
    os.makedirs(os.path.join(trial_dir, "checkpoints"))
    fifo = os.path.join(trial_dir, "checkpoints", "step-000000200.pt")
    os.mkfifo(fifo)
    line = refused_in_a_child([*TRIAL, "--results", "r", "--resume"], tmp_path, "trial")
    assert f"{fifo} is a FIFO, not a regular file" in line


# --- items 8c and 8e ---------------------------------------------------------------------------------------
def test_every_command_refuses_an_empty_marker(tmp_path, capsys):
    root, sweep_file = sweep_folder(tmp_path)
    (root / MARKER).write_bytes(b"")
    trial_results = tmp_path / "r"
    trial_results.mkdir()
    (trial_results / MARKER).write_bytes(b"")
    for argv, marker in ((["run", sweep_file, "--storage", str(tmp_path / "store"), "--num-cpus", "1"], root),
                         (["run", sweep_file, "--storage", str(tmp_path / "store"), "--dry-run"], root),
                         ([*TRIAL, "--results", str(trial_results)], trial_results),
                         (["status", str(root)], root),
                         (["analyze", str(root), "--quiet"], root)):
        line = refused(capsys, argv, argv[0])
        assert f"{marker / MARKER} is unreadable" in line, line
    assert not (root / "analysis").exists() and not (root / "tune").exists()


def test_analyze_names_a_results_folder_that_is_not_a_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    line = refused(capsys, ["analyze", str(tmp_path / "notes.txt" / "results")], "analyze")
    assert f"lies under the file {tmp_path / 'notes.txt'}, not in a folder" in line
    line = refused(capsys, ["analyze", str(tmp_path / "pipe")], "analyze")
    assert f"results folder {tmp_path / 'pipe'} is a FIFO, not a folder" in line
