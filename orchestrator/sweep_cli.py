"""`mtrl run` (a sweep on Ray Tune, resumable) and `mtrl status` (progress of a sweep folder).

``mtrl run SWEEP.yaml`` validates the whole grid, joins the cluster named by ``--address`` /
``RAY_ADDRESS`` if any (``orchestrator.ray_connect``: bounded in time, before anything is written),
checks the storage, claims the sweep folder ``<storage>/<name>``, then starts a local Ray
instance if it joined no cluster and runs every trial under Tune. Running the same command
again resumes: the sweep folder (its Parquet rows and checkpoints, checked first) decides
which trials are complete; a fresh Tuner runs the others, each from its last good
checkpoint, so a rerun may use other resources or another cluster. A sweep file with a
larger grid grows the folder: only the new trials run (``orchestrator.sweep_history``). Exit codes: 0 all trials
done, 1 some trials failed (rerun to retry them), 2 bad input (nothing started), 130
interrupted (rerun to resume). SIGTERM (SLURM's preemption and time-limit signal,
``scancel``, ``docker stop``) stops the sweep as Ctrl-C does, from the start of the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from typing import Any

from rich.table import Table

from mtrl_plasticity.errors import SpecError, UserError, brief, printable, write_failure_in
from mtrl_plasticity.plugins import load_entry_points, runtime_env_for
from mtrl_plasticity.results import HISTORY_DIR, Cell
from orchestrator import estimate
from orchestrator.config import TrialConfig
from orchestrator.interrupts import sigterm_as_ctrl_c
from orchestrator.preflight import check_plugin_parts
from orchestrator.progress import (
    TrialWork,
    format_duration,
    makespan,
    model_s_per_step,
    progress_json,
    render_trials,
    slots_for,
    status_cells,
    status_line,
    sweep_progress,
)
from orchestrator.ray_connect import ray_connected
from orchestrator.resume_check import check_sweep
from orchestrator.sink import ParquetSink
from orchestrator.spec import SweepSpec, cells, expand, labels_of, load_spec, parse_assignments, trials_by_cell
from orchestrator.status import read_status, render_status
from orchestrator.storage import is_uri, read_marker
from orchestrator.sweep_folder import SweepFolder, check_writable, claimed, inspect
from orchestrator.sweep_history import Growth
from orchestrator.sweep_progress import make_console
from orchestrator.trackers import DEFAULT_TRACKERS, TRACKERS, check_trackers, tracker_names
from orchestrator.trial_hook import trial_hook_from_environment
from orchestrator.trial_logs import last_line, trial_log_path

EXIT_OK, EXIT_FAILED_TRIALS, EXIT_INTERRUPTED = 0, 1, 130


def register(subparsers) -> None:
    run = subparsers.add_parser("run", help="run (or resume) a sweep on Ray Tune",
                                description=__doc__.splitlines()[0])
    run.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file, e.g. sweeps/smoke.yaml")
    run.add_argument("--storage", help="where the sweep folder goes: a path, NFS mount or s3://bucket/prefix "
                     "(default: the file's storage)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a sweep file entry by dotted path, e.g. defaults.total_steps=4000 or "
                     "seeds=2 (repeatable; a resume needs the same overrides, a grown grid may add values)")
    run.add_argument("--name", help="sweep name (and folder) instead of the file's: starts a new sweep")
    run.add_argument("--dry-run", action="store_true",
                     help="print trials per cell, an estimate of core-hours and what the run would add to an "
                     "existing sweep folder (or why it would refuse); start nothing")
    run.add_argument("--address", default=None,
                     help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)")
    run.add_argument("--num-cpus", type=int, default=None,
                     help="CPUs of the local Ray instance (default: all cores; ignored on a cluster)")
    run.add_argument("--tracker", action="append", default=None, metavar="NAME",
                     help=f"write live curves to NAME: {', '.join(TRACKERS)} or none (repeatable; replaces the "
                     f"sweep file's trackers, default {', '.join(DEFAULT_TRACKERS)})")
    run.add_argument("--cpus", type=int, default=None, metavar="N",
                     help="with --dry-run: also estimate the wall-clock time on a cluster of N cores")
    run.set_defaults(func=run_main)

    status = subparsers.add_parser("status", help="trials done/running/failed/pending, steps, throughput and time "
                                   "left per cell of a sweep folder")
    status.add_argument("results", metavar="RESULTS_DIR", help="a sweep folder, e.g. results/smoke")
    status.add_argument("--trials", action="store_true",
                        help="also list each running trial: step, last evaluation, steps/s, last error")
    status.add_argument("--json", action="store_true",
                        help="print the status as JSON (fields: docs/orchestration.md, 'Watching a sweep')")
    status.set_defaults(func=status_main)


# --- mtrl run ---------------------------------------------------------------------------
def load(args: argparse.Namespace) -> SweepSpec:
    """The sweep file with its ``--set`` and ``--name``; unlabelled treatment entries take the labels
    the sweep folder already gives the same treatment and parameters (``orchestrator.spec.labels_of``)."""
    assignments = parse_assignments(args.set)
    if args.name is not None:
        assignments["name"] = args.name
    if getattr(args, "tracker", None) is not None:
        assignments["trackers"] = tracker_names(args.tracker, "--tracker")
    spec = load_spec(args.sweep, assignments)
    folder = SweepFolder.for_spec(spec, args.storage or spec.storage)
    try:
        stored = folder.stored_spec() if read_marker(folder.root) is not None else None
    except (UserError, OSError):
        stored = None  # claiming the folder refuses it, with its own message
    if stored is not None and stored.name == spec.name:
        spec = load_spec(args.sweep, assignments, known_labels=labels_of(stored))
    return spec


def run_main(args: argparse.Namespace) -> int:
    spec = load(args)
    try:
        trials = expand(spec)  # every TrialConfig validator runs here, before anything starts
    except SpecError as exc:
        raise SpecError(f"{args.sweep}: {exc}") from None
    try:
        check_plugin_parts(trials)  # plugin networks and environments, built once each
    except UserError as exc:
        raise SpecError(f"{args.sweep}: {exc}") from None
    storage = args.storage or spec.storage
    folder = SweepFolder.for_spec(spec, storage)
    if args.dry_run:
        print_plan(spec, trials, folder, local_cpus(args.num_cpus), args.cpus)
        return EXIT_OK
    if args.cpus is not None:
        raise SpecError("--cpus is for --dry-run (the cluster's size of a wall-clock estimate)")
    check_trackers(spec.trackers)  # a missing package or login: one line, before anything starts
    hook = trial_hook_from_environment()
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        check_local_resources(spec, local_cpus(args.num_cpus), local_gpus(spec))
    if address is not None and not is_uri(storage) and not os.path.isabs(storage):
        raise SpecError(f"storage {brief(storage)} is relative: on a cluster give --storage as an absolute path on "
                        f"storage every node mounts (NFS) or an s3:// URI")
    runtime_env = plugin_runtime_env(spec)
    with contextlib.ExitStack() as stack:
        if address is not None:  # a cluster is reached (or refused in one line) before the storage is written
            stack.enter_context(ray_connected(address, args.num_cpus, runtime_env))
        check_writable(storage)
        claim = stack.enter_context(claimed(folder, spec, trials))
        if claim.growth is not None and (claim.growth.added or claim.growth.outside):
            print(growth_line(spec, claim.growth, claim.version), flush=True)
        remaining, starts = remaining_trials(trials, folder)
        if not remaining:
            print(f"sweep {spec.name}: all {len(trials)} trials done; rows in {folder.root}/metrics")
            return EXIT_OK
        if address is None:  # a local instance only when there is work: shut down before the lock is released
            stack.enter_context(ray_connected(None, args.num_cpus, runtime_env))
        import ray  # imported by ray_connected, after the settings it reads once; never for bad input

        if address is None:  # what Ray itself found (a container may have fewer CPUs than the host)
            found = ray.cluster_resources()
            check_local_resources(spec, found.get("CPU", 0), found.get("GPU", 0))
        with sigterm_as_ctrl_c():  # (`mtrl` installs it first thing; here for callers of run_main)
            return run_tune(spec, trials, remaining, folder, hook, resuming=claim.existed, starts=starts)


def growth_line(spec: SweepSpec, growth: Growth, version: str | None) -> str:
    """``sweep x: the grid grows by 4 trials (...)``: what a grown or shrunk spec did to the folder."""
    parts = []
    if growth.added:
        parts.append(f"the grid grows by {len(growth.added):,} trial(s)")
    if growth.outside:
        parts.append(f"{len(growth.outside):,} trial(s) with results are now outside the grid (kept; `mtrl status` "
                     f"lists them, `mtrl analyze` leaves them out unless --include-outside-grid)")
    recorded = f"; recorded as {HISTORY_DIR}/{version}" if version else ""
    return f"sweep {spec.name}: {'; '.join(parts)}{recorded}"


def local_cpus(num_cpus: int | None) -> float:
    """CPUs a local Ray instance gets: ``--num-cpus``, else the cores this process may use."""
    if num_cpus is not None:
        if num_cpus < 1:
            raise SpecError(f"--num-cpus must be >= 1, got {num_cpus}")
        return num_cpus
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_gpus(spec: SweepSpec) -> float:
    """GPUs a local Ray instance sees (torch is imported only when the spec asks for GPUs)."""
    if not spec.resources.gpu:
        return 0
    import torch  # only for a sweep that asks for GPUs

    return torch.cuda.device_count()


def check_local_resources(spec: SweepSpec, cpus: float, gpus: float) -> None:
    """Refuse a trial that a local Ray instance can never place (Tune would wait for it forever).

    On a cluster (``--address``) nothing is refused: an autoscaler may add nodes, and until one
    fits, Ray prints that it cannot fulfil the request and the trial waits.
    """
    wanted = spec.resources
    if wanted.cpu > cpus:
        raise SpecError(f"resources.cpu is {wanted.cpu:g} per trial but the local Ray instance has {cpus:g} CPUs; "
                        f"lower it, pass --num-cpus, or run on a cluster (--address)")
    if wanted.gpu > gpus:
        raise SpecError(f"resources.gpu is {wanted.gpu:g} per trial but this machine has {gpus:g} GPUs; "
                        f"lower it or run on a cluster with GPUs (--address)")


def remaining_trials(trials: list[TrialConfig], folder: SweepFolder) -> tuple[list[TrialConfig], dict[str, int]]:
    """The trials whose files in the sweep folder are not complete, after checking (and repairing) them,
    and the step each of them continues from (0: from scratch).

    One line on stderr per trial whose files were damaged (see ``orchestrator.resume_check``).
    """
    checks = check_sweep(folder.root, trials)
    for check in checks:
        if check.problems:
            print(printable(check.line(folder.root) or ""), file=sys.stderr, flush=True)  # it names files
    remaining = [t for t, check in zip(trials, checks, strict=True) if not check.done]
    return remaining, {check.run_key: check.resume_step or 0 for check in checks if not check.done}


def plugin_runtime_env(spec: SweepSpec) -> dict | None:
    """The Ray ``runtime_env`` that brings the sweep's plugins to every worker (None: nothing to bring)."""
    return runtime_env_for(spec.plugins)


