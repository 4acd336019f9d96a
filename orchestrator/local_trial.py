"""`mtrl trial`: one trial in this process, no Ray, into an ad-hoc results folder.

Layout (the names: :mod:`mtrl_plasticity.results`): ``<results>/mtrl-results.json``,
``<results>/trials/<run_key>/config.json``, ``<results>/trials/<run_key>/checkpoints/step-*.pt``
and the Parquet datasets under ``<results>/metrics/``.
"""

from __future__ import annotations

import argparse
import json
import posixpath
from typing import TYPE_CHECKING

import pyarrow.fs as pafs
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mtrl_plasticity.architectures import ARCHITECTURES
from mtrl_plasticity.benchmarks import benchmark_names
from mtrl_plasticity.errors import ResultsDirError, UsageError, brief, validation_message
from mtrl_plasticity.plugins import load_plugins
from mtrl_plasticity.results import CHECKPOINTS_DIR, TRIAL_CONFIG_FILE, TRIALS_DIR
from mtrl_plasticity.treatments import TREATMENTS
from orchestrator.checkpoint import DirectoryCheckpointer, Metrics, warn
from orchestrator.config import TrialConfig
from orchestrator.preflight import check_plugin_parts
from orchestrator.sink import ParquetSink
from orchestrator.storage import claim, file_type, join, read_bytes, resolve_filesystem, write_bytes_atomically
from orchestrator.trackers import (
    DEFAULT_TRACKERS,
    TRACKERS,
    TrackerRun,
    TrackerSet,
    check_trackers,
    open_trackers,
    tracker_names,
)
from orchestrator.yaml_input import parse_assignments

if TYPE_CHECKING:
    from orchestrator.trial import TrialResult

MAX_CONFIG_BYTES = 1 << 16
"""Largest ``config.json`` read back (the tool writes a few kilobytes)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("trial", help="run one trial in this process (no Ray)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", required=True, help=f"one of {', '.join(benchmark_names())}")
    p.add_argument("--arch", required=True, help=f"one of {', '.join(ARCHITECTURES.names())}")
    p.add_argument("--treatment", default="dense",
                   help=f"one of {', '.join(TREATMENTS.names())} (default dense)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", required=True, help="results folder (created if missing)")
    p.add_argument("--total-steps", type=int, help="lock-step training steps (default 200000)")
    p.add_argument("--steps-per-epoch", type=int, help="steps between PPO updates (default 2000)")
    p.add_argument("--eval-interval", type=int, help="evaluate every this many steps (default 2000)")
    p.add_argument("--eval-episodes", type=int, help="evaluation episodes per task (default 25)")
    p.add_argument("--checkpoint-interval", type=int, help="checkpoint every this many steps")
    p.add_argument("--treatment-param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a treatment parameter, e.g. tau=0.001 (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any TrialConfig field, e.g. gamma=0.95 (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: it registers treatments, architectures or benchmarks "
                   "(repeatable; docs/extending.md)")
    p.add_argument("--tracker", action="append", default=None, metavar="NAME",
                   help=f"write live curves to NAME: {', '.join(TRACKERS)} or none (repeatable; default "
                   f"{', '.join(DEFAULT_TRACKERS)}; event files under RESULTS/tensorboard/)")
    p.add_argument("--resume", action="store_true", help="continue this trial from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def build_config(args: argparse.Namespace) -> TrialConfig:
    load_plugins(getattr(args, "plugin", []))
    fields = {"benchmark": args.benchmark, "arch": args.arch, "treatment": args.treatment, "seed": args.seed}
    flag_fields = {"total_steps": args.total_steps, "steps_per_epoch": args.steps_per_epoch,
                   "eval_interval_steps": args.eval_interval, "eval_episodes": args.eval_episodes,
                   "checkpoint_interval_steps": args.checkpoint_interval}
    fields.update({k: v for k, v in flag_fields.items() if v is not None})
    fields.update(parse_assignments(args.set, "--set"))
    if args.treatment_param:
        fields["treatment_params"] = parse_assignments(args.treatment_param, "--treatment-param")
    budget = fields.get("total_steps", TrialConfig.model_fields["total_steps"].default)
    # Shrinking the budget alone should just work: intervals default to divisors of it.
    for name in ("eval_interval_steps", "checkpoint_interval_steps", "steps_per_epoch"):
        default = TrialConfig.model_fields[name].default
        if name not in fields and isinstance(budget, int) and budget > 0 and budget % default:
            fields[name] = budget if name != "steps_per_epoch" else min(default, budget)
    try:
        config = TrialConfig(**fields)
    except ValidationError as exc:
        raise UsageError(validation_message(exc)) from None
    check_plugin_parts([config])
    if config.device == "cuda":
        import torch  # only to ask for CUDA: `mtrl trial --help` and bad input stay torch-free

        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' but this machine has no CUDA device; use device=auto or cpu")
    return config


def prepare_results(results: str, config: TrialConfig, resume: bool) -> str:
    """Check ``results`` may hold this trial (claiming it for a new one); returns the trial's own folder."""
    if file_type(results) == pafs.FileType.File:
        raise UsageError(f"--results {results} is a file, not a folder")
    claim(results, layout="trial")
    fs, root = resolve_filesystem(results)
    trials = fs.get_file_info(pafs.FileSelector(posixpath.join(root, TRIALS_DIR), allow_not_found=True))
    others = sorted({info.base_name for info in trials} - {config.run_key})
    if others:
        raise ResultsDirError(
            f"{results} holds another trial's data ({others[0]}); use a separate --results folder per trial")
    trial_dir = join(results, TRIALS_DIR, config.run_key)
    config_path = join(trial_dir, TRIAL_CONFIG_FILE)
    fs, path = resolve_filesystem(config_path)
    data = read_bytes(fs, path, MAX_CONFIG_BYTES)
    if data is None:
        write_bytes_atomically(fs, path, config.to_json().encode())
        return trial_dir
    try:
        stored = json.loads(data.decode("utf-8"))
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        # As a config: one written before a field existed reads with its default.
        stored = json.loads(TrialConfig.model_validate(stored).to_json())
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        raise ResultsDirError(f"{config_path} is not the JSON this tool writes; is this a results folder "
                              f"of this tool?") from None
    mine = json.loads(config.to_json())
    diff = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
    if diff:
        shown = ", ".join(f"{k}: {brief(stored.get(k))} -> {brief(mine.get(k))}" for k in diff[:4])
        raise ResultsDirError(f"{results} holds {config.run_key} with a different configuration ({shown})")
    if not resume:
        raise ResultsDirError(f"{results} already holds {config.run_key}; pass --resume to continue it")
    return trial_dir


