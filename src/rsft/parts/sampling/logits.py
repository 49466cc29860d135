"""Turning next-token logits into a choice: temperature, top-k and top-p, then one draw per row.

Shared by the engines that see full distributions (the transformers loop, and
CTranslate2's entropy measurement), so every engine filters the same way.
Draws are by inverse CDF with one uniform from each row's own generator, so a
row's token does not depend on the other rows of its batch.
"""

from __future__ import annotations

import torch

from rsft.parts.sampling.base import SamplingParams


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k and top-p applied to logits [b, V]; removed tokens become -inf."""
    scaled = logits / params.temperature  # [b, V]
    if params.top_k > 0 and params.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, params.top_k, dim=-1).values[:, -1:]  # [b, 1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)  # [b, V]
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop_sorted = probs.cumsum(-1) - probs >= params.top_p  # [b, V]
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    return scaled


def pick_tokens(
    logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose one token per row of logits [b, V].

    Returns (token [b], logprob of the token under the raw model distribution [b],
    entropy of the distribution sampled from [b]).
    """
    logits = logits.float()
    raw_logp = logits.log_softmax(-1)  # [b, V]
    if params.greedy:
        token = logits.argmax(-1)  # [b]
        probs = raw_logp.exp()
    else:
        probs = filter_logits(logits, params).softmax(-1)  # [b, V]
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])  # [b]
        token = draw(probs, u)  # [b]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # [b]
    logprob = raw_logp.gather(-1, token.unsqueeze(-1)).squeeze(-1)  # [b]
    return token, logprob, entropy


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row of probs [b, V] (need not sum to 1) by inverse CDF, from uniforms u [b] in [0, 1)."""
    cdf = probs.double().cumsum(-1)  # [b, V]
    token = torch.searchsorted(cdf, (u.double() * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return token.clamp(max=probs.shape[-1] - 1)  # [b]


def entropy_from_top(steps: list[list[float]], params: SamplingParams) -> float | None:
    """Mean over steps of the entropy of the sampled-from distribution, rebuilt from each step's top raw
    log-probabilities (what vLLM and OpenAI-style servers return): temperature, top-k and top-p applied
    to those tokens and renormalised over them. Exact when the filtered distribution fits in them, a
    lower bound otherwise; None without any step."""
    if not steps or not any(steps):
        return None
    width = max(len(s) for s in steps)
    logits = torch.full((len(steps), width), float("-inf"), dtype=torch.float64)  # [t, top]
    for row, values in enumerate(steps):
        if values:
            logits[row, : len(values)] = torch.tensor(sorted(values, reverse=True), dtype=torch.float64)
    probs = (logits if params.greedy else filter_logits(logits, params)).softmax(-1)  # [t, top]
    ent = -(probs * probs.clamp_min(1e-30).log()).nan_to_num(0.0).sum(-1)  # [t]
    value = float(ent.mean())
    return value if value == value else None