def run_tune(spec: SweepSpec, trials: list[TrialConfig], remaining: list[TrialConfig], folder: SweepFolder,
             hook: str | None, resuming: bool = False, starts: dict[str, int] | None = None) -> int:
    """Run ``remaining`` under a fresh Tuner; ``resuming`` says the sweep folder existed before this run;
    ``starts``: the step each remaining trial continues from (for the live table's steps)."""
    # Ray Tune: imported once a sweep runs, never for --help, --dry-run or bad input.
    from orchestrator.tune_glue import build_tuner
    from orchestrator.tune_progress import ProgressTable

    # Tune's own console output stays off (verbose=0); the progress table replaces it, and
    # the closing summary replaces Tune's advice (rerunning `mtrl run` is how to resume).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A failed attempt is one line from tune_glue.FailureLog; Tune's traceback of it (logged
    # at ERROR) goes to logs/<run_key>.log instead of the console.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    # Short trials checkpoint often; Tune's hint about snapshot frequency is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's loggers are the ones build_tuner passes (tune_glue.result_loggers): no TensorBoard.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    todo = {t.run_key for t in remaining}
    done_before = Counter(Cell.of(t).label() for t in trials if t.run_key not in todo)
    starts = starts or {}
    work = [TrialWork(t.run_key, Cell.of(t).label(), t.total_steps,
                      starts.get(t.run_key, 0) if t.run_key in todo else t.total_steps,
                      model_s_per_step=model_s_per_step(t)) for t in trials]
    progress = ProgressTable(spec.name, [cell.label() for cell in cells(spec)], done_before=done_before, work=work,
                             sweep_root=folder.root,
                             resources=(spec.resources.cpu, spec.resources.gpu, spec.max_concurrent_trials))
    tuner = build_tuner(spec, remaining, folder, callbacks=[progress], hook=hook)
    done = len(trials) - len(remaining)
    print(f"sweep {spec.name}: {'resuming' if done or resuming else 'starting'} {len(trials)} trials in {folder.root}"
          + (f" ({done} done, {len(remaining)} to run)" if done else ""), flush=True)
    grid = tuner.fit()
    return summarise(spec, trials, grid, folder)


