"""Held-out evaluation: greedy pass@1, and sampled pass@k and maj@k with the unbiased estimator.

Evaluation samples with its own seed stream (round index offset far from the
training rounds), so held-out draws never coincide with training draws.
It scores with the same scorer as the rounds; a different judge (say, the
verifier while the rounds use a reward model) is passed in explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.config import EvalConfig
from rsft.metrics import eval_metrics
from rsft.progress import progress_bar
from rsft.records import Group, Prompt
from rsft.sampling.base import Engine, SamplingParams
from rsft.scoring.base import score_groups

EVAL_ROUND_OFFSET = 1_000_000


def _run(engine: Engine, prompts: list[Prompt], n: int, params: SamplingParams, scorer: Callable[..., Any],
         batch_size: int, label: str, timeout: float | None) -> list[Group]:
    groups: list[Group] = []
    with progress_bar(label, total=len(prompts)) as (bar, task):
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            samples = engine.generate(batch, n, params)
            groups.extend(score_groups(scorer, [Group(p, tuple(s)) for p, s in zip(batch, samples, strict=True)], timeout))
            bar.update(task, advance=len(batch))
    return groups


def evaluate(
    engine: Engine,
    prompts: list[Prompt],
    scorer: Callable[..., Any],
    cfg: EvalConfig,
    max_new_tokens: int,
    seed: int = 0,
    round_index: int = 0,
    batch_size: int = 64,
    timeout: float | None = None,
) -> dict[str, float]:
    """Metrics of one model on held-out prompts; see `rsft.metrics.eval_metrics` for the keys."""
    tokens = cfg.max_new_tokens or max_new_tokens
    greedy = _run(engine, prompts, 1, SamplingParams(temperature=0.0, max_new_tokens=tokens), scorer,
                  batch_size, "eval greedy", timeout)
    sampled: list[Group] = []
    if cfg.n > 0:
        params = SamplingParams(temperature=cfg.temperature, max_new_tokens=tokens, seed=seed,
                                round=EVAL_ROUND_OFFSET + round_index)
        sampled = _run(engine, prompts, cfg.n, params, scorer, max(1, batch_size // 2), f"eval pass@{cfg.n}", timeout)
    return eval_metrics(greedy, sampled, cfg.k, cfg.pass_threshold)
