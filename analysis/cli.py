"""The ``analyze`` command: ``mtrl analyze RESULTS_DIR [--out DIR] [--reps N] [--at-step S]``.

:func:`mtrl` is the whole ``mtrl`` command (the console script): the orchestrator's commands
with this one added. Wire ``analyze`` into another argparse CLI with :func:`register`::

    from analysis.cli import register as register_analyze
    register_analyze(subparsers)          # adds "analyze", sets args.func
    ...
    args = parser.parse_args(argv)
    return args.func(args)                # 0 on success, 2 on bad input

``python -m analysis RESULTS_DIR ...`` runs the same command on its own (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from analysis.aggregate import DEFAULT_BAND_REPS, DEFAULT_REPS
from mtrl_plasticity.errors import AnalysisError, UserError, clip
from orchestrator.cli import COMMANDS, MAX_MESSAGE, OneLineArgumentParser
from orchestrator.cli import main as cli_main
from orchestrator.storage import is_uri

DESCRIPTION = ("Turn a results folder into the paper's Table 1 (IQM with 95% stratified bootstrap CIs), "
               "learning curves, plasticity curves, performance profiles and an index.md report.")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum`` (argparse then exits 2 naming the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``analyze`` arguments to ``parser``."""
    parser.add_argument("results_dir", metavar="RESULTS_DIR",
                        help="results folder holding metrics/evals (and metrics/train, sweep.yaml)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: RESULTS_DIR/analysis)")
    parser.add_argument("--reps", metavar="N", type=_count(1), default=DEFAULT_REPS,
                        help=f"bootstrap repetitions for Table 1 and P(improvement) (default {DEFAULT_REPS})")
    parser.add_argument("--band-reps", metavar="N", type=_count(1), default=DEFAULT_BAND_REPS,
                        help=f"bootstrap repetitions for curve bands and profiles (default {DEFAULT_BAND_REPS})")
    parser.add_argument("--at-step", metavar="S", type=_count(0), default=None,
                        help="take final scores at step S instead of each benchmark's last evaluation step")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="score runs that stopped before the table's step at their own last evaluation "
                             "(marked in Table 1) instead of leaving them out")
    parser.add_argument("--score", choices=("return", "discounted"), default="return",
                        help="what is normalised and aggregated: the undiscounted evaluation return (the paper's, "
                             "default) or the return discounted with each trial's gamma")
    parser.add_argument("--include-outside-grid", action="store_true",
                        help="also score runs that the sweep's latest grid leaves out (values a grown sweep "
                             "dropped); by default they are left out and listed under Coverage")
    parser.add_argument("--seed", type=_count(0), default=0, help="bootstrap seed, >= 0 (default 0)")
    parser.add_argument("--jobs", metavar="N", type=_count(1), default=None,
                        help="worker processes for the bootstraps (default: one per CPU, at most 8; "
                             "results do not depend on it)")
    parser.add_argument("--paper", dest="paper_compare", action=argparse.BooleanOptionalAction, default=None,
                        help="show the draft paper's Table 1 beside ours (default: when the sweep follows "
                             "the draft protocol)")
    parser.add_argument("--no-figures", dest="figures", action="store_false",
                        help="write the tables and index.md only")
    parser.add_argument("--quiet", action="store_true", help="print only the path of index.md")
    return parser


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``analyze`` sub-command to an argparse ``subparsers`` object; sets ``func=run``."""
    parser = subparsers.add_parser("analyze", help="tables, figures and a report from a results folder",
                                   description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``analyze`` for parsed arguments; print a summary; return the exit status (2 on bad input)."""
    # pandas, rliable and matplotlib load here, when the command runs: never for --help or other commands.
    from analysis.pipeline import STAGES, compute
    from analysis.report import output_folder, write_outputs
    from analysis.summary import print_summary

    console = None if args.quiet else Console(log_path=False)
    try:
        out_dir = output_folder(args.results_dir, args.out)
        if not is_uri(str(out_dir)):
            check_out_dir(out_dir)
        with stage_bar(console, STAGES + 1) as stage:  # the pipeline's stages, then writing the outputs
            result = compute(args.results_dir, reps=args.reps, at_step=args.at_step, seed=args.seed,
                             band_reps=args.band_reps, paper_compare=args.paper_compare, progress=stage,
                             jobs=args.jobs, include_unfinished=args.include_unfinished, score=args.score,
                             include_outside_grid=args.include_outside_grid)
            if stage is not None:
                stage("writing tables" + (" and figures" if args.figures else ""))
            written = write_outputs(result, out_dir, figures=args.figures)
    except UserError as exc:
        print(f"mtrl analyze: error: {clip(' '.join(str(exc).split()), MAX_MESSAGE)}", file=sys.stderr)
        return 2
    if console is not None:
        print_summary(result, written, console)
    else:
        print(written.index)
    return 0


@contextlib.contextmanager
def stage_bar(console: Console | None, stages: int) -> Iterator[Callable[[str], None] | None]:
    """A progress bar over ``stages`` named stages: yields ``stage(message)``, called as each one begins
    (``None`` without a console). On a terminal the bar is redrawn in place; in a log it prints each stage."""
    if console is None:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("[bold]analyze[/] {task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("", total=stages)
        begun = [0]

        def stage(message: str) -> None:
            if begun[0]:
                progress.advance(bar)
            begun[0] += 1
            progress.update(bar, description=message)
            if not console.is_terminal:
                console.log(f"[{begun[0]}/{stages}] {message}")

        yield stage
        progress.update(bar, completed=stages, description="done")


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before any work, an output folder that is a file, lies under a file, or cannot be written."""
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies under the file {existing}"
        raise AnalysisError(f"--out {out_dir} {where}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AnalysisError(f"--out {out_dir}: {existing} is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis RESULTS_DIR [--out DIR] [--reps N] [--at-step S]``."""
    parser = OneLineArgumentParser(prog="python -m analysis", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def mtrl(argv: list[str] | None = None) -> int:
    """The whole ``mtrl`` command (its console script): ``trial``, ``run``, ``status`` and ``analyze``.

    The orchestrator's commands and frame (:func:`orchestrator.cli.main`) with ``analyze``
    added here, on the floor above them.
    """
    return cli_main(argv, commands=(*COMMANDS, register))


if __name__ == "__main__":  # `python -m analysis.cli ...`: the whole `mtrl` command, as its console script runs it
    sys.exit(mtrl())
