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

from analysis.aggregate import (
    DEFAULT_BAND_REPS,
    DEFAULT_REPS,
    Band,
    Interval,
    iqm,
    iqm_curves_with_ci,
    iqm_per_step,
    iqm_with_ci,
    performance_profiles,
    poi_with_ci,
    probability_of_improvement,
    seeded_global_rng,
)
from analysis.coverage import Cell, Coverage, coverage
from analysis.errors import AnalysisError
from analysis.load import dataset_files, load_evals, load_train, read_sweep_meta
from analysis.pipeline import Analysis, analyze, compute, write_outputs
from analysis.plasticity import PLASTICITY_METRICS, plasticity_curves
from analysis.scores import (
    CurveMatrix,
    ScoreMatrix,
    add_scores,
    final_from_curves,
    final_scores,
    normalise,
    score_curves,
    single_task_baseline,
)

__all__ = [
    "AnalysisError",
    "Analysis",
    "Band",
    "Cell",
    "Coverage",
    "CurveMatrix",
    "DEFAULT_BAND_REPS",
    "DEFAULT_REPS",
    "Interval",
    "PLASTICITY_METRICS",
    "ScoreMatrix",
    "add_scores",
    "analyze",
    "compute",
    "coverage",
    "dataset_files",
    "final_from_curves",
    "final_scores",
    "iqm",
    "iqm_curves_with_ci",
    "iqm_per_step",
    "iqm_with_ci",
    "load_evals",
    "load_train",
    "normalise",
    "performance_profiles",
    "plasticity_curves",
    "poi_with_ci",
    "probability_of_improvement",
    "read_sweep_meta",
    "score_curves",
    "seeded_global_rng",
    "single_task_baseline",
    "write_outputs",
]
