"""Orchestration at the paper's scale: the real `mtrl run` code path on the full grid, trials stood in.

    python bench/bench_scale.py                  # sweeps/paper.yaml: 2,100 trials, --num-cpus 64
    python bench/bench_scale.py --small          # 1 seed (70 trials), --num-cpus 8: CI-sized
    python bench/bench_scale.py --seeds 10 --num-cpus 32

Everything of `mtrl run` is real (spec, the sweep folder and its driver lock, the resume check,
a fresh Tuner on a local Ray that advertises ``--num-cpus`` logical CPUs, Tune's scheduling,
retries and logs, the Parquet sink, the checkpoint files, `mtrl status`, `mtrl analyze`)
except the trial's training: each trial runs ``STAND-IN TRIAL`` (:func:`standin_training`), which
writes the rows of a finished trial of the real schema (every evaluation point x task, every
epoch; synthetic values) through the real sink, and one checkpoint (a small zip, not a model),
in well under a second. The stand-in exists only to measure the orchestration: its numbers
mean nothing, and this script's output says so on every line that could be mistaken for results.

Printed, measured in one run:

* driver CPU seconds and peak RSS, total and per trial (the driver process's own, from /proc);
* time from `mtrl run` to the first trial running (its Tune folder appearing);
* Tune's experiment-state file: its size and how often Tune rewrote it (Tune exposes no public
  timing of a save; the bench reports what it can see from outside), and `mtrl status` on the
  full folder (in-process read and the command);
* the driver killed with about half the trials done (SIGKILL), then the same command: time
  until the first remaining trial starts, and a check that no finished trial ran again (its
  files untouched, no Tune folder for it in the rerun);
* `mtrl analyze` on the full folder.

Targets: driver CPU < 0.1 s per trial; driver peak RSS < 2 GB; `mtrl status` < 5 s; the rerun
starts the remaining trials within 60 s; analysis of the full grid < 2 minutes.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
from orchestrator.trial_hook import TRIAL_HOOK_VARIABLE  # noqa: E402

MTRL = [sys.executable, "-m", "analysis.cli"]
"""The whole `mtrl` command, as its console script runs it."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STANDIN = "STAND-IN TRIAL (orchestration only; its rows are synthetic and never results)"


# --- the stand-in trial (runs on Ray's workers) ---------------------------------------------
def standin_training(config, checkpointer, sink) -> None:
    """STAND-IN for ``run_trial``: a finished trial's rows of the real schema, then one checkpoint."""
    from mtrl_plasticity.benchmarks import get_benchmark
    from orchestrator import schema

    tasks = get_benchmark(config.benchmark).tasks
    identity = {"schema_version": schema.SCHEMA_VERSION, "sweep": config.sweep, "run_key": config.run_key,
                "seed": config.seed}
    evals = [{**identity, "step": step, "epoch": step // config.steps_per_epoch, "task": task, "task_index": i,
              "episodes": config.eval_episodes, "return_mean": 0.0, "return_std": 0.0,
              "normalised_return_mean": 0.0, "success_rate": 0.0, "episode_length_mean": 0.0}
             for step in range(0, config.total_steps + 1, config.eval_interval_steps) for i, task in enumerate(tasks)]
    train = [{**identity, "step": step, "epoch": step // config.steps_per_epoch,
              **{c: 0.0 for c in schema.TRAIN_METRIC_COLUMNS}}
             for step in range(config.steps_per_epoch, config.total_steps + 1, config.steps_per_epoch)]
    sink.write_segment(evals, train, 0, config.total_steps)
    sink.compact()
    checkpointer.save({"progress": {"step": config.total_steps}, "standin": True},
                      {"step": config.total_steps, "run_key": config.run_key})


def standin_encode(state: dict) -> bytes:
    """A STAND-IN checkpoint: a small zip (the driver's check reads zips' CRCs), no model inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("standin.txt", repr(state))
    return buffer.getvalue()


def standin_trial(config, sweep_root: str, checkpointer, sink, train) -> None:
    """The trial hook (``orchestrator.trial_hook``): the STAND-IN trains in place of ``run_trial``;
    everything around it (the resume checks, the compaction, the reports) is the real trainable's."""
    checkpointer.encode = standin_encode
    standin_training(config, checkpointer, sink)


