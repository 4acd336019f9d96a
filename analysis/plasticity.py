"""Plasticity curves from the training rows: mean over seeds with a 95% confidence band.

The plasticity metrics are measured at evaluation points only (null elsewhere) and sparsity
at every epoch; rows where a metric is null are skipped for that metric. At each step the band
is the normal-approximation 95% interval of the mean over runs, ``mean +- 1.96 * sd / sqrt(n)``
(a single run gives a zero-width band).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


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

Z_95 = 1.959963984540054


def plasticity_curves(train: pd.DataFrame, metrics: tuple[Metric, ...] = PLASTICITY_METRICS) -> pd.DataFrame:
    """Per cell, metric and step: the mean over runs and its 95% band, in display units.

    Args:
        train: rows from :func:`analysis.load.load_train` (needs ``benchmark``, ``arch``,
            ``treatment``, ``step`` and the metric columns; absent columns are skipped).

    Returns:
        A long frame with columns ``benchmark, arch, treatment, metric, step, mean, low, high,
        n`` (``metric`` is the column name; values are multiplied by :attr:`Metric.scale`).
    """
    columns = ["benchmark", "arch", "treatment", "metric", "step", "mean", "low", "high", "n"]
    present = [m for m in metrics if m.column in train.columns]
    if train.empty or not present:
        return pd.DataFrame(columns=columns)
    keys = ["benchmark", "arch", "treatment", "step"]
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
    half = Z_95 * stats["std"].fillna(0.0) / np.sqrt(stats["n"])
    stats["low"] = stats["mean"] - half
    stats["high"] = stats["mean"] + half
    stats = stats.sort_values(["benchmark", "arch", "treatment", "metric", "step"], kind="stable")
    return stats[columns].reset_index(drop=True)