def summarise(spec: SweepSpec, trials: list[TrialConfig], grid: Any, folder: SweepFolder) -> int:
    """Final message and exit code: trials count as done when their Parquet is complete."""
    done = sum(ParquetSink.for_config(folder.root, t).is_compacted() for t in trials)
    failed = [r for r in grid if r.error is not None]
    if done == len(trials):
        print(f"sweep {spec.name}: all {done} trials done; rows in {folder.root}/metrics")
        return EXIT_OK
    if failed:
        print(f"sweep {spec.name}: {len(failed)} trial(s) failed after {spec.max_failures} retries:", file=sys.stderr)
        no_room = False
        for result in failed[:10]:
            run_key = result.config["trial"]["run_key"]
            text = str(result.error).strip()
            reason = write_failure_in(text)
            if reason is not None:  # disk full, file too large, quota, permission: nothing lost
                no_room = True
                line = f"could not write its results ({reason}); nothing written before was lost"
            else:
                line = last_line(text)
            print(f"  {run_key}: {line} (log: {trial_log_path(folder.root, run_key)})",
                  file=sys.stderr)
        when = " once there is room" if no_room else ""
        print(f"{done}/{len(trials)} trials done; rerun the same command{when} to retry the failed ones from "
              f"their last checkpoint", file=sys.stderr)
        return EXIT_FAILED_TRIALS
    print(f"sweep {spec.name}: interrupted with {done}/{len(trials)} trials done; the state is saved: "
          f"rerun the same command to resume", file=sys.stderr)
    return EXIT_INTERRUPTED