def main(args: argparse.Namespace) -> int:
    config = build_config(args)
    trackers = tracker_names(args.tracker, "--tracker") if args.tracker is not None else list(DEFAULT_TRACKERS)
    check_trackers(trackers)  # a missing package or login: one line, before anything starts
    trial_dir = prepare_results(args.results, config, args.resume)
    checkpoints = join(trial_dir, CHECKPOINTS_DIR)
    sink = ParquetSink.for_config(args.results, config)
    tracked = open_trackers(trackers, TrackerRun(config, args.results), warn=warn)
    with DirectoryCheckpointer(checkpoints).exclusive(f"trial {config.run_key} in {args.results}"):
        # Partial files of a write a full disk or a kill cut short: never whole, so never kept.
        sink.remove_temporaries()
        DirectoryCheckpointer(checkpoints).remove_temporaries()
        if args.quiet:
            result = _train(config, sink, DirectoryCheckpointer(checkpoints), tracked)
        else:
            result = _train_with_progress(config, sink, checkpoints, tracked)
    resumed = f" (resumed from step {result.resumed_from_step})" if result.resumed_from_step is not None else ""
    print(f"{config.run_key}: {result.steps} steps, {result.epochs} epochs{resumed}; rows in {args.results}/metrics")
    return 0


def _train(config: TrialConfig, sink: ParquetSink, checkpointer: DirectoryCheckpointer,
           trackers: TrackerSet) -> TrialResult:
    # Imported here: torch and the trial worker load only once the input is checked, not for --help.
    from orchestrator.trial import run_trial

    return run_trial(config, sink, checkpointer, trackers)


def _train_with_progress(config: TrialConfig, sink: ParquetSink, checkpoints: str,
                         trackers: TrackerSet) -> TrialResult:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("steps  return {task.fields[ret]}"), TimeElapsedColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task(config.run_key, total=config.total_steps, ret="-")
        progress.update(bar, completed=DirectoryCheckpointer(checkpoints).latest_step() or 0)

        def on_report(metrics: Metrics) -> None:
            ret = metrics.get("eval/normalised_return")
            update = {"completed": metrics["step"]}
            if ret == ret:  # not NaN
                update["ret"] = f"{ret:.3f}"
            progress.update(bar, **update)

        return _train(config, sink, DirectoryCheckpointer(checkpoints, on_report=on_report), trackers)
