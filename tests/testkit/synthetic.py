"""Synthetic results folders in the exact Parquet layout trials write, for tests, benches and demos.

:func:`write_synthetic_sweep` writes ``metrics/evals`` and ``metrics/train`` Hive partitions
with the schemas of :mod:`orchestrator.schema` (partition columns only in directory names),
either one compacted ``<run_key>.parquet`` per run or ``<run_key>__<first>-<last>.parquet``
segments. Scores follow a smooth learning curve whose plateau depends on the architecture,
the treatment, the task and the seed, plus evaluation noise; every value is a deterministic
function of the arguments.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtrl_plasticity.benchmarks import TASKS, get_benchmark
from orchestrator.schema import EVALS_DIR, EVALS_SCHEMA, SCHEMA_VERSION, TRAIN_DIR, TRAIN_METRIC_COLUMNS, TRAIN_SCHEMA

ARCH_LEVEL = {"mtppo": 0.55, "moe": 0.65, "moore": 0.72, "single": 0.85}
TREATMENT_SHIFT = {"dense": 0.0, "gmp80": 0.02, "gmp95": 0.05, "gmp99": 0.03, "set95": 0.04,
                   "redo": 0.02, "reset": -0.02, "wd": 0.0}
FINAL_SPARSITY = {"gmp80": 0.80, "gmp95": 0.95, "gmp99": 0.99, "set95": 0.95}


@dataclass
class SyntheticSweep:
    """What :func:`write_synthetic_sweep` wrote."""

    root: Path
    run_keys: list[str] = field(default_factory=list)
    eval_files: list[Path] = field(default_factory=list)
    train_files: list[Path] = field(default_factory=list)


def run_key(benchmark: str, arch: str, treatment: str, seed: int) -> str:
    """The trial name every row carries (``orchestrator.config.TrialConfig.run_key``)."""
    return f"{benchmark}-{arch}-{treatment}-s{seed:02d}"


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, parts)).encode()))


def plateau(arch: str, treatment: str, task: str, seed: int) -> float:
    """The score a synthetic run levels off at (before evaluation noise)."""
    task_offset = (zlib.crc32(task.encode()) % 21 - 10) / 100.0
    seed_offset = _rng("plateau", arch, treatment, task, seed).normal(0.0, 0.08)
    return float(ARCH_LEVEL.get(arch, 0.6) + TREATMENT_SHIFT.get(treatment, 0.0) + task_offset + seed_offset)


def write_synthetic_sweep(
    root: str | os.PathLike,
    *,
    benchmarks: Sequence[str] = ("MT3",),
    archs: Sequence[str] = ("mtppo", "moe", "moore"),
    treatments: Sequence[str] = ("dense", "gmp95"),
    seeds: Iterable[int] = range(3),
    total_steps: int = 20_000,
    eval_interval: int = 2_000,
    steps_per_epoch: int = 2_000,
    single_task: bool = True,
    segment_steps: int | None = None,
    skip: Iterable[str] = (),
    truncate: dict[str, int] | None = None,
    sweep: str = "synthetic",
    write_train: bool = True,
    sweep_yaml: dict | None = None,
    noise: float = 0.03,
) -> SyntheticSweep:
    """Write a synthetic results folder under ``root``.

    Args:
        root: the results folder (created).
        benchmarks, archs, treatments, seeds: the grid of multi-task runs.
        total_steps, eval_interval, steps_per_epoch: the budget; evaluations happen at step 0
            and every ``eval_interval`` steps, train rows at the end of every epoch.
        single_task: also write ``single``/``dense`` runs for every task of the benchmarks.
        segment_steps: ``None`` writes one compacted file per run; otherwise one segment
            per ``segment_steps`` steps, named ``<run_key>__<first>-<last>.parquet``.
        skip: run keys not to write (missing seeds or cells).
        truncate: ``{run_key: last_step}`` for runs that stopped early (unfinished trials).
        sweep: the ``sweep`` column.
        write_train: also write ``metrics/train``.
        sweep_yaml: when given, written as ``sweep.yaml`` (keys such as ``name``, ``protocol``).
        noise: standard deviation of the per-evaluation noise on the normalised score.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if sweep_yaml is not None:
        import yaml

        (root / "sweep.yaml").write_text(yaml.safe_dump(sweep_yaml, sort_keys=True), encoding="utf-8")
    skip = set(skip)
    truncate = dict(truncate or {})
    seeds = list(seeds)
    runs: list[tuple[str, str, str, int]] = []
    for benchmark in benchmarks:
        for arch in archs:
            for treatment in treatments:
                runs += [(benchmark, arch, treatment, s) for s in seeds]
    if single_task:
        tasks: list[str] = []
        for benchmark in benchmarks:
            tasks += [t for t in get_benchmark(benchmark).tasks if t not in tasks]
        runs += [(task, "single", "dense", s) for task in tasks for s in seeds]

    out = SyntheticSweep(root=root)
    for benchmark, arch, treatment, seed in runs:
        key = run_key(benchmark, arch, treatment, seed)
        if key in skip:
            continue
        last = truncate.get(key, total_steps)
        out.run_keys.append(key)
        evals = _eval_table(sweep, benchmark, arch, treatment, seed, last, total_steps, eval_interval, steps_per_epoch,
                            noise)
        out.eval_files += _write(root / EVALS_DIR, evals, benchmark, arch, treatment, key, segment_steps)
        if write_train:
            train = _train_table(sweep, benchmark, arch, treatment, seed, last, total_steps, eval_interval,
                                 steps_per_epoch)
            out.train_files += _write(root / TRAIN_DIR, train, benchmark, arch, treatment, key, segment_steps)
    return out


