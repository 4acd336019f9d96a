"""docker/slurm/mtrl-sweep.sbatch on a real single-node SLURM: a sweep on a Ray head and a Ray
worker (two tasks of one node) lands every row; stopped by the time-limit signal, resubmitted,
then requeued mid-run, it completes with the same rows.

SLURM is installed when missing (Debian's slurm-wlm, as root; `.ci/run` does the same) and
started from a temporary folder. A machine where it cannot start fails these tests with the
reason: they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import ExitStack

import pandas as pd
import pytest

from testkit.ray import (
    REPO,
    assert_rows_exactly_once,
    checkpointed_run_keys,
    compacted_run_keys,
    free_port,
    kill_ray_processes,
    mtrl_command,
    tiny_sweep,
    trials_of,
    wait_until,
)
from testkit.slurm import SlurmUnavailable, missing_commands, single_node_slurm, wait_for_job

pytestmark = pytest.mark.slow

SBATCH = os.path.join(REPO, "docker", "slurm", "mtrl-sweep.sbatch")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}
# Two tasks of two CPUs on the one node: task 0 is the Ray head, task 1 a Ray worker.
JOB_SHAPE = ["--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=2", "--time=15"]


def install_slurm_if_missing() -> None:
    if not missing_commands() or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return  # single_node_slurm names what is missing
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "slurm-wlm"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM; yields the environment for its commands and the test's jobs."""
    install_slurm_if_missing()
    root = tmp_path_factory.mktemp("slurm")
    home = root / "home"  # Ray reads ~/.ray (a stray auth_token breaks ray.init)
    home.mkdir()
    with ExitStack() as stack:
        try:
            env = stack.enter_context(single_node_slurm(str(root / "cluster")))
        except SlurmUnavailable as exc:
            pytest.fail(f"SLURM could not start on this machine: {exc}", pytrace=False)
        env = dict(env, HOME=str(home), RAY_AUTH_MODE="disabled")
        env.pop("RAY_ADDRESS", None)
        yield env


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    # Long enough (8 checkpoints per trial) for the requeue to land while trials run.
    path = tmp_path_factory.mktemp("sweep") / "slurmsweep.yaml"
    return tiny_sweep(path, "slurmsweep", seeds=2, total_steps=1600, checkpoint_interval_steps=200,
                      defaults={"total_steps": 1600, "steps_per_epoch": 100, "eval_interval_steps": 400,
                                "eval_episodes": 2, "measure_plasticity": False})


class Job:
    """One submission of the batch script; its Ray processes are stopped by their GCS port."""

    def __init__(self, env: dict, sweep: str, storage: str, log: str):
        self.port = free_port()
        self.env = dict(env, MTRL_RAY_PORT=str(self.port))
        self.log = log
        submitted = subprocess.run(["sbatch", "--parsable", *JOB_SHAPE, f"--output={log}", SBATCH, sweep,
                                    "--storage", storage], env=self.env, capture_output=True, text=True, cwd=REPO)
        assert submitted.returncode == 0, submitted.stderr
        self.id = submitted.stdout.strip().split(";")[0]

    def wait(self, states: set[str], timeout: float) -> dict[str, str]:
        try:
            return wait_for_job(self.id, self.env, states, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.output()}") from None

    def output(self) -> str:
        return open(self.log).read() if os.path.exists(self.log) else "(no job output)"

    def stop(self) -> None:
        subprocess.run(["scancel", self.id], env=self.env, capture_output=True)
        kill_ray_processes(f":{self.port}")


