"""The grid a sweep promises: ``sweep.yaml`` expanded by the project's own spec code.

A sweep folder (``mtrl run``) stores its resolved spec as ``sweep.yaml``. Expanding it with
:func:`orchestrator.spec.expand` (which builds and validates every trial's config and starts
nothing) gives the exact cells and seeds the sweep was asked to run, so :func:`analysis.coverage`
can name every missing cell, seed and treatment, including a treatment that failed everywhere
and so left no row. Folders of ad-hoc trials (``mtrl trial``) have no ``sweep.yaml``: their grid
is inferred from the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.coverage import Cell
from analysis.load import PathLike, read_sweep_text


@dataclass(frozen=True)
class Grid:
    """Every cell of a sweep with the seeds it should hold."""

    seeds: dict[Cell, tuple[int, ...]]
    """Cell -> its seeds, in the spec's order (multi-task cells, then single-task baselines)."""
    last_steps: dict[Cell, int]
    """Cell -> its trials' ``total_steps``: the last evaluation step a finished run reaches
    (trials evaluate at step 0 and every ``eval_interval_steps``, which divides it)."""
    source: str = "sweep.yaml"


def grid_from_yaml(text: str, source: str = "sweep.yaml") -> Grid:
    """Expand a sweep file's text into its :class:`Grid`.

    Raises:
        ValueError: (``orchestrator.spec.SpecError``) the text is not a valid sweep spec.
    """
    from orchestrator.spec import expand, parse_yaml, validate_spec

    spec = validate_spec(parse_yaml(text), source)
    seeds: dict[Cell, list[int]] = {}
    last_steps: dict[Cell, int] = {}
    for trial in expand(spec):
        cell = Cell(trial.benchmark, trial.arch, trial.treatment)
        seeds.setdefault(cell, []).append(int(trial.seed))
        last_steps[cell] = max(last_steps.get(cell, 0), int(trial.total_steps))
    return Grid(seeds={cell: tuple(values) for cell, values in seeds.items()}, last_steps=last_steps, source=source)


def read_sweep_grid(results_dir: PathLike) -> tuple[Grid | None, str | None]:
    """``(grid, problem)`` of a results folder's ``sweep.yaml``.

    ``(None, None)`` without a ``sweep.yaml`` (ad-hoc trials); ``(None, reason)`` when it exists
    but is not a valid sweep spec, so the caller can say why it fell back to inference.
    """
    text = read_sweep_text(results_dir)
    if text is None:
        return None, None
    import yaml

    try:
        return grid_from_yaml(text), None
    except (ValueError, yaml.YAMLError) as exc:  # SpecError, or malformed YAML
        return None, " ".join(str(exc).split())
