"""A trial end to end: determinism, SIGKILL and resume, and refused bad input."""

import os
import signal
import subprocess
import sys
import time

import pytest

from analysis.cli import mtrl
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.trial import run_trial

TINY = dict(benchmark="MT3", arch="moore", total_steps=600, steps_per_epoch=300, eval_interval_steps=300,
            checkpoint_interval_steps=300, eval_episodes=2, plasticity_buffer_size=2000, metric_batch_size=64)


def _run(config: TrialConfig, results: str, checkpointer=None) -> None:
    checkpointer = checkpointer or DirectoryCheckpointer(os.path.join(results, "ck"))
    run_trial(config, ParquetSink.for_config(results, config), checkpointer)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """One uninterrupted tiny MOORE trial on MT3, shared by the determinism tests."""
    results = str(tmp_path_factory.mktemp("straight"))
    config = TrialConfig(seed=3, **TINY)
    _run(config, results)
    return config, results


def test_same_seed_gives_identical_rows(tmp_path, rows, straight_run):
    config, reference = straight_run
    _run(config, str(tmp_path))
    for dataset in ("evals", "train"):
        a, b = rows(reference, dataset), rows(str(tmp_path), dataset)
        assert len(a) == (3 * 3 if dataset == "evals" else 2)
        assert a.equals(b)


def _die_after_first_checkpoint_then_resume(config: TrialConfig, results: str) -> None:
    class Stop(Exception):
        pass

    class StopAfterFirst(DirectoryCheckpointer):
        def save(self, state, metrics):
            super().save(state, metrics)
            raise Stop

    with pytest.raises(Stop):  # the process "dies" right after its first checkpoint
        _run(config, results, StopAfterFirst(os.path.join(results, "ck")))
    _run(config, results)  # fresh objects, state only from the checkpoint


def test_resume_after_a_checkpoint_gives_the_same_rows(tmp_path, rows, straight_run):
    config, reference = straight_run
    results = str(tmp_path)
    _die_after_first_checkpoint_then_resume(config, results)
    for dataset in ("evals", "train"):
        assert rows(results, dataset).equals(rows(reference, dataset))


def test_with_fresh_episodes_each_epoch_a_resume_gives_the_same_rows(tmp_path, rows):
    config = TrialConfig(**{**TINY, "arch": "mtppo"}, seed=3, reset_episodes_each_epoch=True, measure_plasticity=False)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    _run(config, straight)
    _die_after_first_checkpoint_then_resume(config, resumed)
    for dataset in ("evals", "train"):
        a = rows(straight, dataset)
        assert len(a) == (3 * 3 if dataset == "evals" else 2)
        assert rows(resumed, dataset).equals(a)


def test_fresh_episodes_each_epoch_drop_running_episodes_as_bootstrapped_truncations():
    from envs.multitask import TaskEnv
    from orchestrator.trial import _Trial

    fields = dict(benchmark="MT3", arch="mtppo", seed=5, total_steps=600, steps_per_epoch=300,
                  eval_interval_steps=300, checkpoint_interval_steps=300)
    carried = _Trial(TrialConfig(**fields))
    fresh = _Trial(TrialConfig(reset_episodes_each_epoch=True, **fields))
    first_carried, _ = carried.collect()
    first, _ = fresh.collect()
    # MOORE's reference: the epoch's data are the same, except that every episode still running
    # at its end is cut there as a truncation: not absorbing, so GAE bootstraps from V(s').
    running = ~(first_carried.terminated[-1] | first_carried.truncated[-1])
    assert running.all()  # 300 steps < every MT3 task's max_steps: no episode ends exactly there
    for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
        assert (getattr(first, name) == getattr(first_carried, name)).all(), name
    assert (first.truncated[:-1] == first_carried.truncated[:-1]).all()
    assert first.truncated[-1].all() and not first.terminated[-1].any()
    # Carried over: the next epoch continues mid-episode; fresh: every episode starts at step 0.
    assert all(len(env.actions) > 0 for env in carried.env.envs)
    assert all(len(env.actions) == 0 for env in fresh.env.envs)
    seeds = [env.episode_seed for env in fresh.env.envs]
    second, _ = fresh.collect()
    for t, env in enumerate(fresh.env.envs):  # epoch 2 began at reset(seed) of a new episode
        assert (second.obs[0, t] == TaskEnv(env.task).reset(seeds[t])).all()
    assert all(len(env.actions) == 0 for env in fresh.env.envs)
    assert (second.terminated[-1] | second.truncated[-1]).all()


def test_cpu_seconds_are_reported_and_add_up_over_a_resume(tmp_path, straight_run):
    # perf/cpu_seconds (the trial thread's CPU time) goes to the checkpointer's reports, not to
    # Parquet; like the wall clock it continues from the checkpoint after a restart.
    config, _ = straight_run
    results = str(tmp_path)
    saved: list[dict] = []

    class Stop(Exception):
        pass

    class Recording(DirectoryCheckpointer):
        def save(self, state, metrics):
            super().save(state, metrics)
            saved.append(metrics)

    class StopAfterFirst(Recording):
        def save(self, state, metrics):
            super().save(state, metrics)
            raise Stop

    with pytest.raises(Stop):
        _run(config, results, StopAfterFirst(os.path.join(results, "ck")))
    _run(config, results, Recording(os.path.join(results, "ck")))
    first, last = saved
    assert (first["step"], last["step"]) == (300, 600)
    assert 0 < first["perf/cpu_seconds"] < last["perf/cpu_seconds"]
    for metrics in saved:
        assert metrics["perf/cpu_seconds"] <= metrics["perf/wall_seconds"] + 0.05  # one thread