@pytest.fixture(scope="module")
def uninterrupted(slurm, sweep_file, tmp_path_factory):
    """The sweep run once through the batch script: (sweep folder, job fields at the end, job output)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    job = Job(slurm, sweep_file, str(tmp / "results"), str(tmp / "job.out"))
    try:
        fields = job.wait(FINAL_STATES, timeout=420)
    finally:
        job.stop()
    return str(tmp / "results" / "slurmsweep"), fields, job.output()


def test_batch_script_runs_a_sweep_on_a_head_and_a_worker(slurm, sweep_file, uninterrupted):
    root, fields, output = uninterrupted
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), output[-4000:]
    assert "mtrl-sweep: Ray cluster of 2 node(s), 4 CPUs, 0 GPUs" in output
    assert "mtrl-sweep: mtrl run exited with 0" in output and "mtrl-sweep: Ray stopped" in output
    assert_rows_exactly_once(root, trials_of(sweep_file))
    status = subprocess.run(mtrl_command("status", root), env=slurm, capture_output=True, text=True, cwd=REPO)
    assert status.returncode == 0, status.stderr
    assert "2/2 trials done" in status.stdout.splitlines()[0], status.stdout


def checkpoints(root: str) -> set[tuple[str, str]]:
    """(trial, checkpoint file) pairs in the sweep folder (``checkpoints/<run_key>/step-*.pt``)."""
    folder = os.path.join(root, "checkpoints")
    return {(key, name) for key in checkpointed_run_keys(root) for name in os.listdir(os.path.join(folder, key))
            if name.startswith("step-") and name.endswith(".pt")}


def test_time_limit_signal_and_requeue_resume_to_the_uninterrupted_rows(slurm, sweep_file, uninterrupted,
                                                                        tmp_path, rows):
    """SIGTERM to the batch shell (what --signal=B:TERM@N sends before the time limit) stops the
    sweep cleanly; the resubmitted job resumes; `scontrol requeue` mid-run stops it again (every
    process of the job signalled at once) and the requeued job completes the sweep."""
    storage = tmp_path / "results"
    root = str(storage / "slurmsweep")
    trials = trials_of(sweep_file)
    everything = {t.run_key for t in trials}
    first = Job(slurm, sweep_file, str(storage), str(tmp_path / "first.out"))
    try:
        first.wait({"RUNNING"}, timeout=120)
        wait_until(lambda: checkpoints(root), timeout=300, interval=0.2, what="a first checkpoint")
        subprocess.run(["scancel", "--batch", "--signal=TERM", first.id], env=first.env, check=True)
        assert everything - compacted_run_keys(root), "every trial finished before the signal: nothing tested"
        fields = first.wait(FINAL_STATES, timeout=180)
    finally:
        first.stop()
    output = first.output()
    assert "mtrl-sweep: mtrl run exited with 130" in output and "mtrl-sweep: Ray stopped" in output, output[-4000:]
    assert fields["ExitCode"] == "130:0", fields

    second = Job(slurm, sweep_file, str(storage), str(tmp_path / "second.out"))
    try:
        second.wait({"RUNNING"}, timeout=120)
        before = checkpoints(root)
        wait_until(lambda: checkpoints(root) - before, timeout=300, interval=0.2,
                   what="a checkpoint of the resumed run")
        subprocess.run(["scontrol", "requeue", second.id], env=second.env, check=True, capture_output=True)
        assert everything - compacted_run_keys(root), "every trial finished before the requeue: nothing tested"
        assert second.wait({"PENDING"}, timeout=120)["Restarts"] == "1"
        # SLURM holds a requeued job for about two minutes (Reason=BeginTime); start it now.
        subprocess.run(["scontrol", "update", f"JobId={second.id}", "StartTime=now"], env=second.env, check=True)
        fields = second.wait(FINAL_STATES, timeout=420)
    finally:
        second.stop()
    output = second.output()
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == ("COMPLETED", "0:0", "1"), output[-4000:]
    assert output.count("resuming 2 trials") == 2 and "(restart 1)" in output, output[-4000:]
    assert_rows_exactly_once(root, trials)
    for dataset in ("evals", "train"):
        pd.testing.assert_frame_equal(rows(root, dataset), rows(uninterrupted[0], dataset))


def test_bad_arguments_end_the_job_with_exit_2_before_ray_starts(slurm, tmp_path):
    job = Job(slurm, str(tmp_path / "missing.yaml"), str(tmp_path / "results"), str(tmp_path / "job.out"))
    try:
        fields = job.wait(FINAL_STATES, timeout=120)
    finally:
        job.stop()
    output = job.output()
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "2:0"), output
    assert "mtrl run: error:" in output and "missing.yaml" in output and "mtrl-sweep: nothing started" in output
    assert "ray start" not in output and "Ray cluster" not in output


def test_missing_slurm_is_named(monkeypatch, tmp_path):
    """Where SLURM is absent the fixture fails with what is missing, never a silent skip."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmUnavailable, match="SLURM commands not found: slurmctld, slurmd, sbatch"):
        with single_node_slurm(str(tmp_path / "cluster")):
            pass