def print_plan(spec: SweepSpec, trials, folder: SweepFolder, local: float = 1, cluster_cpus: int | None = None) -> None:
    """``--dry-run``: trials per cell, steps, estimated core-hours, and the wall-clock time on ``local``
    CPUs (and on a cluster of ``cluster_cpus`` cores)."""
    by_cell = trials_by_cell(trials)
    table = Table(title=f"sweep {spec.name} ({spec.protocol} protocol): {len(trials):,} trials", title_justify="left")
    table.add_column("cell (benchmark / arch / treatment)", no_wrap=True)
    for name in ("trials", "steps", "eval points", "core-hours"):
        table.add_column(name, justify="right")
    for cell in cells(spec):
        group = by_cell[cell]
        first = group[0]
        table.add_row(cell.label(), f"{len(group):,}", f"{first.total_steps:,}", f"{estimate.eval_points(first):,}",
                      _hours(estimate.core_hours(group)))
    total_hours = estimate.core_hours(trials)
    table.add_section()
    table.add_row("all", f"{len(trials):,}", "", "", _hours(total_hours), style="bold")
    make_console().print(table)
    per_trial = (f"{spec.resources.cpu:g} CPU" + (f" + {spec.resources.gpu:g} GPU" if spec.resources.gpu else ""))
    print(f"{len(trials):,} trials, about {_hours(total_hours)} core-hours ({per_trial} per trial; "
          f"cost model in orchestrator/estimate.py, +-30%)")
    for cpus, where in ((local, "the local CPUs"), *(((cluster_cpus, "a cluster"),) if cluster_cpus else ())):
        slots = slots_for(spec.resources.cpu, 0, cpus, 0, spec.max_concurrent_trials)
        wall = makespan([estimate.trial_core_seconds(t) for t in trials], slots)
        print(f"wall clock on {where} ({cpus:g} cores, {slots:,} trial(s) at once): about {format_duration(wall)}"
              + (" (GPUs not counted)" if spec.resources.gpu else ""))
    if spec.trackers:
        print(f"trackers: {', '.join(spec.trackers)}")
    plugins = [*spec.plugins, *(f"{value} (installed)" for value in load_entry_points())]
    if plugins:
        print(f"plugins: {', '.join(plugins)}")
    print(f"storage: {inspect(folder, spec, trials)}; nothing started (--dry-run)")


def _hours(hours: float) -> str:
    return f"{hours:,.2f}" if hours < 10 else f"{hours:,.0f}"


# --- mtrl status ------------------------------------------------------------------------
def status_main(args: argparse.Namespace) -> int:
    report = read_status(args.results)
    progress = sweep_progress(report)
    if args.json:
        print(json.dumps(progress_json(report, progress), indent=2, sort_keys=False))
        return EXIT_OK
    console = make_console()
    console.print(render_status(report, steps=status_cells(progress), summary=status_line(progress)))
    if args.trials:
        console.print(render_trials(progress))
    return EXIT_OK
