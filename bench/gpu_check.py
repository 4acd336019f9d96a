"""The GPU path, checked: run on a machine with a CUDA GPU (a few minutes), or with
``--device cpu`` at small size (CI) so that the script itself keeps working.

    python bench/gpu_check.py                  # CUDA: every check at full size
    python bench/gpu_check.py --device cpu --small

1. Determinism: a short trial of each architecture, twice from the same seed, on the device;
   the deterministic Parquet columns must be identical. On CUDA the script sets
   ``CUBLAS_WORKSPACE_CONFIG`` and ``torch.use_deterministic_algorithms(True)``; an op with no
   deterministic CUDA kernel raises there, and the script then names it, reruns with
   ``warn_only=True`` and prints the largest difference between the two runs.
2. Peak GPU memory of each of those trials (``torch.cuda.max_memory_allocated``).
3. PPO-update time on the device against the CPU, as a ratio per architecture (the same
   rollout shape, the same number of updates; CUDA synchronised before each clock read).
4. Four trials sharing one GPU: ``mtrl run`` on a local Ray with ``resources.gpu: 0.25``;
   every row lands, each trial reports the device it trained on, and the trials' reporting
   spans overlap (how many ran at once is printed). In CPU mode the trials ask for no GPU.

The last line is the verdict: ``gpu_check: identical rows from the same seed: yes|no ...``.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

# Before torch initialises CUDA: cuBLAS is deterministic only with a fixed workspace.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mtrl_plasticity.architectures import ARCHITECTURES as REGISTERED  # noqa: E402
from orchestrator import schema  # noqa: E402
from orchestrator.checkpoint import DirectoryCheckpointer  # noqa: E402
from orchestrator.config import TrialConfig  # noqa: E402

ARCHITECTURES = tuple(REGISTERED.names())
from agents.ppo import ppo_update  # noqa: E402
from orchestrator.sink import ParquetSink  # noqa: E402
from orchestrator.trial import _Trial, run_trial  # noqa: E402

SINGLE_TASK = "DoorKey-6x6-v0"


def trial_config(arch: str, device: str, small: bool, seed: int = 0) -> TrialConfig:
    """A short trial; ``small`` shrinks it to seconds on a CPU (networks, epochs and budget)."""
    benchmark = SINGLE_TASK if arch == "single" else "MT3"
    size = (dict(total_steps=200, steps_per_epoch=100, eval_episodes=1, policy_epochs=2, hidden_size=32)
            if small else dict(total_steps=2000, steps_per_epoch=500, eval_episodes=5))
    steps = size["total_steps"]
    return TrialConfig(benchmark=benchmark, arch=arch, seed=seed, device=device, sweep="gpu_check",
                       eval_interval_steps=steps // 2, checkpoint_interval_steps=steps // 2,
                       n_experts=0 if arch in ("mtppo", "single") else 3, measure_plasticity=not small,
                       plasticity_buffer_size=2000, metric_batch_size=256, **size)


def run_rows(config: TrialConfig, folder: str) -> tuple[dict, int]:
    """One trial in ``folder``: its deterministic rows per dataset, and peak GPU bytes (0 on CPU)."""
    import pandas as pd

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run_trial(config, ParquetSink.for_config(folder, config), DirectoryCheckpointer(os.path.join(folder, "ckpt")))
    peak = torch.cuda.max_memory_allocated() if config.device == "cuda" else 0
    rows = {}
    for dataset, directory, keys in (("evals", schema.EVALS_DIR, schema.EVAL_KEYS),
                                     ("train", schema.TRAIN_DIR, schema.TRAIN_KEYS)):
        frame = pd.read_parquet(os.path.join(folder, directory))
        frame = frame[schema.deterministic_columns(frame.columns)].sort_values(list(keys)).reset_index(drop=True)
        rows[dataset] = frame
    return rows, peak


def largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for dataset in a:
        left, right = a[dataset], b[dataset]
        if left.shape != right.shape:
            return float("inf")
        numeric = left.select_dtypes("number").columns
        worst = max(worst, float((left[numeric] - right[numeric]).abs().max().max() or 0.0))
    return worst


def same_rows(a: dict, b: dict) -> bool:
    return all(a[d].equals(b[d]) for d in a)


def check_determinism(device: str, small: bool, tmp: str) -> tuple[bool, dict[str, int]]:
    """Section 1 and 2: per architecture, two runs from one seed; True if all are identical."""
    print(f"== 1. determinism: each architecture twice from seed 0 on {device}", flush=True)
    all_identical, peaks = True, {}
    for arch in ARCHITECTURES:
        config = trial_config(arch, device, small)
        nondeterministic_op = None
        started = time.perf_counter()
        try:
            torch.use_deterministic_algorithms(True)
            first, peak = run_rows(config, os.path.join(tmp, f"{arch}-a"))
            second, _ = run_rows(config, os.path.join(tmp, f"{arch}-b"))
        except RuntimeError as exc:  # an op without a deterministic kernel on this device
            nondeterministic_op = str(exc).splitlines()[0][:200]
            torch.use_deterministic_algorithms(True, warn_only=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first, peak = run_rows(config, os.path.join(tmp, f"{arch}-c"))
                second, _ = run_rows(config, os.path.join(tmp, f"{arch}-d"))
        identical = same_rows(first, second)
        all_identical &= identical
        peaks[arch] = peak
        verdict = "identical" if identical else f"DIFFER (largest |difference| {largest_difference(first, second):.3g})"
        rows = sum(len(frame) for frame in first.values())
        print(f"  {arch:7s} {rows:4d} rows, {verdict}, {time.perf_counter() - started:.1f} s"
              + (f"; not deterministic: {nondeterministic_op}" if nondeterministic_op else ""), flush=True)
    torch.use_deterministic_algorithms(False)
    if device == "cuda":
        print("== 2. peak GPU memory per trial (torch.cuda.max_memory_allocated)")
        for arch, peak in peaks.items():
            print(f"  {arch:7s} {peak / 2**20:8.1f} MiB")
    return all_identical, peaks


def update_seconds(arch: str, device: str, small: bool, repeats: int) -> float:
    """Mean seconds of one PPO update (all its epochs) on ``device``, from one collected rollout."""
    config = trial_config(arch, device, small)
    trial = _Trial(config)
    rollout, _ = trial.collect()
    ppo_update(trial.agent, rollout, config, trial.update_rng, trial.treatment)  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        ppo_update(trial.agent, rollout, config, trial.update_rng, trial.treatment)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def compare_update_time(device: str, small: bool) -> None:
    repeats = 1 if small else 10
    print(f"== 3. PPO update, {device} against cpu (same rollout size, {repeats} updates each, "
          f"one CPU thread as in a trial)", flush=True)
    for arch in ARCHITECTURES:
        on_device, on_cpu = update_seconds(arch, device, small, repeats), update_seconds(arch, "cpu", small, repeats)
        print(f"  {arch:7s} {device} {on_device * 1000:8.1f} ms   cpu {on_cpu * 1000:8.1f} ms   "
              f"cpu/{device} {on_cpu / on_device:5.2f}x", flush=True)
    if device == "cpu":
        print("  (cpu mode: both sides run on the CPU; the ratio only shows the code path works)")


def shared_gpu_sweep(device: str, small: bool, tmp: str) -> bool:
    """Section 4: four trials on a local Ray, a quarter GPU each (CPU mode: no GPU); True if all landed."""
    gpu = 0.25 if device == "cuda" else 0
    print(f"== 4. four trials through `mtrl run` on a local Ray, resources.gpu={gpu}", flush=True)
    config = trial_config("mtppo", "auto", small)
    defaults = {name: getattr(config, name) for name in
                ("total_steps", "steps_per_epoch", "eval_interval_steps", "eval_episodes", "n_experts",
                 "policy_epochs", "hidden_size", "measure_plasticity", "plasticity_buffer_size",
                 "metric_batch_size")}
    sweep = {"name": "gpu_check", "benchmarks": ["MT3"], "archs": ["mtppo"], "treatments": ["dense"], "seeds": 4,
             "defaults": defaults, "resources": {"cpu": 1, "gpu": gpu},
             "checkpoint_interval_steps": config.checkpoint_interval_steps, "max_failures": 0, "storage": tmp}
    path = os.path.join(tmp, "gpu_check.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(sweep, f, sort_keys=False)
    env = dict(os.environ, HOME=tmp, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "analysis.cli", "run", path, "--num-cpus", "4"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"  mtrl run exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
        return False
    spans, devices = [], {}
    # Tune's own folder of this run: tune/run-<time>-<id>/<trial>/result.json (one run here).
    for result_file in sorted(glob.glob(os.path.join(tmp, "gpu_check", "tune", "run-*", "*", "result.json"))):
        key = os.path.basename(os.path.dirname(result_file))
        results = [json.loads(line) for line in open(result_file) if line.strip()]
        devices[key] = sorted({r["device"] for r in results if "device" in r})
        started = min(r["timestamp"] - r["time_this_iter_s"] for r in results)
        spans.append((started, max(r["timestamp"] for r in results)))
    at_once = max(sum(start <= moment <= end for start, end in spans) for moment, _ in spans)
    for key, used in devices.items():
        print(f"  {key}: device {','.join(used)}")
    print(f"  4 trials in {seconds:.0f} s; at most {at_once} reporting at once; {done.stdout.strip().splitlines()[-1]}")
    return len(devices) == 4 and all(used == ["cuda" if gpu else "cpu"] for used in devices.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny trials (CI)")
    parser.add_argument("--skip-sweep", action="store_true", help="skip the Ray sweep (section 4)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); use --device cpu")
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"gpu_check on {where}: torch {torch.__version__}, CUBLAS_WORKSPACE_CONFIG="
          f"{os.environ['CUBLAS_WORKSPACE_CONFIG']}, {'small' if args.small else 'full'} size", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        identical, _ = check_determinism(args.device, args.small, tmp)
        compare_update_time(args.device, args.small)
        swept = True if args.skip_sweep else shared_gpu_sweep(args.device, args.small, tmp)
    print(f"gpu_check: identical rows from the same seed: {'yes' if identical else 'no'} "
          f"({len(ARCHITECTURES)} architectures on {args.device}); shared sweep: "
          f"{'skipped' if args.skip_sweep else 'ok' if swept else 'FAILED'}; {time.perf_counter() - started:.0f} s")
    sys.exit(0 if identical and swept else 1)


if __name__ == "__main__":
    main()
