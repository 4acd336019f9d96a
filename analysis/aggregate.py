"""Aggregate metrics with rliable's stratified bootstrap: IQM, probability of improvement, profiles.

Every interval here comes from :func:`rliable.library.get_interval_estimates` (percentile
method, stratified over tasks: runs are resampled with replacement within each task). rliable
draws its bootstrap indices from NumPy's *global* RNG, so each call runs inside
:func:`seeded_global_rng`, which seeds that RNG with ``seed`` before **each key** and restores
the caller's RNG state afterwards. A key's interval therefore depends only on its own scores,
``reps`` and ``seed``: the same input and seed give identical numbers, whatever else is in the
dictionary.

The statistics passed to rliable are NumPy re-implementations that return exactly what
``rliable.metrics.aggregate_iqm`` / ``probability_of_improvement`` and rliable's score
distribution return (the tests check this), without their per-call overhead (SciPy's
argument checking in ``aggregate_iqm``, a Mann-Whitney U test per pair of tasks;
``bench/bench_analysis.py`` times a full sweep's analysis).

Each key is an independent job, so ``jobs=N`` spreads the keys over N forked worker
processes (Linux) without changing a single number.

Shapes: a score matrix is ``[n_runs, n_tasks]``; a curve array ``[n_runs, n_tasks, n_steps]``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Mapping, TypeVar

import numpy as np


def _rliable():
    """``rliable.library``, imported on first use: it pulls in ``arch`` and statsmodels, kept out of the start-up."""
    from rliable import library  # heavy (arch, statsmodels): loaded by the first bootstrap, not at import

    return library


K = TypeVar("K", bound=Hashable)

DEFAULT_REPS = 2000
"""Bootstrap repetitions for Table 1 and the probabilities of improvement (rliable's default is
50,000; docs/analysis.md says what fewer repetitions change)."""
DEFAULT_BAND_REPS = 500
"""Bootstrap repetitions for the CI bands of learning curves and performance profiles."""
CONFIDENCE = 0.95
DEFAULT_TAUS = np.linspace(0.0, 1.0, 51)
"""Normalised-score thresholds at which performance profiles are evaluated."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class Band:
    """A curve (over steps or thresholds) and its pointwise confidence band."""

    x: np.ndarray
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG (which rliable uses) for the block, then restore its old state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --- statistics -------------------------------------------------------------------------


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs and tasks: the 25%-trimmed mean of every score.

    Identical to ``rliable.metrics.aggregate_iqm`` (``scipy.stats.trim_mean(x, 0.25,
    axis=None)``): with ``n`` scores, the ``int(0.25 n)`` lowest and highest are dropped.
    """
    flat = np.asarray(scores, dtype=float).reshape(-1)
    n = flat.shape[0]
    low = int(0.25 * n)
    high = n - low
    part = np.partition(flat, (low, high - 1))
    return float(np.mean(part[low:high]))


def iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks at each step of a ``[n_runs, n_tasks, n_steps]`` array -> ``[n_steps]``."""
    scores = np.asarray(scores, dtype=float)
    flat = scores.reshape(-1, scores.shape[-1])
    n = flat.shape[0]
    low = int(0.25 * n)
    # A full sort along the runs x tasks axis, not np.partition with two pivots (slower at these
    # sizes): the kept elements are the same, only the summation order may differ (~1e-16).
    return np.mean(np.sort(flat, axis=0)[low:n - low], axis=0)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y): for each task the probability that a random run of X beats a random run of Y
    (ties count one half), averaged over tasks. Identical to
    ``rliable.metrics.probability_of_improvement`` (Mann-Whitney U / (n_x n_y)).

    Args:
        scores_x: ``[n_runs_x, n_tasks]``.
        scores_y: ``[n_runs_y, n_tasks]``.
    """
    x = np.asarray(scores_x, dtype=float)
    y = np.asarray(scores_y, dtype=float)
    # sign(x - y) is 1, 0, -1 for a win, a tie, a loss; every task has n_x * n_y pairs, so
    # the mean over all pairs and tasks is the mean over tasks of the per-task probabilities.
    return float(0.5 + 0.5 * np.mean(np.sign(x[:, None, :] - y[None, :, :])))


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all (run, task) scores above each threshold: ``[n_taus]`` (rliable's
    ``score_distributions``, i.e. a run-score performance profile)."""
    flat = np.asarray(scores, dtype=float).reshape(-1)
    return np.mean(flat[:, None] > np.asarray(taus, dtype=float)[None, :], axis=0)


