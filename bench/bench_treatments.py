"""What the treatments and plasticity metrics cost, measured side by side in one run.

Two questions, each answered against the same work without the thing measured:

1. **Masking per update.** One PPO update (MT3 shapes: 2000 x T samples, 8 policy epochs of
   256 x T minibatches, the critic's full-batch step) on a 95%-pruned network, once with the
   GMP treatment's ``after_optimizer_step`` (weights and Adam moments masked after every
   step) and once with the dense treatment's no-op, interleaved; plus the time spent inside
   the masking itself. Target: masking adds at most 10% to an update.
2. **Metrics and treatments per trial.** The same short trial (draft protocol: an evaluation
   with 25 episodes per task and the plasticity metrics after every 2000-step epoch) with
   and without the plasticity metrics, and with treatments; the seconds spent inside
   ``measure_plasticity`` and inside the treatment hooks are clocked within each run, which
   is robust to a busy machine (whole-trial wall times are not: a treatment changes the
   policy and with it the length of the evaluation episodes). Target: the metrics cost at
   most 15% of a trial's wall time.

Usage (one CPU thread per trial, as the trials run)::

    python bench/bench_treatments.py                    # both parts, MT3, mtppo and moore
    python bench/bench_treatments.py --part update --reps 5
    python bench/bench_treatments.py --part trial --epochs 3 --archs mtppo

Numbers depend on the machine and on what else runs on it; ratios come from interleaved runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.agent import build_agent  # noqa: E402
from agents.ppo import Rollout, ppo_update  # noqa: E402
from agents.treatments import build_treatment  # noqa: E402
from mtrl_plasticity.benchmarks import get_benchmark  # noqa: E402
from orchestrator import trial as trial_module  # noqa: E402
from orchestrator.checkpoint import DirectoryCheckpointer  # noqa: E402
from orchestrator.config import TrialConfig  # noqa: E402
from orchestrator.sink import ParquetSink  # noqa: E402


def _rollout(n_steps: int, n_tasks: int, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    obs = np.stack([rng.integers(0, 11, (n_steps, n_tasks, 7, 7)), rng.integers(0, 6, (n_steps, n_tasks, 7, 7)),
                    rng.integers(0, 3, (n_steps, n_tasks, 7, 7))], axis=2).astype(np.uint8)
    done = rng.random((n_steps, n_tasks)) < 0.01
    return Rollout(obs=obs, actions=rng.integers(0, 7, (n_steps, n_tasks)),
                   rewards=(rng.random((n_steps, n_tasks)) < 0.01).astype(np.float32),
                   next_obs=np.roll(obs, 1, axis=0), terminated=done, truncated=np.zeros_like(done))


class _Timed:
    """Wraps a callable and sums the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def bench_update(benchmark: str, arch: str, reps: int) -> dict:
    bench = get_benchmark(benchmark)
    cfg = TrialConfig(benchmark=benchmark, arch=arch)
    torch.manual_seed(0)
    gmp = build_treatment("gmp95", total_steps=cfg.total_steps)
    dense = build_treatment("dense", total_steps=cfg.total_steps)
    agent = build_agent(arch, bench.n_tasks, cfg.experts, cfg.hidden_size, cfg.actor_lr, cfg.critic_lr,
                        gmp.build_optimizer, torch.device("cpu"))
    gmp.setup(agent)
    gmp.on_step(gmp.schedule.end_step, agent, None)  # final sparsity: every mask active
    rollout = _rollout(cfg.steps_per_epoch, bench.n_tasks, 0)
    rng = np.random.default_rng(0)
    ppo_update(agent, rollout, cfg, rng, gmp)  # warm-up (allocations, Adam state)
    masked_apply = _Timed(gmp.after_optimizer_step)
    gmp.after_optimizer_step = masked_apply
    times = {"masked": [], "dense": []}
    for _ in range(reps):
        for name, treatment in (("masked", gmp), ("dense", dense)):
            start = time.perf_counter()
            ppo_update(agent, rollout, cfg, rng, treatment)
            times[name].append(time.perf_counter() - start)
    masked, plain = statistics.median(times["masked"]), statistics.median(times["dense"])
    return {"arch": arch, "update_dense_s": plain, "update_masked_s": masked,
            "ratio": masked / plain, "in_masking_per_update_s": masked_apply.seconds / reps,
            "masking_share": masked_apply.seconds / sum(times["masked"]),
            "optimizer_steps_per_update": masked_apply.calls // reps, "sparsity": gmp.mask_set.sparsity()}


def _run_trial(config: TrialConfig) -> dict:
    """Wall seconds of a trial and the seconds spent inside the metrics and treatment hooks."""
    timers: dict[str, _Timed] = {"metrics": _Timed(trial_module.measure_plasticity)}
    original_measure, original_build = trial_module.measure_plasticity, trial_module.build_treatment

    def build_timed_treatment(*args, **kwargs):
        treatment = original_build(*args, **kwargs)
        for hook in ("on_step", "after_optimizer_step"):
            timers[hook] = _Timed(getattr(treatment, hook))
            setattr(treatment, hook, timers[hook])
        return treatment

    trial_module.measure_plasticity = timers["metrics"]
    trial_module.build_treatment = build_timed_treatment
    try:
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            trial_module.run_trial(config, ParquetSink.for_config(root, config),
                                   DirectoryCheckpointer(f"{root}/ckpt"))
            wall = time.perf_counter() - start
    finally:
        trial_module.measure_plasticity, trial_module.build_treatment = original_measure, original_build
    return {"wall_s": wall, **{f"{k}_s": t.seconds for k, t in timers.items()},
            "metric_calls": timers["metrics"].calls}


def bench_trial(benchmark: str, arch: str, epochs: int, treatments: list[str]) -> list[dict]:
    base = dict(benchmark=benchmark, arch=arch, total_steps=2000 * epochs, steps_per_epoch=2000,
                eval_interval_steps=2000, checkpoint_interval_steps=2000 * epochs, device="cpu")
    # dense with and without the metrics follow the same trajectory (the metrics use their own
    # RNG), so their wall times differ by the metrics only, plus machine noise.
    runs = [("dense", False), ("dense", True)] + [(t, True) for t in treatments if t != "dense"]
    rows = []
    for treatment, measure in runs:
        config = TrialConfig(**base, treatment=treatment, measure_plasticity=measure)
        rows.append({"arch": arch, "treatment": treatment, "metrics": measure, **_run_trial(config)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("update", "trial", "both"), default="both")
    parser.add_argument("--benchmark", default="MT3")
    parser.add_argument("--archs", nargs="+", default=["mtppo", "moore"])
    parser.add_argument("--reps", type=int, default=3, help="interleaved PPO updates per variant")
    parser.add_argument("--epochs", type=int, default=3, help="2000-step epochs per trial")
    parser.add_argument("--treatments", nargs="+", default=["gmp95", "set95", "redo"],
                        help="treatments timed against dense in the trial part")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.part in ("update", "both"):
        print(f"# masking cost per PPO update ({args.benchmark}, 95% sparse, median of {args.reps})")
        for arch in args.archs:
            r = bench_update(args.benchmark, arch, args.reps)
            print(f"{arch:6s} dense {r['update_dense_s']:.3f}s  masked {r['update_masked_s']:.3f}s  "
                  f"ratio {r['ratio']:.3f}  inside masking {r['in_masking_per_update_s'] * 1e3:.1f} ms/update "
                  f"({100 * r['masking_share']:.1f}% of the masked update, "
                  f"{r['optimizer_steps_per_update']} optimizer steps, mask sparsity {r['sparsity']:.3f})")
    if args.part in ("trial", "both"):
        print(f"# plasticity metrics and treatments per trial ({args.benchmark}, {args.epochs} epochs of 2000 "
              f"steps, eval + metrics every epoch, 25 episodes per task)")
        for arch in args.archs:
            rows = bench_trial(args.benchmark, arch, args.epochs, args.treatments)
            base = rows[0]["wall_s"]
            for r in rows:
                wall = r["wall_s"]
                line = (f"{arch:6s} {r['treatment']:6s} metrics={'on ' if r['metrics'] else 'off'} wall {wall:6.1f}s "
                        f"(x{wall / base:.3f} of dense/off)")
                if r["metrics"]:
                    line += (f"  metrics {r['metrics_s']:.2f}s = {100 * r['metrics_s'] / wall:.1f}% "
                             f"({r['metric_calls']} calls, {r['metrics_s'] / max(r['metric_calls'], 1):.2f}s each)")
                hooks = r["on_step_s"] + r["after_optimizer_step_s"]
                line += (f"  treatment hooks {hooks:.2f}s = {100 * hooks / wall:.1f}% (on_step {r['on_step_s']:.2f}s, "
                         f"after_optimizer_step {r['after_optimizer_step_s']:.2f}s)")
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
