"""Selection: a chain of small rules applied to each group, as lm-eval chains its filters.

A rule takes a scored `Group` and returns a group holding the samples it
keeps; the chain is read from the config, e.g.
``passes(min=1) → dedup → cap(10) → top_k(1)``. Samples a scorer failed on
never survive `passes`, and are ranked last by the other rules.

Ordering among equals is by sample index, so selection is deterministic.
Rules do not look across groups; cross-round replay is the select stage's job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsft.config import CapRule, DedupRule, DropUniformRule, PassesRule, TopKRule
from rsft.records import Group, Sample, Score

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form of a completion, for dedup and distinct counts."""
    return _WS.sub(" ", text).strip().lower()


def _rank_key(pair: tuple[Sample, Score]) -> tuple[float, int]:
    sample, score = pair
    value = score.value if score.ok else float("-inf")
    return (-value, sample.index)


def passes(group: Group, rule: PassesRule) -> Group:
    return group.keep([(s, c) for s, c in group.scored if c.ok and c.value >= rule.min])


def dedup_key(sample: Sample, score: Score, key: str) -> str:
    if key == "exact":
        return sample.text
    if key == "answer" and score.answer is not None:
        return score.answer
    return normalize(sample.text)


def dedup(group: Group, rule: DedupRule) -> Group:
    """Keep the best-scoring sample of each equivalence class, in original order."""
    best: dict[str, tuple[Sample, Score]] = {}
    for pair in sorted(group.scored, key=_rank_key):
        best.setdefault(dedup_key(*pair, rule.key), pair)
    kept = {id(p[0]) for p in best.values()}
    return group.keep([p for p in group.scored if id(p[0]) in kept])


def cap(group: Group, rule: CapRule) -> Group:
    keep = {p[0].index for p in sorted(group.scored, key=_rank_key)[: rule.n]}
    return group.keep([p for p in group.scored if p[0].index in keep])


def top_k(group: Group, rule: TopKRule) -> Group:
    return group.keep(sorted(group.scored, key=_rank_key)[: rule.k])


def drop_uniform(group: Group, rule: DropUniformRule) -> Group:
    """Drop a group whose scores are all equal: it carries no signal about what is better."""
    values = [c.value if c.ok else float("-inf") for c in group.scores]
    if values and max(values) - min(values) <= rule.tol:
        return group.keep([])
    return group


RULES: dict[str, Callable[[Group, Any], Group]] = {
    "passes": passes,
    "dedup": dedup,
    "cap": cap,
    "top_k": top_k,
    "drop_uniform": drop_uniform,
}


@dataclass(frozen=True)
class Selection:
    """The kept groups (empty ones included) and how many samples survived each rule."""

    groups: list[Group]
    survivors: list[tuple[str, int]]  # (rule name, samples left after it), in chain order


def select(groups: list[Group], rules: list[Any]) -> Selection:
    current = list(groups)
    survivors = []
    for rule in rules:
        current = [RULES[rule.rule](g, rule) for g in current]
        survivors.append((rule.rule, sum(len(g.samples) for g in current)))
    return Selection(current, survivors)


def best_sample(group: Group) -> tuple[Sample, Score] | None:
    """The top-ranked scored sample of a group, or None when it is empty."""
    return min(group.scored, key=_rank_key) if group.samples else None
