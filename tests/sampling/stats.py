"""Goodness-of-fit check shared by the engine tests."""

from __future__ import annotations

import math

import torch


def chi_square_ok(tokens: list[int], probs: torch.Tensor) -> tuple[float, float, int]:
    """Goodness of fit of token counts against probs [V], rare cells pooled; (chi2, 99.9% critical value, dof)."""
    n = len(tokens)
    counts = torch.bincount(torch.tensor(tokens), minlength=probs.numel()).double()
    expected = probs * n
    keep = expected >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1]
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    dof = obs.numel() - 1
    crit = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3  # Wilson-Hilferty
    return chi2, crit, dof
