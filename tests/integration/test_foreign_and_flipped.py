"""Issue 29 on a real sweep folder and one `mtrl run` on a local Ray: another trial's checkpoint
copied into a trial's folder, a bit flipped in a finished trial's compacted evals file, and stale
temporary files. Each damaged file is set aside with one line, its trial continues from its own
last good checkpoint or starts over, the temporary files are gone, and every row equals an
uninterrupted run's."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.resume_check import trial_checkpoint_dir
from orchestrator.sink import ParquetSink, segment_name
from orchestrator.spec import load_spec
from orchestrator.sweep_folder import SweepFolder, claimed
from orchestrator.trial import run_trial
from testkit.damage import StopAt, flip_bit_in_column
from testkit.ray import (
    assert_rows_exactly_once,
    mtrl_command,
    read_dataset,
    run_and_log,
    subprocess_env,
    tiny_sweep,
    trials_of,
)

pytestmark = pytest.mark.slow


def test_foreign_checkpoint_flipped_bit_and_stale_temporaries_are_repaired(tmp_path, ray_tmp):
    sweep = tiny_sweep(tmp_path / "t.yaml", "t29", seeds=4, total_steps=600)
    spec = load_spec(sweep)
    trials = trials_of(sweep)
    folder = SweepFolder.for_spec(spec, str(tmp_path / "results"))
    root = folder.root
    with claimed(folder, spec):
        pass
    reference = str(tmp_path / "reference")
    for config in trials:
        run_trial(config, ParquetSink.for_config(reference, config),
                  DirectoryCheckpointer(str(tmp_path / "ck" / config.run_key)))
    k = [t.run_key for t in trials]
    sink = {t.run_key: ParquetSink.for_config(root, t) for t in trials}
    for config in trials:
        checkpoints = trial_checkpoint_dir(root, config.run_key)
        if config.run_key == k[0]:
            with pytest.raises(KeyboardInterrupt):
                run_trial(config, sink[k[0]], StopAt(checkpoints, 400))
        else:
            run_trial(config, sink[config.run_key], DirectoryCheckpointer(checkpoints))

    # 0: stopped at its checkpoint 400, which another trial's step-400 then replaced (zip CRCs intact)
    shutil.copy(os.path.join(trial_checkpoint_dir(root, k[3]), "step-000000400.pt"), trial_checkpoint_dir(root, k[0]))
    # 1: finished; one bit flipped in a value column of its compacted evals file
    [flipped] = sink[k[1]].run_files("evals")
    flip_bit_in_column(flipped, "episode_length_mean")
    # 2: finished; partial files of a write a kill cut short
    stale = [os.path.join(trial_checkpoint_dir(root, k[2]), ".step-000000800.pt.tmp"),
             os.path.join(sink[k[2]].dirs["evals"], "." + segment_name(k[2], 600, 800) + ".tmp")]
    for path in stale:
        with open(path, "wb") as f:
            f.write(b"x" * 1000)

    done = run_and_log(mtrl_command("run", sweep, "--storage", str(tmp_path / "results"), "--num-cpus", "2"),
                       tmp_path / "run.log", subprocess_env(RAY_TMPDIR=ray_tmp), timeout=600)
    log = (tmp_path / "run.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "different configuration" not in log.replace(k[0], "")
    lines = {key: [line for line in log.splitlines() if line.startswith(f"{key}: ") and "moved to" in line]
             for key in k}
    assert {key: len(found) for key, found in lines.items()} == {k[0]: 1, k[1]: 1, k[2]: 0, k[3]: 0}, log[-3000:]
    assert f"belongs to trial {k[3]}, not {k[0]}" in lines[k[0]][0] and "previous one" in lines[k[0]][0]
    assert "a page fails its checksum" in lines[k[1]][0] and "starts over" in lines[k[1]][0]
    aside = [os.path.basename(p) for p in glob.glob(os.path.join(root, "set-aside", "**", "*"), recursive=True)
             if os.path.isfile(p)]
    # k0's foreign checkpoint; k1's damaged file, its checkpoints past the missing rows, and its
    # intact compacted train file (a trial that starts over rewrites segments, not a compacted file)
    assert sorted(name.rsplit(".", 1)[0] for name in aside) == sorted(
        ["step-000000400.pt", f"{k[1]}.parquet", "step-000000400.pt", "step-000000600.pt", f"{k[1]}.parquet"]), aside
    assert [p for p in stale if os.path.exists(p)] == []

    assert_rows_exactly_once(root, trials)
    for dataset in ("evals", "train"):
        assert read_dataset(root, dataset).drop(columns=["sweep"]).equals(
            read_dataset(reference, dataset).drop(columns=["sweep"]))
