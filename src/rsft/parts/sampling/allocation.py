"""How many samples each prompt gets: uniform, early stopping (carried across rounds), or GVM-RAFT's split.

Rejection sampling throws most of its samples away, so where the samples go
matters as much as how fast they are drawn.

- **early_stop** samples in waves of `w` per prompt and stops a prompt once it
  has `m` distinct accepted samples (or reached the per-prompt maximum `n`):
  easy prompts stop after one wave, hard ones keep going; with `give_up_after`,
  a prompt with nothing accepted after that many samples stops as well.
- **gvm** (GVM-RAFT, arXiv 2505.02391) pre-samples `n0` per prompt, estimates
  each prompt's acceptance rate p_i, and splits the rest of a token budget as
  n_i ∝ G_i / sqrt(p_i + α / p_i^(β−1)), α = 1e-3, β = 2, rounded by largest
  remainder so the total is kept. The paper's G_i is the prompt's gradient
  norm; rsft uses the **acceptance-only variant** G_i = sqrt(p_i (1 − p_i)), the
  standard deviation of the prompt's 0/1 reward, which is what scales the norm of
  a baseline-corrected policy gradient for that prompt and needs no backward
  pass. Prompts with p_i = 0 or 1 get no GVM share. When the per-prompt cap
  stops the mixed prompts from taking the whole budget, the rest is spread
  evenly over the p_i = 0 prompts (their true rate may just be below 1/n0),
  then over the p_i = 1 ones, so the total is kept, as the paper's rounding step
  requires; it is not left unspent.
- **carry** is early_stop with each prompt's maximum carried across rounds: a
  prompt kept in an earlier round (whose best row replay trains on again) gets
  `solved_samples` (0: skipped), every other prompt up to `n`. The earlier
  rounds' ``kept.jsonl`` files are the state (the sample stage reads them), so a
  resumed round draws what an uninterrupted one would. It pays where a task has
  one right answer and replay keeps it: sampling a solved prompt again finds
  the row it already has.

All three score while sampling, so samples come back already scored; the
score stage keeps those scores instead of scoring twice. The strategy objects
the stages ask (`rsft.parts.sampling.allocators`) wrap these functions. Sample indices (and so
seeds) continue across waves, so the result does not depend on batching.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from rsft.core.records import Group, Prompt
from rsft.parts.sampling.base import Engine, SamplingParams
from rsft.parts.scoring.base import score_groups
from rsft.parts.selection import dedup_key

ALPHA, BETA = 1e-3, 2.0


def accepted_texts(group: Group, accept_min: float) -> set[str]:
    return {dedup_key(s, c, "normalized") for s, c in group.scored if c.passes(accept_min)}


def _merge(old: Group, new: Group) -> Group:
    return Group(old.prompt, old.samples + new.samples, old.scores + new.scores)


def sample_scored(engine: Engine, scorer: Callable[..., Any], prompts: list[Prompt], n: int,
                  params: SamplingParams, timeout: float | None) -> list[Group]:
    """n scored samples per prompt, indices from params.first_index."""
    if not prompts or n <= 0:
        return [Group(p, ()) for p in prompts]
    drawn = engine.generate(prompts, n, params)
    return score_groups(scorer, [Group(p, tuple(s)) for p, s in zip(prompts, drawn, strict=True)], timeout)


def early_stop(engine: Engine, scorer: Callable[..., Any], prompts: list[Prompt], params: SamplingParams,
               wave: int, max_n: int, target: int, accept_min: float, timeout: float | None = None,
               give_up_after: int | None = None, limits: Mapping[str, int] | None = None) -> list[Group]:
    """Waves of `wave` samples until a prompt has `target` distinct accepted samples or `max_n` samples.

    With `give_up_after`, a prompt with no accepted sample after that many draws
    stops too: on most tasks acceptance is bimodal across prompts, so the
    samples a hopeless prompt would take are better spent elsewhere. `limits`
    (prompt id -> maximum, `carry`) replaces `max_n` for the prompts it names; a
    prompt whose maximum is 0 keeps an empty group.
    """
    cap = {p.id: max_n if limits is None else limits.get(p.id, max_n) for p in prompts}
    groups = {p.id: Group(p, ()) for p in prompts}
    active = [p for p in prompts if cap[p.id] > 0]
    drawn = 0  # every active prompt has drawn this many
    while active:
        by_k: dict[int, list[Prompt]] = {}  # usually one wave of `wave`; fewer for prompts near their maximum
        for p in active:
            by_k.setdefault(min(wave, cap[p.id] - drawn), []).append(p)
        for k, batch in sorted(by_k.items(), reverse=True):
            for g in sample_scored(engine, scorer, batch, k, dataclasses.replace(params, first_index=drawn), timeout):
                groups[g.prompt.id] = _merge(groups[g.prompt.id], g)
        drawn += wave
        active = [p for p in active if drawn < cap[p.id]
                  and len(accepted_texts(groups[p.id], accept_min)) < target
                  and not (give_up_after is not None and drawn >= give_up_after
                           and not accepted_texts(groups[p.id], accept_min))]
    return [groups[p.id] for p in prompts]


def carry_limits(prompts: list[Prompt], solved_before: Container[str], n: int, solved_samples: int) -> dict[str, int]:
    """carry: each prompt's maximum this round, `solved_samples` for one kept in an earlier round, else `n`."""
    return {p.id: solved_samples if p.id in solved_before else n for p in prompts}