DISCOUNT_OF_A_SUCCESS = 0.99 ** 19
"""The synthetic evaluations' discounted / undiscounted return (every success in 20 steps, gamma 0.99)."""


def _identity(sweep: str, key: str, seed: int, steps: np.ndarray, steps_per_epoch: int) -> dict[str, pa.Array]:
    n = len(steps)
    return {
        "schema_version": pa.array(np.full(n, SCHEMA_VERSION, dtype=np.int32)),
        "sweep": pa.array([sweep] * n, pa.string()),
        "run_key": pa.array([key] * n, pa.string()),
        "seed": pa.array(np.full(n, seed, dtype=np.int32)),
        "step": pa.array(steps.astype(np.int64)),
        "epoch": pa.array((steps // steps_per_epoch).astype(np.int32)),
        "axes": pa.array([""] * n, pa.string()),
    }


def _eval_table(sweep, benchmark, arch, treatment, seed, last, total_steps, eval_interval, steps_per_epoch,
                noise) -> pa.Table:
    tasks = get_benchmark(benchmark).tasks
    eval_steps = np.arange(0, last + 1, eval_interval, dtype=np.int64)
    n_steps, n_tasks = len(eval_steps), len(tasks)
    rng = _rng("evals", benchmark, arch, treatment, seed)
    levels = np.array([plateau(arch, treatment, t, seed) for t in tasks])
    progress = 1.0 - np.exp(-eval_steps / (0.25 * total_steps))
    scores = progress[:, None] * levels[None, :] + rng.normal(0.0, noise, size=(n_steps, n_tasks))
    scores[0] = np.abs(rng.normal(0.0, 0.01, size=n_tasks))  # an untrained policy rarely succeeds
    scores = np.clip(scores, 0.0, 1.0)
    best = np.array([TASKS[t].best_reward for t in tasks])
    returns = scores * best[None, :]
    steps = np.repeat(eval_steps, n_tasks)
    columns = _identity(sweep, run_key(benchmark, arch, treatment, seed), seed, steps, steps_per_epoch)
    success = np.clip(scores * 1.05, 0.0, 1.0)
    columns.update({
        "task": pa.array(list(tasks) * n_steps, pa.string()),
        "task_index": pa.array(np.tile(np.arange(n_tasks, dtype=np.int32), n_steps)),
        "episodes": pa.array(np.full(n_steps * n_tasks, 25, dtype=np.int32)),
        "return_mean": pa.array(returns.reshape(-1)),
        "return_std": pa.array(np.full(n_steps * n_tasks, 0.1)),
        # as if every success took 20 steps: 0.99^19 of the undiscounted return
        "discounted_return_mean": pa.array(returns.reshape(-1) * DISCOUNT_OF_A_SUCCESS),
        "normalised_return_mean": pa.array(scores.reshape(-1)),
        "success_rate": pa.array(success.reshape(-1)),
        "episode_length_mean": pa.array((1.0 - success.reshape(-1)) * 100.0 + 10.0),
    })
    return pa.table(columns, schema=EVALS_SCHEMA)


def _train_table(sweep, benchmark, arch, treatment, seed, last, total_steps, eval_interval,
                 steps_per_epoch) -> pa.Table:
    steps = np.arange(steps_per_epoch, last + 1, steps_per_epoch, dtype=np.int64)
    n = len(steps)
    n_tasks = get_benchmark(benchmark).n_tasks
    rng = _rng("train", benchmark, arch, treatment, seed)
    t = steps / total_steps
    final = FINAL_SPARSITY.get(treatment, 0.0)
    if treatment.startswith("gmp"):
        start, end = 0.05, 0.80
        frac = np.clip((t - start) / (end - start), 0.0, 1.0)
        sparsity = final * (1.0 - (1.0 - frac) ** 3)
    else:
        sparsity = np.full(n, final)
    shift = TREATMENT_SHIFT.get(treatment, 0.0)
    at_eval = (steps % eval_interval) == 0
    metrics = {name: np.zeros(n) for name in TRAIN_METRIC_COLUMNS}
    metrics.update({
        "losses/policy_loss": rng.normal(0.0, 0.01, n),
        "losses/value_loss": 0.1 * np.exp(-3 * t) + rng.uniform(0, 0.01, n),
        "losses/entropy": 1.9 * np.exp(-2 * t),
        "losses/approx_kl": rng.uniform(0.0, 0.02, n),
        "losses/clip_fraction": rng.uniform(0.0, 0.2, n),
        "losses/explained_variance": np.clip(t + rng.normal(0, 0.05, n), -1, 1),
        "charts/train_return_mean": np.clip(t, 0, 1) * 0.6,
        "charts/train_episodes": rng.integers(10, 50, n).astype(float),
        "charts/env_steps": (steps * n_tasks).astype(float),
        "sparsity/actor": sparsity,
        "sparsity/critic": sparsity,
        "plasticity/dormant_actor": np.clip(0.05 + 0.3 * t * (1 - 4 * shift) + rng.normal(0, 0.01, n), 0, 1),
        "plasticity/dormant_critic": np.clip(0.03 + 0.2 * t + rng.normal(0, 0.01, n), 0, 1),
        "plasticity/srank_actor": 60 - 25 * t * (1 - 5 * shift) + rng.normal(0, 1, n),
        "plasticity/srank_critic": 55 - 20 * t + rng.normal(0, 1, n),
        "plasticity/fisher_trace": 5 * np.exp(-((t - 0.2) ** 2) / 0.02) * (1 - 3 * shift) + 1 + rng.uniform(0, 0.2, n),
        "interventions/prune_events": np.floor(steps / 500.0) * (final > 0),
        "interventions/neurons_recycled": np.floor(steps / 5000.0) * 3.0 * (treatment == "redo"),
        "interventions/resets_done": ((steps >= 60_000).astype(float) + (steps >= 120_000)) * (treatment == "reset"),
        "interventions/set_rewires": np.floor(steps / 2000.0) * (treatment == "set95"),
        "perf/wall_seconds": steps / 500.0,
        "perf/env_seconds": steps / 700.0,
        "perf/env_fraction": np.full(n, 500.0 / 700.0),
        "perf/steps_per_second": np.full(n, 500.0),
    })
    columns = _identity(sweep, run_key(benchmark, arch, treatment, seed), seed, steps, steps_per_epoch)
    for name in TRAIN_METRIC_COLUMNS:
        values = np.asarray(metrics[name], dtype=np.float64)
        if name.startswith("plasticity/"):
            columns[name] = pa.array(values, mask=~at_eval)
        else:
            columns[name] = pa.array(values)
    return pa.table(columns, schema=TRAIN_SCHEMA)


def _write(base: Path, table: pa.Table, benchmark: str, arch: str, treatment: str, key: str,
           segment_steps: int | None) -> list[Path]:
    folder = base / f"benchmark={benchmark}" / f"arch={arch}" / f"treatment={treatment}"
    folder.mkdir(parents=True, exist_ok=True)
    if table.num_rows == 0:
        return []
    if segment_steps is None:
        path = folder / f"{key}.parquet"
        pq.write_table(table, path)
        return [path]
    steps = table["step"].to_numpy()
    segment = np.maximum(steps - 1, 0) // segment_steps  # step 0 rides with the first segment
    paths = []
    for index in np.unique(segment):
        rows = np.flatnonzero(segment == index)
        part = table.take(pa.array(rows))
        first, last = int(steps[rows].min()), int(steps[rows].max())
        path = folder / f"{key}__{first}-{last}.parquet"
        pq.write_table(part, path)
        paths.append(path)
    return paths
