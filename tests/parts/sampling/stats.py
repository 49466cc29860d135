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


def reference_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution to sample from, written independently of rsft's `filter_logits` (one row at a time,
    in plain Python): softmax(logits / T); keep the k most likely; keep the smallest most-likely set whose
    mass reaches top_p (HF's TopPLogitsWarper); renormalise."""
    out = []
    for row in logits.double():
        probs = (row / temperature).softmax(-1).tolist()
        ranked = sorted(range(len(probs)), key=lambda i: -probs[i])
        keep = ranked[:top_k] if top_k > 0 else ranked
        kept_mass = sum(probs[i] for i in keep)
        nucleus, mass = [], 0.0
        for i in keep:
            nucleus.append(i)
            mass += probs[i] / kept_mass
            if mass >= top_p:
                break
        total = sum(probs[i] for i in nucleus)
        out.append([probs[i] / total if i in nucleus else 0.0 for i in range(len(probs))])
    return torch.tensor(out, dtype=torch.float64)


def wide_nucleus_prompt(candidates, next_logits, top_p: float, top_k: int = 0, min_tokens: int = 3,
                        min_prob: float = 0.05):
    """The first candidate prompt whose nucleus holds at least `min_tokens` tokens of `min_prob` or more each
    (so top-p is not the greedy special case, and every kept token is common enough to test)."""
    for prompt in candidates:
        probs = reference_probs(next_logits(prompt).view(1, -1), top_k=top_k, top_p=top_p)[0]
        kept = probs[probs > 0]
        if kept.numel() >= min_tokens and float(kept.min()) >= min_prob:
            return prompt, probs
    raise AssertionError("no candidate prompt has a wide enough nucleus")
