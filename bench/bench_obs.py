"""Observation speed: MiniGrid's gen_obs against envs.fast_obs, per task, and a trial with each.

    python bench/bench_obs.py                  # per task, then MT3 trials accelerated vs plain
    python bench/bench_obs.py --no-trial       # per task only (well under a minute)
    python bench/bench_obs.py --small          # CI-sized run of the same code
    python bench/bench_obs.py --check 1000000  # compare a million steps with gen_obs, print mismatches

Per task, an accelerated env steps through a random trajectory; on each state MiniGrid's
gen_obs and the fast path are timed (CPU time of this thread, so that other processes on a
shared machine do not count). A plain env and an accelerated one then step through the same
actions and seeds, each ``step`` timed; the ways alternate over rounds and each keeps its
fastest round. Then ``bench/bench_trial.py --compare-observations`` runs an MT3 trial per
architecture with ``fast_observations`` on and off.

Targets (issue 21): observation >= 8x faster, step (observation included) >= 2.5x on every
task; an MT3 trial >= 1.4x faster with MTPPO and >= 1.25x with MOORE.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))  # testkit

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from minigrid.minigrid_env import MiniGridEnv  # noqa: E402

from envs.benchmarks import PAPER_TASKS
from envs.fast_obs import accelerate  # noqa: E402
from mtrl_plasticity.benchmarks import TASKS  # noqa: E402
from testkit.fast_obs_check import ALL_ENVS, compare_run  # noqa: E402

ROUNDS = 3
REPEATS = 5  # gen_obs calls timed together per state: the clock's own cost is a few percent of one call
clock = time.thread_time  # CPU time of this thread: other processes on a shared machine do not count


def _observation_round(env_id: str, steps: int) -> tuple[float, float]:
    """CPU seconds per call of gen_obs and of the fast path, on the same states of one random trajectory."""
    env = accelerate(gym.make(env_id).unwrapped)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    plain_s = fast_s = 0.0
    episode = 0
    for action in rng.integers(0, 3, size=steps):
        _, _, terminated, truncated, _ = env.step(int(action))
        t0 = clock()
        for _ in range(REPEATS):
            MiniGridEnv.gen_obs(env)
        t1 = clock()
        for _ in range(REPEATS):
            env.gen_obs()
        t2 = clock()
        plain_s += t1 - t0
        fast_s += t2 - t1
        if terminated or truncated:
            episode += 1
            env.reset(seed=episode)
    return plain_s / REPEATS, fast_s / REPEATS


def _step_round(env_id: str, steps: int, fast: bool) -> float:
    """CPU seconds inside ``step`` (resets excluded) over ``steps`` random actions."""
    env = gym.make(env_id).unwrapped
    if fast:
        accelerate(env)
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    total, episode = 0.0, 0
    started = clock()
    for action in rng.integers(0, 3, size=steps):
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            total += clock() - started
            episode += 1
            env.reset(seed=episode)
            started = clock()
    return total + clock() - started


def per_task(steps: int) -> None:
    print(f"per task: CPU microseconds per call, fastest of {ROUNDS} alternating rounds of {steps} random steps "
          "(left/right/forward; resets not timed)\n")
    print(f"{'task':24} {'gen_obs':>8} {'fast':>6} {'obs x':>6}   {'step':>6} {'fast step':>9} {'step x':>7}")
    for task in PAPER_TASKS:
        env_id = TASKS[task].env_id
        obs, plain_step, fast_step = [], [], []
        for _ in range(ROUNDS):
            obs.append(_observation_round(env_id, steps))
            plain_step.append(_step_round(env_id, steps, fast=False))
            fast_step.append(_step_round(env_id, steps, fast=True))
        gen_us, fast_us = (min(o[i] for o in obs) / steps * 1e6 for i in (0, 1))
        step_us, fast_step_us = min(plain_step) / steps * 1e6, min(fast_step) / steps * 1e6
        print(f"{task:24} {gen_us:8.1f} {fast_us:6.1f} {gen_us / fast_us:5.1f}x   {step_us:6.1f} "
              f"{fast_step_us:9.1f} {step_us / fast_step_us:6.1f}x")


def check(total: int) -> int:
    """Compare ``total`` steps, spread over every env of the check set; 1 if any mismatch."""
    per_env = max(1, total // (2 * len(ALL_ENVS)))
    compared, mismatches = 0, []
    print(f"comparing with MiniGrid's gen_obs: {len(ALL_ENVS)} envs x ({per_env} random + {per_env} scripted) steps")
    for index, check_env in enumerate(ALL_ENVS):
        started = time.perf_counter()
        runs = [compare_run(check_env, per_env, policy, seed=1000 + index) for policy in ("random", "scripted")]
        found = [m for run in runs for m in run.mismatches]
        compared += sum(run.compared for run in runs)
        mismatches += found
        events = runs[1].events
        rare = ", ".join(f"{k} {v}" for k, v in sorted(events.items()) if not k.startswith("direction"))
        print(f"  {check_env.name:50} {sum(r.compared for r in runs):8d} compared, {len(found)} mismatches "
              f"({time.perf_counter() - started:.0f} s; scripted: {rare})", flush=True)
    for line in mismatches:
        print(f"MISMATCH {line}")
    print(f"{compared} observations compared, {len(mismatches)} mismatches")
    return 1 if mismatches else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--no-trial", action="store_true", help="per-task figures only")
    parser.add_argument("--check", type=int, metavar="STEPS", help="compare STEPS steps with gen_obs instead")
    args = parser.parse_args()
    if args.check is not None:
        if args.check <= 0:
            parser.error(f"--check needs a positive number of steps, got {args.check}")
        return check(args.check)
    per_task(200 if args.small else 3000)
    if not args.no_trial:
        print(flush=True)
        trial = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_trial.py"),
                 "--compare-observations"] + (["--small"] if args.small else [])
        return subprocess.run(trial, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
