"""Resume checks what it trusts: every damaged-folder case the adversarial review found, and
planted pickle payloads that must never run, on one sweep folder and one `mtrl run`.

Trials are built without Ray (``run_trial`` on the sweep folder's own checkpoint layout), then
damaged; one ``mtrl run`` on a local Ray repairs them all: each trial ends with exactly the
rows of an uninterrupted run, each damaged trial gets one warning line, every damaged file is
in ``set-aside/``, and no planted payload ran on ``mtrl run``, ``mtrl status`` or ``mtrl analyze``.
"""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import threading
import uuid

import pytest

from analysis.cli import mtrl
from mtrl_plasticity.errors import ResultsDirError
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.resume_check import trial_checkpoint_dir
from orchestrator.sink import ParquetSink, segment_name
from orchestrator.spec import load_spec
from orchestrator.sweep_folder import SweepFolder, claimed
from orchestrator.trial import run_trial
from testkit.damage import StopAt
from testkit.ray import (
    assert_rows_exactly_once,
    kill_ray_processes,
    mtrl_command,
    read_dataset,
    run_and_log,
    subprocess_env,
    tiny_sweep,
    trials_of,
)

pytestmark = pytest.mark.slow


class Payload:
    """Unpickling this creates ``marker``: proof that something from the folder ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def build(root: str, config, stop: int | None = None) -> None:
    checkpoints = trial_checkpoint_dir(root, config.run_key)
    sink = ParquetSink.for_config(root, config)
    if stop is None:
        run_trial(config, sink, DirectoryCheckpointer(checkpoints))
        return
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, sink, StopAt(checkpoints, stop))


def truncate(path: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_damaged_folder_is_repaired_to_the_uninterrupted_rows(tmp_path):
    sweep = tiny_sweep(tmp_path / "dmg.yaml", "dmg", seeds=6, total_steps=600)
    spec = load_spec(sweep)
    trials = trials_of(sweep)
    storage = tmp_path / "results"
    folder = SweepFolder.for_spec(spec, str(storage))
    root = folder.root
    with claimed(folder, spec):
        pass
    reference = str(tmp_path / "reference")
    for config in trials:
        run_trial(config, ParquetSink.for_config(reference, config), DirectoryCheckpointer(str(tmp_path / "ck" /
                                                                                             config.run_key)))
    k = [t.run_key for t in trials]
    sink = {t.run_key: ParquetSink.for_config(root, t) for t in trials}
    for config, stop in zip(trials, (None, 400, 400, 400, 400, None), strict=True):
        build(root, config, stop)

    # 0: a finished trial's compacted file cut to half
    truncate(sink[k[0]].run_files("evals")[0])
    # 1: a segment deleted (the compaction would have lacked its rows)
    os.remove(os.path.join(sink[k[1]].dirs["train"], segment_name(k[1], 0, 200)))
    # 2: a segment cut short
    truncate(os.path.join(sink[k[2]].dirs["evals"], segment_name(k[2], 200, 400)))
    # 3: the newest checkpoint corrupt; 4: the newest checkpoint deleted
    with open(os.path.join(trial_checkpoint_dir(root, k[3]), "step-000000400.pt"), "wb") as f:
        f.write(os.urandom(5000))
    os.remove(os.path.join(trial_checkpoint_dir(root, k[4]), "step-000000400.pt"))
    # 5: a finished trial next to a junk file named like a segment
    with open(os.path.join(sink[k[5]].dirs["evals"], segment_name(k[5], 0, 200)), "wb") as f:
        f.write(b"not parquet at all")

    # Pickle payloads planted where a careless resume would unpickle them.
    marker = str(tmp_path / "PAYLOAD-RAN")
    payload = pickle.dumps(Payload(marker))
    import torch

    torch.save({"progress": {"step": 200}, "x": Payload(marker)}, os.path.join(trial_checkpoint_dir(root, k[4]),
                                                                               "step-000000200.pt"))
    fake_run = os.path.join(root, "tune", "run-20000101T000000Z-000000")
    os.makedirs(os.path.join(fake_run, k[2]))
    for name in ("tuner.pkl", "experiment_state-2000-01-01_00-00-00.json", "basic-variant-state-2000.json",
                 f"{k[2]}/params.pkl", f"{k[2]}/error.pkl", f"{k[2]}/result.json"):
        with open(os.path.join(fake_run, name), "wb") as f:
            f.write(payload)
    os.makedirs(os.path.join(root, "logs"))
    with open(os.path.join(root, "logs", f"{k[3]}.failures.json"), "wb") as f:
        f.write(payload)

    ray_tmp = f"/tmp/mtrl-dmg-{uuid.uuid4().hex[:8]}"
    os.makedirs(ray_tmp)
    try:
        done = run_and_log(mtrl_command("run", sweep, "--storage", str(storage), "--num-cpus", "2"),
                           tmp_path / "run.log", subprocess_env(RAY_TMPDIR=ray_tmp), timeout=600)
    finally:
        kill_ray_processes(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = (tmp_path / "run.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "all 6 trials done" in log
    lines = {key: [line for line in log.splitlines() if f"{key}: " in line and "moved to" in line]
             for key in k}
    assert {key: len(found) for key, found in lines.items()} == {k[0]: 1, k[1]: 1, k[2]: 1, k[3]: 1, k[4]: 1, k[5]: 1}
    assert "starts over" in lines[k[0]][0] and "starts over" in lines[k[1]][0]
    assert "continues from its checkpoint at step 200" in lines[k[2]][0]
    assert "continues from its checkpoint at step 200" in lines[k[3]][0]
    assert "is complete without it" in lines[k[5]][0]
    assert "Traceback" not in log
    # Nothing deleted: the damaged files are in set-aside/.
    aside = [os.path.basename(p) for p in glob.glob(os.path.join(root, "set-aside", "**", "*"), recursive=True)
             if os.path.isfile(p)]
    assert any(name.startswith(segment_name(k[5], 0, 200)) for name in aside)
    assert any(name.startswith(segment_name(k[2], 200, 400)) for name in aside)
    assert any(name.startswith("step-000000400.pt") for name in aside)

    assert_rows_exactly_once(root, trials)
    for dataset in ("evals", "train"):
        assert read_dataset(root, dataset).drop(columns=["sweep"]).equals(
            read_dataset(reference, dataset).drop(columns=["sweep"]))

    assert mtrl(["status", root]) == 0
    assert mtrl(["analyze", root, "--out", str(tmp_path / "report"), "--reps", "50", "--quiet"]) == 0
    assert not os.path.exists(marker)


def test_two_drivers_starting_at_once_on_a_new_folder_write_one_spec(tmp_path):
    from orchestrator.spec import validate_spec
    from testkit.spec import tiny_spec_data

    specs = [validate_spec(tiny_spec_data("race", seeds=n), "s.yaml") for n in (2, 3)]
    barrier = threading.Barrier(2)
    outcome: dict[int, object] = {}

    def drive(i: int) -> None:
        folder = SweepFolder.for_spec(specs[i], str(tmp_path))
        barrier.wait()
        try:
            with claimed(folder, specs[i]):
                outcome[i] = "claimed"
                threading.Event().wait(3.0)  # longer than a second driver waits for the lock
        except ResultsDirError as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=drive, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "claimed"]
    assert len(winners) == 1, outcome
    loser = outcome[1 - winners[0]]
    assert "being run by another" in str(loser) or "different spec" in str(loser)
    stored = SweepFolder.for_spec(specs[0], str(tmp_path)).stored_spec()
    assert stored.resolved() == specs[winners[0]].resolved()