def _mtrl_trial(results, *extra):
    return [sys.executable, "-m", "analysis.cli", "trial", "--benchmark", "MT3", "--arch", "mtppo",
            "--seed", "7", "--results", results, "--total-steps", "2000", "--steps-per-epoch", "500",
            "--eval-interval", "500", "--eval-episodes", "2", "--checkpoint-interval", "1000", "--quiet", *extra]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, rows):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    reference = subprocess.Popen(_mtrl_trial(straight))
    victim = subprocess.Popen(_mtrl_trial(killed))
    checkpoints = os.path.join(killed, "trials", "MT3-mtppo-dense-s07", "checkpoints")
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(checkpoints, "step-000001000.pt")):
        assert victim.poll() is None and time.time() < deadline, "the trial ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)  # somewhere inside the next checkpoint interval
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not os.path.exists(os.path.join(checkpoints, "step-000002000.pt"))
    assert subprocess.run(_mtrl_trial(killed, "--resume")).returncode == 0
    assert reference.wait() == 0
    for dataset in ("evals", "train"):
        a, b = rows(straight, dataset), rows(killed, dataset)
        assert len(a) == (5 * 3 if dataset == "evals" else 4)
        assert not a.duplicated(["run_key", "step"] + (["task"] if dataset == "evals" else [])).any()
        assert a.equals(b)


@pytest.mark.parametrize("argv,message", [
    (["--benchmark", "MT4"], "unknown benchmark 'MT4'"),
    (["--arch", "transformer"], "unknown architecture 'transformer'"),
    (["--treatment", "gmp42"], "unknown treatment 'gmp42'"),
    (["--total-steps", "0"], "total_steps must be positive"),
    (["--eval-episodes", "-1"], "eval_episodes must be positive"),
    (["--total-steps", "4000", "--eval-interval", "3000"], "eval_interval_steps=3000 must be a multiple"),
    (["--set", "gamma"], "--set expects key=value"),
    (["--set", "learning_rate=0.1"], "learning_rate: Extra inputs are not permitted"),
    (["--treatment-param", "tau=0.1"], "treatment 'dense' has no parameter(s) ['tau']"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, argv, message):
    results = tmp_path / "r"
    base = {"--benchmark": "MT3", "--arch": "mtppo"}
    args = ["trial", "--results", str(results)]
    for flag, value in base.items():
        if flag not in argv:
            args += [flag, value]
    assert mtrl(args + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not results.exists()  # nothing was created


def test_results_folder_of_another_trial_or_foreign_data_is_refused(tmp_path, capsys):
    results = tmp_path / "r"
    args = ["trial", "--benchmark", "Empty-5x5-v0", "--arch", "single", "--results", str(results),
            "--total-steps", "200", "--steps-per-epoch", "100", "--eval-episodes", "1", "--quiet"]
    assert mtrl(args) == 0
    before = sorted(p.name for p in (results / "metrics" / "evals").rglob("*.parquet"))

    assert mtrl(args[:-1] + ["--seed", "1"]) == 2
    assert "holds another trial's data (Empty-5x5-v0-single-dense-s00)" in capsys.readouterr().err
    assert mtrl(args + ["--eval-episodes", "2"]) == 2
    assert "with a different configuration (eval_episodes: 1 -> 2)" in capsys.readouterr().err
    assert mtrl(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert mtrl(args + ["--resume"]) == 0  # finished: nothing to do, nothing rewritten
    assert sorted(p.name for p in (results / "metrics" / "evals").rglob("*.parquet")) == before

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    args[args.index(str(results))] = str(foreign)
    assert mtrl(args) == 2
    assert "not a results folder of this tool" in capsys.readouterr().err
    assert sorted(os.listdir(foreign)) == ["notes.txt"]


def test_evaluation_with_frozen_weights_gives_the_episodes_of_the_unfrozen_actor(monkeypatch):
    import contextlib

    import orchestrator.trial as trial_module

    config = TrialConfig(benchmark="MT3", arch="mtppo", seed=3, total_steps=500, steps_per_epoch=500,
                         eval_interval_steps=500, checkpoint_interval_steps=500, eval_episodes=20)
    frozen = trial_module._Trial(config).evaluate()
    monkeypatch.setattr(trial_module, "frozen_weights", lambda network: contextlib.nullcontext(network))
    unfrozen = trial_module._Trial(config).evaluate()
    assert frozen == unfrozen
    assert sum(row["episodes"] for row in frozen) == 60


def test_the_first_optimizer_of_a_process_imports_nothing_inside_a_trial():
    # torch.optim imports torch._dynamo on first use (~2 CPU-s); the trial module imports it up
    # front so a trial's clock holds only the trial.
    code = ("import sys\nimport orchestrator.trial\nimport torch\n"
            "before = set(sys.modules)\n"
            "torch.optim.Adam(torch.nn.Linear(2, 2).parameters())\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('torch._dynamo')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
