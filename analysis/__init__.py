"""Analysis of sweep results: Parquet in, the paper's tables and figures out.

Notebook use::

    import analysis
    evals = analysis.load_evals("results/paper", filters=[("arch", "==", "moe")])
    finals = analysis.final_scores(evals)                 # {Cell: ScoreMatrix [runs, tasks]}
    table = analysis.iqm_with_ci({c: m.scores for c, m in finals.items()}, reps=2000, seed=0)
    analysis.analyze("results/paper", out_dir="results/paper/analysis")   # everything, to files

Command line: ``mtrl analyze RESULTS_DIR [--out DIR] [--reps N] [--at-step S]`` (or
``python -m analysis ...``). See ``docs/analysis.md``.
"""

# Imports are lazy (PEP 562): `mtrl` and `import analysis` stay fast, and matplotlib,
# rliable and pandas load only when a name that needs them is first used.
# The paper's names are registered first, for every module of the analysis (display names,
# the tasks' normalisation); `coverage` is imported eagerly: it is also the name of its
# submodule, which the import system would otherwise bind over the function the first time
# the submodule loads.
import importlib

from analysis.coverage import Coverage, coverage
from mtrl_plasticity.results import Cell
from orchestrator import registered  # noqa: F401  (the paper's treatments, architectures and tasks)

_EXPORTS = {
    "DEFAULT_BAND_REPS": "analysis.aggregate",
    "DEFAULT_REPS": "analysis.aggregate",
    "Band": "analysis.aggregate",
    "Interval": "analysis.aggregate",
    "iqm": "analysis.aggregate",
    "iqm_curves_with_ci": "analysis.aggregate",
    "iqm_per_step": "analysis.aggregate",
    "iqm_with_ci": "analysis.aggregate",
    "performance_profiles": "analysis.aggregate",
    "poi_with_ci": "analysis.aggregate",
    "probability_of_improvement": "analysis.aggregate",
    "seeded_global_rng": "analysis.aggregate",
    "AnalysisError": "mtrl_plasticity.errors",
    "Grid": "analysis.grid",
    "SweepInfo": "analysis.grid",
    "read_sweep": "analysis.grid",
    "dataset_files": "analysis.load",
    "load_evals": "analysis.load",
    "load_train": "analysis.load",
    "Analysis": "analysis.pipeline",
    "compute": "analysis.pipeline",
    "analyze": "analysis.report",
    "write_outputs": "analysis.report",
    "PLASTICITY_METRICS": "analysis.plasticity",
    "plasticity_curves": "analysis.plasticity",
    "CurveMatrix": "analysis.scores",
    "ScoreMatrix": "analysis.scores",
    "add_scores": "analysis.scores",
    "final_from_curves": "analysis.scores",
    "final_scores": "analysis.scores",
    "normalise": "analysis.scores",
    "score_curves": "analysis.scores",
    "single_task_baseline": "analysis.scores",
    "table_steps": "analysis.scores",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["Cell", "Coverage", "coverage", *_EXPORTS]