# --- interval estimates -----------------------------------------------------------------
#
# Each key is one independent job (seeded on its own), so the jobs can run in worker processes
# without changing any number: ``jobs`` only changes how long it takes.


def default_jobs() -> int:
    """Worker processes used when ``jobs`` is None: the CPU count, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def _map(fn: Callable[..., Any], calls: list[tuple], jobs: int | None) -> list[Any]:
    """``[fn(*call) for call in calls]``, spread over ``jobs`` forked worker processes.

    Forking is used on Linux only (workers inherit the imported modules, so they start in
    milliseconds); elsewhere, with ``jobs <= 1``, or if the pool cannot start, the calls run here.
    """
    jobs = default_jobs() if jobs is None else int(jobs)
    if (jobs <= 1 or len(calls) < 2 or not sys.platform.startswith("linux")
            or multiprocessing.current_process().daemon):  # daemons (e.g. pool workers) may not fork
        return [fn(*call) for call in calls]
    _rliable()  # import once here, so that forked workers inherit it instead of importing it each
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=context) as pool:
            return list(pool.map(fn, *zip(*calls, strict=True)))
    except (OSError, BrokenProcessPool, AssertionError):
        return [fn(*call) for call in calls]


def _iqm_job(matrix: np.ndarray, reps: int, seed: int, confidence: float) -> tuple[float, float, float]:
    with seeded_global_rng(seed):
        points, intervals = _rliable().get_interval_estimates(
            {"x": matrix}, lambda x: np.array([iqm(x)]), reps=reps, confidence_interval_size=confidence)
    return float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0])


def _curve_job(block: np.ndarray, reps: int, seed: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    with seeded_global_rng(seed):
        points, intervals = _rliable().get_interval_estimates(
            {"x": block}, iqm_per_step, reps=reps, confidence_interval_size=confidence)
    return np.asarray(points["x"], dtype=float), np.asarray(intervals["x"], dtype=float)


def _poi_job(x: np.ndarray, y: np.ndarray, reps: int, seed: int, confidence: float) -> tuple[float, float, float]:
    with seeded_global_rng(seed):
        points, intervals = _rliable().get_interval_estimates(
            {"x": [x, y]}, lambda a, b: np.array([probability_of_improvement(a, b)]),
            reps=reps, confidence_interval_size=confidence)
    return float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0])


def _profile_job(matrix: np.ndarray, taus: np.ndarray, reps: int, seed: int,
                 confidence: float) -> tuple[np.ndarray, np.ndarray]:
    with seeded_global_rng(seed):
        profiles, cis = _rliable().create_performance_profile(
            {"x": matrix}, taus, custom_profile_func=score_distribution, reps=reps,
            confidence_interval_size=confidence)
    return np.asarray(profiles["x"], dtype=float), np.asarray(cis["x"], dtype=float)


def iqm_with_ci(score_dict: Mapping[K, np.ndarray], reps: int = DEFAULT_REPS, seed: int = 0,
                confidence: float = CONFIDENCE, jobs: int | None = 1) -> dict[K, Interval]:
    """IQM and its stratified-bootstrap confidence interval for each ``[n_runs, n_tasks]`` matrix.

    For each key this is exactly ``np.random.seed(seed)`` followed by
    ``rliable.library.get_interval_estimates({key: m}, lambda x: np.array([aggregate_iqm(x)]),
    reps=reps)``. Keys whose matrix has no runs are left out. ``jobs`` worker processes share
    the keys (``None``: :func:`default_jobs`); the numbers do not depend on it.
    """
    keys, calls = [], []
    for key, matrix in score_dict.items():
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
            continue
        keys.append(key)
        calls.append((matrix, reps, seed, confidence))
    return {key: Interval(*result) for key, result in zip(keys, _map(_iqm_job, calls, jobs), strict=True)}


def iqm_curves_with_ci(curve_dict: Mapping[K, tuple[np.ndarray, np.ndarray]], reps: int = DEFAULT_BAND_REPS,
                       seed: int = 0, confidence: float = CONFIDENCE, jobs: int | None = 1) -> dict[K, Band]:
    """IQM over runs x tasks at each step with pointwise stratified-bootstrap bands.

    Args:
        curve_dict: key -> ``(steps [n_steps], scores [n_runs, n_tasks, n_steps])``; NaN marks a
            missing evaluation. At each step only the runs with every task present are used;
            steps that share the same set of such runs are bootstrapped together as one 3-D
            array (rliable's own learning-curve usage: run indices are drawn independently per
            task and step), each group seeded with ``seed``.
        jobs: worker processes (see :func:`iqm_with_ci`).
    """
    plans: list[tuple[Any, ...]] = []
    calls: list[tuple[np.ndarray, int, int, float]] = []
    for key, (steps, scores) in curve_dict.items():
        scores = np.asarray(scores, dtype=float)
        steps = np.asarray(steps)
        complete = ~np.isnan(scores).any(axis=1)  # [runs, steps]
        usable = complete.any(axis=0)
        if not usable.any():
            continue
        patterns: dict[bytes, list[int]] = {}
        for k in np.flatnonzero(usable):
            patterns.setdefault(complete[:, k].tobytes(), []).append(int(k))
        groups = list(patterns.values())
        plans.append((key, steps, usable, groups, len(calls)))
        for columns in groups:
            block = scores[complete[:, columns[0]]][:, :, columns]
            calls.append((block, reps, seed, confidence))
    results = _map(_curve_job, calls, jobs)
    out: dict[K, Band] = {}
    for key, steps, usable, groups, first in plans:
        point = np.full(len(steps), np.nan)
        low, high = point.copy(), point.copy()
        for offset, columns in enumerate(groups):
            p, ci = results[first + offset]
            point[columns], low[columns], high[columns] = p, ci[0], ci[1]
        out[key] = Band(x=steps[usable], point=point[usable], low=low[usable], high=high[usable])
    return out


def poi_with_ci(pairs: Mapping[K, tuple[np.ndarray, np.ndarray]], reps: int = DEFAULT_REPS, seed: int = 0,
                confidence: float = CONFIDENCE, jobs: int | None = 1) -> dict[K, Interval]:
    """Probability of improvement P(X > Y) with a stratified independent bootstrap CI.

    Args:
        pairs: key -> ``(scores_x [n_x, n_tasks], scores_y [n_y, n_tasks])``; X and Y are
            resampled independently, runs within tasks (rliable's ``StratifiedIndependentBootstrap``,
            reached by passing the pair as a list to ``get_interval_estimates``).
        jobs: worker processes (see :func:`iqm_with_ci`).
    """
    keys, calls = [], []
    for key, (x, y) in pairs.items():
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.shape[0] == 0 or y.shape[0] == 0 or x.shape[1] != y.shape[1]:
            continue
        keys.append(key)
        calls.append((x, y, reps, seed, confidence))
    return {key: Interval(*result) for key, result in zip(keys, _map(_poi_job, calls, jobs), strict=True)}


def performance_profiles(score_dict: Mapping[K, np.ndarray], taus: np.ndarray = DEFAULT_TAUS,
                         reps: int = DEFAULT_BAND_REPS, seed: int = 0, confidence: float = CONFIDENCE,
                         jobs: int | None = 1) -> dict[K, Band]:
    """Run-score performance profiles (fraction of runs x tasks scoring above tau) with bands.

    Uses ``rliable.library.create_performance_profile`` with :func:`score_distribution` as its
    profile function, seeded per key. ``jobs``: see :func:`iqm_with_ci`.
    """
    taus = np.asarray(taus, dtype=float)
    keys, calls = [], []
    for key, matrix in score_dict.items():
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            continue
        keys.append(key)
        calls.append((matrix, taus, reps, seed, confidence))
    return {key: Band(x=taus, point=profile, low=ci[0], high=ci[1])
            for key, (profile, ci) in zip(keys, _map(_profile_job, calls, jobs), strict=True)}