# --- measuring from outside ---------------------------------------------------------------------
def proc_stats(pid: int) -> tuple[float, float] | None:
    """``(CPU seconds, peak RSS in MB)`` of one process (its own threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, hwm / 1024


def trial_dirs(root: str, run_folder: str | None = None) -> set[str]:
    pattern = os.path.join(root, "tune", run_folder or "run-*", "*")
    return {os.path.basename(p) for p in glob.glob(pattern) if os.path.isdir(p)}


def compacted(root: str) -> set[str]:
    return {os.path.basename(p).removesuffix(".parquet")
            for p in glob.glob(os.path.join(root, "metrics", "train", "*", "*", "*", "*.parquet"))
            if "__" not in os.path.basename(p)}


class Driver:
    """One ``mtrl run`` (stand-in trials) in a child process, sampled every 0.2 s."""

    def __init__(self, sweep: str, storage: str, num_cpus: int, env: dict, log: str, extra: list[str] = ()) -> None:
        self.started = time.perf_counter()
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [*MTRL, "run", sweep, "--storage", storage, "--num-cpus", str(num_cpus), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.cpu, self.rss = 0.0, 0.0

    def sample(self) -> None:
        stats = proc_stats(self.process.pid)
        if stats is not None:
            self.cpu, self.rss = max(self.cpu, stats[0]), max(self.rss, stats[1])

    def wait_for(self, predicate, timeout: float) -> float | None:
        """Seconds from the start until ``predicate()``; None if the driver ended first."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.sample()
            if predicate():
                return time.perf_counter() - self.started
            if self.process.poll() is not None:
                return None
            time.sleep(0.2)
        raise TimeoutError("the driver took too long")

    def kill(self) -> None:
        self.sample()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def finish(self, timeout: float) -> int:
        self.wait_for(lambda: False, timeout) if self.process.poll() is None else None
        code = self.process.wait()
        self.log.close()
        return code


