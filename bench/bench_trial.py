"""Trial speed: env-step throughput, time inside MiniGrid, batched vs sequential evaluation, memory.

Every architecture runs the same short MT3 trial (the paper's epoch shape: 2000 lock-step
steps per epoch, evaluation of 25 episodes per task every 2000 steps), each in its own
process so that peak RSS is its own, and the figures are printed side by side:

    python bench/bench_trial.py            # 2 epochs per architecture (a few minutes)
    python bench/bench_trial.py --small    # CI-sized smoke run of the same code
    python bench/bench_trial.py --compare-observations   # each architecture, fast vs plain observations

Targets (issue 2): batched evaluation >= 3x faster than one episode at a time; a trial
spends >= 50% of its wall time inside env.step/reset; peak RSS < 1.5 GB. With
``--compare-observations`` (issue 21, run by ``bench/bench_obs.py``) each architecture's
trial runs with ``fast_observations`` on and off, alternating over rounds, each way keeping
its round with the fewest CPU seconds: an MT3 trial >= 1.4x faster with MTPPO and >= 1.25x with MOORE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ARCHS = ("mtppo", "moe", "moore")
EVAL_ROUNDS = 2
OBSERVATION_ROUNDS = 2


def one_trial(arch: str, total_steps: int, steps_per_epoch: int, episodes: int,
              fast_observations: bool = True, trial_only: bool = False) -> dict:
    import numpy as np
    import pandas as pd

    import orchestrator.trial as trial_module
    from envs.evaluator import BatchedEvaluator, evaluate_sequentially
    from envs.multitask import EnvClock
    from orchestrator.checkpoint import DirectoryCheckpointer
    from orchestrator.config import TrialConfig
    from orchestrator.sink import ParquetSink
    from orchestrator.trial import _Trial, make_policy, run_trial

    config = TrialConfig(benchmark="MT3", arch=arch, seed=0, total_steps=total_steps,
                         steps_per_epoch=steps_per_epoch, eval_interval_steps=steps_per_epoch,
                         checkpoint_interval_steps=total_steps, eval_episodes=episodes,
                         fast_observations=fast_observations)
    # Where the wall time goes: each phase's seconds, with the env clock's share split out.
    phases = {name: [0.0, 0.0] for name in ("collect", "evaluate", "update", "plasticity")}

    def timed(name, fn, clock_of):
        def wrapper(*args, **kwargs):
            clock = clock_of(args)
            env_before, started = (clock.seconds if clock else 0.0), time.perf_counter()
            out = fn(*args, **kwargs)
            phases[name][0] += time.perf_counter() - started
            phases[name][1] += (clock.seconds if clock else 0.0) - env_before
            return out
        return wrapper

    clock_of_trial = lambda args: args[0].clock  # noqa: E731
    for name in ("collect", "evaluate", "plasticity"):
        setattr(_Trial, name, timed(name, getattr(_Trial, name), clock_of_trial))
    trial_module.ppo_update = timed("update", trial_module.ppo_update, lambda args: None)
    with tempfile.TemporaryDirectory() as results:
        started = time.perf_counter()
        result = run_trial(config, ParquetSink.for_config(results, config),
                           DirectoryCheckpointer(os.path.join(results, "ck")))
        wall = time.perf_counter() - started
        train = pd.read_parquet(os.path.join(results, "metrics", "train")).sort_values("step")
    last = train.iloc[-1]
    if trial_only:
        return {"arch": arch, "wall_s": wall, "cpu_s": result.cpu_seconds,
                "env_fraction": float(last["perf/env_fraction"])}

    # Evaluation alone, untrained policy (the longest episodes), both ways, same seeds. The
    # two ways alternate over EVAL_ROUNDS rounds and each keeps its fastest round: this VM's
    # speed drifts by tens of percent over a minute, which a single pair of runs would catch.
    import torch

    from agents.networks import frozen_weights

    trial = _Trial(config)
    seeds = np.random.default_rng(0).integers(2**31 - 1, size=(3, episodes))
    clock = EnvClock()
    evaluator = BatchedEvaluator(trial.tasks, episodes, clock)  # built once, as a trial keeps its own
    rounds = {"batched": [], "sequential": []}  # per round: (wall, env, policy) seconds per env step
    for _ in range(EVAL_ROUNDS):
        for way in rounds:
            env_before, policy_seconds = clock.seconds, [0.0]
            sample = make_policy(trial.agent.actor, trial.device, torch.Generator().manual_seed(0))

            def policy(obs, task, sample=sample, policy_seconds=policy_seconds):
                started = time.perf_counter()
                actions = sample(obs, task)
                policy_seconds[0] += time.perf_counter() - started
                return actions

            t0 = time.perf_counter()
            # Both ways as a trial evaluates: weights frozen (the heads' faster product from 16 rows on).
            with frozen_weights(trial.agent.actor):
                if way == "batched":
                    results = evaluator.evaluate(policy, seeds)
                else:
                    results = evaluate_sequentially(trial.tasks, policy, seeds, clock)
            wall_s = time.perf_counter() - t0
            steps = sum(int(r.lengths.sum()) for r in results)
            rounds[way].append((wall_s / steps, (clock.seconds - env_before) / steps, policy_seconds[0] / steps))
    batched, sequential = (min(rounds[way], key=lambda r: r[0]) for way in ("batched", "sequential"))  # fastest wall
    return {
        "arch": arch,
        "wall_s": wall,
        "env_steps_per_s": total_steps * 3 / wall,
        "env_fraction": float(last["perf/env_fraction"]),
        "eval_batched_us_per_step": [seconds * 1e6 for seconds in batched],
        "eval_sequential_us_per_step": [seconds * 1e6 for seconds in sequential],
        "eval_speedup": sequential[0] / batched[0],
        # The speed-up if the batched policy cost nothing: MiniGrid's own step bounds it.
        "eval_speedup_ceiling": sequential[0] / (batched[0] - batched[2]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "phase_fraction": {
            "env.step": sum(env for _, env in phases.values()) / wall,
            "collect: policy + loop": (phases["collect"][0] - phases["collect"][1]) / wall,
            "evaluate: policy + loop": (phases["evaluate"][0] - phases["evaluate"][1]) / wall,
            "PPO update": phases["update"][0] / wall,
            "plasticity metrics": phases["plasticity"][0] / wall,
            "rest (sink, checkpoint, set-up)": 1 - sum(t for t, _ in phases.values()) / wall,
        },
    }


def _child(arch: str, small: bool, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--arch", arch, *extra] + (["--small"] if small else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare_observations(small: bool, total: int, epoch: int, episodes: int) -> None:
    """Each architecture's trial with fast observations and with MiniGrid's own, side by side."""
    print(f"MT3 trial, {total} lock-step steps ({total // epoch} epochs of {epoch}), eval {episodes} episodes/task "
          f"every {epoch} steps, 1 torch thread; fastest of {OBSERVATION_ROUNDS} alternating rounds per way\n")
    print(f"{'arch':7} {'plain CPU s':>11} {'wall s':>7} {'in env':>7} {'fast CPU s':>10} {'wall s':>7} "
          f"{'in env':>7} {'speed-up CPU':>13} {'wall':>6}")
    for arch in ARCHS:
        runs = {"plain": [], "fast": []}
        for _ in range(OBSERVATION_ROUNDS):
            for way in runs:
                runs[way].append(_child(arch, small, "--trial-only", *(["--plain-obs"] if way == "plain" else [])))
        plain, fast = (min(runs[way], key=lambda r: r["cpu_s"]) for way in ("plain", "fast"))
        print(f"{arch:7} {plain['cpu_s']:11.1f} {plain['wall_s']:7.1f} {plain['env_fraction']:7.1%} "
              f"{fast['cpu_s']:10.1f} {fast['wall_s']:7.1f} {fast['env_fraction']:7.1%} "
              f"{plain['cpu_s'] / fast['cpu_s']:12.2f}x {plain['wall_s'] / fast['wall_s']:5.2f}x", flush=True)
    print("\nCPU s = the trial thread's CPU seconds (run_trial's cpu_seconds; steadier than wall time on a shared "
          "machine); in env = share of the wall time inside MiniGrid's step/reset (perf/env_fraction)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny budget: checks the script runs")
    parser.add_argument("--compare-observations", action="store_true",
                        help="each architecture with fast_observations on and off")
    parser.add_argument("--arch", help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--plain-obs", action="store_true", help=argparse.SUPPRESS)  # child: fast_observations off
    parser.add_argument("--trial-only", action="store_true", help=argparse.SUPPRESS)  # child: no evaluation rounds
    args = parser.parse_args()
    total, epoch, episodes = (600, 300, 3) if args.small else (4000, 2000, 25)
    if args.arch:
        print(json.dumps(one_trial(args.arch, total, epoch, episodes, fast_observations=not args.plain_obs,
                                   trial_only=args.trial_only)))
        return
    if args.compare_observations:
        compare_observations(args.small, total, epoch, episodes)
        return
    rows = [_child(arch, args.small) for arch in ARCHS]
    print(f"MT3, {total} lock-step steps ({total // epoch} epochs of {epoch}), eval {episodes} episodes/task "
          f"every {epoch} steps, 1 torch thread\n")
    header = (f"{'arch':7} {'wall s':>8} {'env steps/s':>12} {'in env.step':>12} "
              f"{'eval batched us':>16} {'eval 1-by-1 us':>15} {'batched speedup':>16} {'peak RSS MB':>12}")
    print(header)
    for r in rows:
        print(f"{r['arch']:7} {r['wall_s']:8.1f} {r['env_steps_per_s']:12.0f} {r['env_fraction']:12.1%} "
              f"{r['eval_batched_us_per_step'][0]:16.0f} {r['eval_sequential_us_per_step'][0]:15.0f} "
              f"{r['eval_speedup']:15.1f}x {r['peak_rss_mb']:12.0f}")
    print(f"\neval us = microseconds per environment step, fastest of {EVAL_ROUNDS} alternating rounds; batched "
          "speedup = sequential / batched, same policy and seeds")
    print("\nevaluation per environment step, us (env = inside MiniGrid's step/reset; ceiling = the speed-up if "
          "the batched policy cost nothing):")
    print(f"{'arch':7} {'batched env':>12} {'policy':>7} {'loop':>5} {'1-by-1 env':>11} {'policy':>7} {'loop':>5} "
          f"{'ceiling':>8}")
    for r in rows:
        cells = []
        for wall_us, env_us, policy_us in (r["eval_batched_us_per_step"], r["eval_sequential_us_per_step"]):
            cells += [env_us, policy_us, wall_us - env_us - policy_us]
        print(f"{r['arch']:7} {cells[0]:12.0f} {cells[1]:7.0f} {cells[2]:5.0f} {cells[3]:11.0f} {cells[4]:7.0f} "
              f"{cells[5]:5.0f} {r['eval_speedup_ceiling']:7.1f}x")
    print("\nwhere the wall time goes (fraction of each trial's wall time):")
    names = list(rows[0]["phase_fraction"])
    print(f"{'':34}" + "".join(f"{r['arch']:>9}" for r in rows))
    for name in names:
        print(f"{name:34}" + "".join(f"{r['phase_fraction'][name]:9.1%}" for r in rows))


if __name__ == "__main__":
    main()
