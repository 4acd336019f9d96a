"""Effective rank ``srank_delta`` (Kumar et al. 2021; paper appendix C.3).

``srank_delta(Phi) = min { k : sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta }`` over the
raw singular values of the feature matrix ``Phi`` (samples x features), sorted descending.
"""

from __future__ import annotations

import torch


def singular_values(features: torch.Tensor) -> torch.Tensor:
    """Singular values of ``features`` ``[n, d]``, descending, in float64.

    Computed as square roots of the eigenvalues of the smaller Gram matrix in float64, one
    symmetric eigendecomposition instead of an SVD: squaring the condition number costs
    precision, and float64 keeps each sigma's error far below what moves a 1% threshold
    (the tests compare with an SVD).
    """
    x = features.detach().to(torch.float64)
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    eigenvalues = torch.linalg.eigvalsh(gram)  # ascending
    return eigenvalues.clamp_min(0.0).sqrt().flip(0)


def srank_from_singular_values(sigma: torch.Tensor, delta: float) -> int:
    """Smallest ``k`` whose top-``k`` singular values hold ``1 - delta`` of their sum (0 if all 0)."""
    sigma = torch.sort(sigma.to(torch.float64), descending=True).values
    total = sigma.sum()
    if total <= 0:
        return 0
    cumulative = torch.cumsum(sigma, 0) / total
    # A hair of slack so that an exact boundary (e.g. 0.99 with delta 0.01) is not lost to rounding.
    k = int(torch.searchsorted(cumulative, torch.tensor(1.0 - delta - 1e-12, dtype=torch.float64)).item()) + 1
    return min(k, sigma.numel())


def srank(features: torch.Tensor, delta: float) -> int:
    """``srank_delta`` of a ``[n_samples, n_features]`` matrix."""
    return srank_from_singular_values(singular_values(features), delta)