def kill_marked(mark: str) -> None:
    """Stop the processes whose command line holds ``mark`` (this bench's private Ray)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if mark.encode() in f.read():
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def timed(command: list[str], env: dict) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode, (done.stdout + done.stderr)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1 seed (70 trials) on 8 logical CPUs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the paper's 30)")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray (default 64)")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folder")
    args = parser.parse_args()

    seeds = args.seeds or (1 if args.small else None)
    num_cpus = args.num_cpus or (8 if args.small else 64)
    work = tempfile.mkdtemp(prefix="mtrl-bench-scale-")
    ray_tmp = os.path.join(work, "ray")
    os.makedirs(ray_tmp)
    home = os.path.join(work, "home")
    os.makedirs(home)
    # The real `mtrl run`, its trials' training swapped for the stand-in through the trial hook.
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "HOME": home, "PYTHONPATH": os.pathsep.join([BENCH, REPO]),
           TRIAL_HOOK_VARIABLE: "bench_scale:standin_trial"}
    env.pop("RAY_ADDRESS", None)
    sweep = os.path.join(REPO, "sweeps", "paper.yaml")
    extra = ["--set", f"seeds={seeds}", "--name", f"paper-scale-{seeds}"] if seeds else ["--name", "paper-scale"]
    storage = os.path.join(work, "results")
    sys.path.insert(0, REPO)
    from orchestrator.spec import expand, load_spec, parse_assignments

    spec = load_spec(sweep, {**parse_assignments(extra[1:2] if seeds else []), "name": extra[-1]})
    n_trials = len(expand(spec))
    root = os.path.join(storage, spec.name)
    print(f"bench_scale: {n_trials:,} trials of sweeps/paper.yaml{f' ({seeds} seeds)' if seeds else ''} on a local "
          f"Ray with {num_cpus} logical CPUs; every trial is a {STANDIN}", flush=True)
    print(f"  (figures from a shared {os.cpu_count()}-core machine; folder {work})", flush=True)
    try:
        # 1. the sweep, killed with about half the trials done
        first = Driver(sweep, storage, num_cpus, env, os.path.join(work, "first.log"), extra)
        to_first_trial = first.wait_for(lambda: bool(trial_dirs(root)), timeout=1800)
        half = first.wait_for(lambda: len(compacted(root)) >= n_trials // 2, timeout=7200)
        if to_first_trial is None or half is None:
            raise RuntimeError(f"the driver ended early: {open(os.path.join(work, 'first.log')).read()[-2000:]}")
        first.kill()
        kill_marked(ray_tmp)
        finished = compacted(root)
        finished_files = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(root, "metrics", "*", "*", "*", "*",
                                                                                    "*.parquet"))
                          if os.path.basename(p).removesuffix(".parquet") in finished}
        print(f"  first run: first trial running after {to_first_trial:.1f} s; killed at {half:.0f} s with "
              f"{len(finished):,}/{n_trials:,} trials done", flush=True)

        # 2. the same command again: the sweep folder decides what is left
        runs_before = set(glob.glob(os.path.join(root, "tune", "run-*")))
        second = Driver(sweep, storage, num_cpus, env, os.path.join(work, "second.log"), extra)

        def new_trial_running() -> bool:
            runs = set(glob.glob(os.path.join(root, "tune", "run-*"))) - runs_before
            return any(trial_dirs(root, os.path.basename(r)) for r in runs)

        restart = second.wait_for(new_trial_running, timeout=1800)
        code = second.finish(timeout=7200)
        total_s = time.perf_counter() - second.started
        [rerun_folder] = set(glob.glob(os.path.join(root, "tune", "run-*"))) - runs_before
        rerun_trials = trial_dirs(root, os.path.basename(rerun_folder))
        again = sorted(rerun_trials & finished)
        touched = [p for p, mtime in finished_files.items() if not os.path.exists(p) or os.stat(p).st_mtime_ns != mtime]
        done = compacted(root)
        print(f"  rerun: first remaining trial running after {restart:.1f} s; exit {code}; {len(done):,}/{n_trials:,} "
              f"done in {total_s:.0f} s; finished trials run again: {len(again)}, their files touched: {len(touched)}",
              flush=True)

        # 3. Tune's experiment state, mtrl status, mtrl analyze on the full folder
        states = sorted(glob.glob(os.path.join(rerun_folder, "experiment_state-*.json")))
        state_mb = os.path.getsize(states[-1]) / 2**20 if states else 0.0
        from orchestrator.status import read_status

        started = time.perf_counter()
        status = read_status(root)
        status_in_process = time.perf_counter() - started
        status_s, status_code, status_out = timed([*MTRL, "status", root], env)
        analyze_s, analyze_code, analyze_out = timed([*MTRL, "analyze", root, "--out", os.path.join(work, "report"),
                                                      "--quiet"], env)
        n_done = status.counts()["done"]

        driver_cpu = first.cpu + second.cpu
        per_trial_cpu = driver_cpu / n_trials
        peak_rss = max(first.rss, second.rss)
        print(f"\nbench_scale results ({n_trials:,} trials; {STANDIN}):")
        print(f"  driver CPU              {driver_cpu:8.1f} s  = {per_trial_cpu:.3f} s per trial   "
              f"(target < 0.1)  {verdict(per_trial_cpu < 0.1)}")
        print(f"  driver peak RSS         {peak_rss:8.0f} MB                         (target < 2048) "
              f"{verdict(peak_rss < 2048)}")
        print(f"  first trial running     {to_first_trial:8.1f} s after `mtrl run`")
        print(f"  Tune experiment state   {state_mb:8.2f} MB (newest file; Tune has no public save timing)")
        print(f"  mtrl status             {status_s:8.1f} s (command; read_status {status_in_process:.1f} s), "
              f"{n_done:,} done, exit {status_code}  (target < 5)  {verdict(status_s < 5 and n_done == n_trials)}")
        print(f"  rerun after a kill      {restart:8.1f} s to the first remaining trial  (target < 60)  "
              f"{verdict(restart < 60 and not again and not touched)}; finished trials run again: {len(again)}")
        print(f"  mtrl analyze            {analyze_s:8.1f} s, exit {analyze_code}  (target < 120)  "
              f"{verdict(analyze_s < 120 and analyze_code == 0)}")
        if analyze_code != 0:
            print(analyze_out[-2000:])
        return 0 if code == 0 and not again and not touched else 1
    finally:
        kill_marked(ray_tmp)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
