"""Plasticity curves from the training rows: mean over seeds with a 95% Student-t interval.

The plasticity metrics are measured at evaluation points only (null elsewhere) and sparsity
at every epoch; rows where a metric is null are skipped for that metric. At each step the band
is the 95% t-interval of the mean over the ``n`` runs measured there,
``mean +- t(0.975, n - 1) * sd / sqrt(n)``: with the handful of seeds a sweep has, the normal
quantile 1.96 would be far too narrow (t is 2.78 for 5 runs, 4.30 for 3). A single run has no
interval (NaN bounds, no band drawn). The t-interval is exact for normally distributed run
values and needs no random draws, so the curves need no seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import t as student_t


@dataclass(frozen=True)
class Metric:
    """How a training column is shown."""

    column: str
    label: str
    unit: str = ""
    scale: float = 1.0
    """Multiplies the stored value for display (e.g. 100 for a fraction shown in %)."""


PLASTICITY_METRICS: tuple[Metric, ...] = (
    Metric("plasticity/dormant_actor", "Dormant neurons (actor)", "%", 100.0),
    Metric("plasticity/dormant_critic", "Dormant neurons (critic)", "%", 100.0),
    Metric("plasticity/srank_actor", "Effective rank srank (actor)", "rank"),
    Metric("plasticity/fisher_trace", "Fisher information trace (actor)", "trace"),
    Metric("sparsity/actor", "Sparsity (actor)", "%", 100.0),
)
"""The panels of the plasticity figures (paper Figures 5-10), in order."""

CONFIDENCE = 0.95
INTERVAL_LABEL = "mean over runs, 95% t-interval"
"""What the plasticity bands are, for figure titles and captions."""


def plasticity_curves(train: pd.DataFrame, metrics: tuple[Metric, ...] = PLASTICITY_METRICS) -> pd.DataFrame:
    """Per cell, metric and step: the mean over runs and its 95% t-interval, in display units.

    Args:
        train: rows from :func:`analysis.load.load_train` (needs ``benchmark``, ``arch``,
            ``treatment``, ``step`` and the metric columns, ``axes`` if the sweep has grid axes;
            absent metric columns are skipped).

    Returns:
        A long frame with columns ``benchmark, arch, treatment, axes, metric, step, mean, low,
        high, n`` (``metric`` is the column name; values are multiplied by :attr:`Metric.scale`).
    """
    columns = ["benchmark", "arch", "treatment", "axes", "metric", "step", "mean", "low", "high", "n"]
    present = [m for m in metrics if m.column in train.columns]
    if train.empty or not present:
        return pd.DataFrame(columns=columns)
    if "axes" not in train:
        train = train.assign(axes="")
    keys = ["benchmark", "arch", "treatment", "axes", "step"]
    names = [m.column for m in present]
    grouped = train[keys + names].groupby(keys, sort=True)[names]  # NaN (null) rows are skipped per metric
    mean, std, count = grouped.mean(), grouped.std(), grouped.count()
    parts = []
    for metric in present:
        part = pd.DataFrame({"metric": metric.column, "mean": mean[metric.column] * metric.scale,
                             "std": std[metric.column] * metric.scale, "n": count[metric.column]})
        parts.append(part[part["n"] > 0])
    stats = pd.concat(parts).reset_index()
    if stats.empty:
        return pd.DataFrame(columns=columns)
    n = stats["n"].to_numpy(dtype=float)
    quantile = np.full(len(n), np.nan)
    several = n > 1
    quantile[several] = t_quantile(n[several] - 1)
    half = quantile * stats["std"].to_numpy(dtype=float) / np.sqrt(n)
    stats["low"] = stats["mean"] - half
    stats["high"] = stats["mean"] + half
    stats = stats.sort_values(["benchmark", "arch", "treatment", "axes", "metric", "step"], kind="stable")
    return stats[columns].reset_index(drop=True)


def t_quantile(dof: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """The two-sided Student-t quantile ``t((1 + confidence) / 2, dof)``."""
    return student_t.ppf(0.5 + confidence / 2.0, dof)