def gvm_weight(p: float) -> float:
    """GVM-RAFT's allocation weight with the acceptance-only G = sqrt(p(1-p)); 0 when p is 0 or 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    g = math.sqrt(p * (1 - p))
    return g / math.sqrt(p + ALPHA / p ** (BETA - 1))


def largest_remainder(total: int, weights: list[float], caps: list[int]) -> list[int]:
    """Integer counts proportional to weights, summing to `total` (or to what the caps allow).

    Floors first, then one more for the largest fractional parts; what a cap
    refuses is shared again among the prompts still open.
    """
    counts = [0] * len(weights)
    remaining = total
    while remaining > 0:
        open_idx = [i for i, w in enumerate(weights) if w > 0 and counts[i] < caps[i]]
        if not open_idx:
            break
        wsum = sum(weights[i] for i in open_idx)
        shares = {i: remaining * weights[i] / wsum for i in open_idx}
        add = {i: min(int(shares[i]), caps[i] - counts[i]) for i in open_idx}
        left = remaining - sum(add.values())
        for i in sorted(open_idx, key=lambda i: (-(shares[i] % 1), i)):
            if left == 0:
                break
            if counts[i] + add[i] < caps[i]:
                add[i] += 1
                left -= 1
        if not any(add.values()):
            break
        for i, a in add.items():
            counts[i] += a
        remaining = left
    return counts


@dataclass(frozen=True)
class GvmPlan:
    """Extra samples per prompt after the pre-sample, and how the budget was worked out."""

    extra: dict[str, int]
    acceptance: dict[str, float]
    budget_tokens: int
    presample_tokens: int
    tokens_per_sample: float


def gvm_plan(presampled: list[Group], accept_min: float, budget_tokens: int | None, uniform_n: int,
             max_per_prompt: int) -> GvmPlan:
    """Split what is left of the token budget over prompts by GVM weight (largest remainder, capped)."""
    samples = [s for g in presampled for s in g.samples]
    used = sum(s.num_tokens for s in samples)
    per_sample = used / len(samples) if samples else 1.0
    budget = budget_tokens if budget_tokens is not None else int(round(uniform_n * len(presampled) * per_sample))
    extra_samples = max(0, int((budget - used) / max(per_sample, 1e-9)))
    acceptance = {g.prompt.id: (sum(1 for c in g.scores if c.passes(accept_min)) / len(g.samples)
                                if g.samples else 0.0) for g in presampled}
    weights = [gvm_weight(acceptance[g.prompt.id]) for g in presampled]
    caps = [max(0, max_per_prompt - len(g.samples)) for g in presampled]
    counts = largest_remainder(extra_samples, weights, caps)
    for level in (0.0, 1.0):  # spill what the caps refused: unsolved prompts first, then solved ones
        left = extra_samples - sum(counts)
        if left <= 0:
            break
        even = [1.0 if acceptance[g.prompt.id] == level else 0.0 for g in presampled]
        more = largest_remainder(left, even, [cap - c for cap, c in zip(caps, counts, strict=True)])
        counts = [c + m for c, m in zip(counts, more, strict=True)]
    return GvmPlan({g.prompt.id: c for g, c in zip(presampled, counts, strict=True)}, acceptance, budget, used,
                   per_sample)


def gvm_extend(engine: Engine, scorer: Callable[..., Any], presampled: list[Group], extra: dict[str, int],
               params: SamplingParams, timeout: float | None = None) -> list[Group]:
    """Draw each prompt's extra samples (indices after its pre-sample), grouping prompts by count."""
    by_count: dict[tuple[int, int], list[Group]] = {}
    for g in presampled:
        if extra.get(g.prompt.id, 0) > 0:
            by_count.setdefault((extra[g.prompt.id], len(g.samples)), []).append(g)
    grown = {g.prompt.id: g for g in presampled}
    for (k, first), gs in sorted(by_count.items()):
        more = sample_scored(engine, scorer, [g.prompt for g in gs], k,
                             dataclasses.replace(params, first_index=first), timeout)
        for g in more:
            grown[g.prompt.id] = _merge(grown[g.prompt.id], g)
    return [grown[g.prompt.id] for g in presampled]

