"""Time the analysis stage on a full-size synthetic sweep.

    python bench/bench_analysis.py            # 2,100 trials x 101 evaluation points x 3/5/7 tasks
    python bench/bench_analysis.py --small    # a quick run (MT3 only, 5 seeds, 21 points)

The sweep is the paper's grid (3 benchmarks x 3 architectures x 7 treatments x 30 seeds = 1,890
multi-task trials, plus 7 tasks x 30 seeds of single-task PPO = 2,100 trials; 200k steps, an
evaluation every 2,000) written by ``analysis.synthetic`` in the trials' Parquet layout, one
compacted file per run (``--segments`` writes 20 segments per run instead). Generation is not
timed. Timed: loading (evals and train), building the score matrices, and every aggregate of
``mtrl analyze`` with the default bootstrap repetitions; ``--figures`` also times writing the
tables and figures. The target is load + aggregate under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # testkit: the synthetic sweep writer

from analysis.aggregate import DEFAULT_BAND_REPS, DEFAULT_REPS, default_jobs  # noqa: E402
from testkit.synthetic import write_synthetic_sweep  # noqa: E402

TARGET_SECONDS = 60.0
FULL = dict(benchmarks=("MT3", "MT5", "MT7"), archs=("mtppo", "moe", "moore"),
            treatments=("dense", "gmp80", "gmp95", "gmp99", "redo", "reset", "wd"), seeds=range(30),
            total_steps=200_000, eval_interval=2_000)
SMALL = dict(benchmarks=("MT3",), archs=("mtppo", "moe", "moore"), treatments=("dense", "gmp95", "redo"),
             seeds=range(5), total_steps=40_000, eval_interval=2_000)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a quick, small sweep instead of the full grid")
    parser.add_argument("--segments", action="store_true", help="write 20 segments per run instead of one file")
    parser.add_argument("--dir", type=Path, default=None,
                        help="results folder to use (generated there if absent, kept afterwards)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS)
    parser.add_argument("--band-reps", type=int, default=DEFAULT_BAND_REPS)
    parser.add_argument("--jobs", type=int, default=None, help=f"worker processes (default {default_jobs()})")
    parser.add_argument("--figures", action="store_true", help="also time writing every table and figure")
    args = parser.parse_args(argv)

    grid = SMALL if args.small else FULL
    temporary = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="bench_analysis_")) / "results" if temporary else args.dir
    try:
        if not (root / "metrics" / "evals").is_dir():
            start = time.perf_counter()
            sweep = write_synthetic_sweep(root, segment_steps=10_000 if args.segments else None, **grid)
            print(f"generated {len(sweep.run_keys):,} trials, {len(sweep.eval_files):,} eval files "
                  f"in {time.perf_counter() - start:.1f} s (not timed below)", flush=True)

        from analysis.pipeline import compute
        from analysis.report import write_outputs

        wall0, cpu0 = time.perf_counter(), _cpu_seconds()
        result = compute(root, reps=args.reps, band_reps=args.band_reps, jobs=args.jobs)
        wall = time.perf_counter() - wall0
        cpu = _cpu_seconds() - cpu0

        jobs = args.jobs if args.jobs is not None else default_jobs()
        print(f"\nsweep: {result.coverage.n_runs:,} runs, {result.coverage.n_rows:,} evaluation rows, "
              f"{result.n_eval_points} evaluation steps, {len(result.multi_cells)} multi-task cells")
        print(f"settings: reps={args.reps}, band_reps={args.band_reps}, jobs={jobs}, cpus={os.cpu_count()}")
        for name, seconds in result.timings.items():
            print(f"  {name:<14} {seconds:7.2f} s")
        print(f"load + aggregate: {wall:.1f} s wall, {cpu:.1f} s CPU (incl. workers); "
              f"target {TARGET_SECONDS:.0f} s -> {wall / TARGET_SECONDS:.2f} of the budget")
        try:
            load1, _, _ = os.getloadavg()
            print(f"(1-minute load average now {load1:.1f} on {os.cpu_count()} CPUs: other processes slow the "
                  f"wall time)")
        except OSError:
            pass
        if args.figures:
            out = Path(tempfile.mkdtemp(prefix="bench_analysis_out_"))
            start = time.perf_counter()
            written = write_outputs(result, out)
            print(f"tables + figures: {time.perf_counter() - start:.1f} s "
                  f"({sum(1 for o in written.outputs if o.kind == 'figure')} figures)")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if temporary:
            shutil.rmtree(root.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
