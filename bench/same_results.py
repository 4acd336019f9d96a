"""Do two versions of the code give the same trial results? Tiny trials of every built-in, compared exactly.

    python bench/same_results.py --base 4ad47f0        # this tree against commit 4ad47f0
    python bench/same_results.py --base HEAD~3 --quick  # fewer trials

For refactors that must not change results: each built-in treatment on each built-in
architecture (plus parametrised forms) runs a short trial (MT3, or a single task for
``single``) under the code of this working tree and under the code of ``--base`` (checked out
into a temporary git worktree), each in its own process with one torch thread. Every
deterministic column of the evals and train rows (all but ``perf/*``) that both versions write
is compared exactly; columns only one of them writes (a schema change) are listed once. The
script prints one line per trial and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRIALS = [("MT3", arch, treatment, {}) for arch in ("mtppo", "moe", "moore")
          for treatment in ("dense", "gmp95", "set95", "redo", "reset", "wd")]
TRIALS += [("DoorKey-6x6-v0", "single", "dense", {}),
           ("MT3", "mtppo", "gmp", {"scope": "erk", "final_sparsity": 0.9}),
           ("MT3", "moe", "set", {"epsilon": 11}),
           ("MT3", "moe", "gmp80", {"prune_task_encoder": True})]
"""(benchmark, arch, treatment, treatment_params). ReDo and Reset get intervals that fall inside the budget."""
QUICK = [t for t in TRIALS if t[1] == "mtppo" or t[2] == "dense"]

BUDGET = {"total_steps": 2000, "steps_per_epoch": 500, "eval_interval_steps": 1000, "checkpoint_interval_steps": 1000,
          "eval_episodes": 2, "plasticity_buffer_size": 2000, "metric_batch_size": 64,
          "reset_episodes_each_epoch": True, "sweep": "same-results"}
INSIDE_BUDGET = {"redo": {"every": 700}, "reset": {"steps": [1000, 1500]}}

RUNNER = r"""
import json, os, sys, tempfile
import torch
torch.set_num_threads(1)
from orchestrator.checkpoint import DirectoryCheckpointer
from orchestrator.config import TrialConfig
from orchestrator import schema
from orchestrator.sink import ParquetSink
from orchestrator.trial import run_trial

out = {}
for benchmark, arch, treatment, params, budget in json.loads(sys.argv[1]):
    config = TrialConfig(benchmark=benchmark, arch=arch, treatment=treatment, treatment_params=params, **budget)
    with tempfile.TemporaryDirectory() as folder:
        sink = ParquetSink.for_config(folder, config)
        run_trial(config, sink, DirectoryCheckpointer(os.path.join(folder, "checkpoints")))
        rows = {}
        for dataset in ("evals", "train"):
            frame = sink.read(dataset).to_pandas()
            frame = frame[schema.deterministic_columns(frame.columns)].astype(object)
            # Python floats through json keep every bit (shortest round-trip repr); NaN becomes null.
            rows[dataset] = {"columns": list(frame.columns),
                             "rows": frame.where(frame.notna(), None).values.tolist()}
    label = f"{config.run_key} {json.dumps(params, sort_keys=True)}"
    out[label] = rows
    print(label, flush=True, file=sys.stderr)
print(json.dumps(out))
"""


def run(code_root: str, trials: list) -> dict:
    env = {**os.environ, "PYTHONPATH": code_root, "HOME": tempfile.mkdtemp(prefix="same-results-home-")}
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(trials)], cwd=code_root, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"trials under {code_root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare this working tree with")
    parser.add_argument("--quick", action="store_true", help="MTPPO with every treatment, dense on every arch")
    args = parser.parse_args()
    chosen = QUICK if args.quick else TRIALS
    trials = [(b, a, t, {**INSIDE_BUDGET.get(t, {}), **p}, BUDGET) for b, a, t, p in chosen]
    with tempfile.TemporaryDirectory(prefix="same-results-") as tmp:
        base_tree = os.path.join(tmp, "base")
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", base_tree, args.base], check=True,
                       capture_output=True)
        try:
            print(f"running {len(trials)} tiny trials under {args.base} and under this tree", flush=True)
            base, here = run(base_tree, trials), run(REPO, trials)
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", base_tree], capture_output=True)
    different = 0
    only: dict[str, set[str]] = {"base": set(), "this tree": set()}
    for label in base:
        if label not in here:
            different += 1
            print(f"MISSING    {label} (not run under this tree)")
            continue
        differing = []
        for dataset in ("evals", "train"):
            a, b = base[label][dataset], here[label][dataset]
            common = [c for c in a["columns"] if c in b["columns"]]
            only["base"] |= {f"{dataset}.{c}" for c in a["columns"] if c not in common}
            only["this tree"] |= {f"{dataset}.{c}" for c in b["columns"] if c not in common}
            if len(a["rows"]) != len(b["rows"]):
                differing.append(f"{dataset} rows {len(a['rows'])} != {len(b['rows'])}")
                continue
            differing += [f"{dataset}.{c}" for c in common if _project(a, [c]) != _project(b, [c])]
        different += bool(differing)
        verdict = f"DIFFERENT  {label}: {', '.join(differing)}" if differing else f"identical  {label}"
        print(verdict)
    for side, columns in only.items():
        if columns:
            print(f"columns only {side} writes (not compared): {', '.join(sorted(columns))}")
    print(f"{len(base) - different} of {len(base)} trials identical in every deterministic column both write")
    return 1 if different else 0


def _project(rows: dict, columns: list[str]) -> list[list]:
    index = [rows["columns"].index(c) for c in columns]
    return [[row[i] for i in index] for row in rows["rows"]]


if __name__ == "__main__":
    sys.exit(main())
