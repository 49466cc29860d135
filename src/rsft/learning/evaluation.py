"""Held-out evaluation: greedy pass@1, and sampled pass@k and maj@k with the unbiased estimator.

Evaluation samples with its own seed stream (round index offset far from the
training rounds), so held-out draws never coincide with training draws.
It scores with the scorer it is given: the stage passes the judge
(`eval.scorer`, else the run's scorer), so rounds scored by a reward model can
be evaluated by a verifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.core.config import EvalConfig
from rsft.core.metrics_schema import ENGINE, PRECISION
from rsft.core.progress import progress_bar
from rsft.core.rundir.files import atomic_write_jsonl
from rsft.core.records import Group, Prompt
from rsft.parts.metrics import eval_metrics
from rsft.parts.sampling.base import Engine, SamplingParams
from rsft.parts.scoring.base import score_groups

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
    params: SamplingParams,
    round_index: int = 0,
    batch_size: int = 64,
    timeout: float | None = None,
    greedy_out: Path | None = None,
) -> dict[str, Any]:
    """Metrics of one model on held-out prompts, keyed as `rsft.core.metrics_schema` names the EVAL keys.

    `params` are the rounds' sampling parameters: evaluation cuts at the same stop strings and
    filters with the same top-p/top-k, greedily for pass@1 and at `eval.temperature` for pass@k,
    with up to `eval.max_new_tokens` (default: the rounds') new tokens. The engine's name and
    precision are recorded beside the metrics, so a number is never read as another engine's.
    `greedy_out`: where to write each prompt's greedy outcome (`write_greedy`), which `rsft compare`
    pairs across runs.
    """
    tokens = cfg.max_new_tokens or params.max_new_tokens
    greedy = _run(engine, prompts, 1, dataclasses.replace(params, temperature=0.0, max_new_tokens=tokens), scorer,
                  batch_size, "eval greedy", timeout)
    if greedy_out is not None:
        write_greedy(greedy_out, greedy, cfg.pass_threshold)
    sampled: list[Group] = []
    if cfg.n > 0:
        sampled_params = dataclasses.replace(params, temperature=cfg.temperature, max_new_tokens=tokens,
                                             round=EVAL_ROUND_OFFSET + round_index, first_index=0)
        sampled = _run(engine, prompts, cfg.n, sampled_params, scorer, max(1, batch_size // 2),
                       f"eval pass@{cfg.n}", timeout)
    metrics: dict[str, Any] = eval_metrics(greedy, sampled, cfg.k, cfg.pass_threshold)
    metrics[ENGINE] = getattr(engine, "name", type(engine).__name__)
    metrics[PRECISION] = getattr(engine, "precision", "unknown")
    return metrics


def write_greedy(path: Path, groups: list[Group], threshold: float) -> None:
    """One line per held-out prompt: its id, the greedy sample's score (None on a scorer error) and whether it
    passed; the per-prompt outcomes behind greedy pass@1."""
    rows = []
    for g in groups:
        c = g.scores[0] if g.scores else None
        rows.append({"id": g.prompt.id, "value": c.value if c is not None and c.ok else None,
                     "passed": bool(c is not None and c.passes(threshold))})
    atomic_write_jsonl(path, rows)
