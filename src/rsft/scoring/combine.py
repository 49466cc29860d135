"""Combining scorers: weighted sum, gate, max and min, nested as deep as the config likes.

A combination is itself a scorer with TRL's reward signature, so it composes
with everything else. Children run through `score_flat`, so one child failing
on one sample is an error on that sample only; a combined score is an error
when any child needed for it errored (a gate whose gate failed never looks at
the rest). Each child's value lands in the parts as ``<label>`` and its own
parts as ``<label>.<part>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.records import Score
from rsft.scoring.base import score_flat

Labelled = tuple[str, Callable[..., Any]]


def _children(children: list[Labelled], prompts: list[Any], completions: list[Any],
              kwargs: dict[str, Any]) -> list[list[Score]]:
    return [score_flat(fn, prompts, completions, kwargs) for _, fn in children]


def _parts(children: list[Labelled], scores: list[Score]) -> dict[str, float]:
    parts: dict[str, float] = {}
    for (label, _), s in zip(children, scores, strict=True):
        if s.ok:
            parts[label] = float(s.value)
        for k, v in s.parts.items():
            parts[f"{label}.{k}"] = v
    return parts


def _first_error(children: list[Labelled], scores: list[Score]) -> str | None:
    return next((f"{label}: {s.error}" for (label, _), s in zip(children, scores, strict=True) if not s.ok), None)


def reduce_children(children: list[Labelled], fold: Callable[[list[float]], float]) -> Callable[..., list[Score]]:
    """A scorer folding its children's values per sample (sum, max, min...); any child error wins."""

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        out = []
        for per_sample in zip(*_children(children, prompts, completions, kwargs), strict=True):
            scores = list(per_sample)
            parts, err = _parts(children, scores), _first_error(children, scores)
            value = None if err else fold([float(s.value) for s in scores])
            out.append(Score(value, parts, err, None if err else _answer(per_sample)))
        return out

    return score


def weighted_sum(children: list[Labelled], weights: list[float]) -> Callable[..., list[Score]]:
    if len(weights) != len(children):
        raise ValueError(f"{len(weights)} weights for {len(children)} scorers")
    return reduce_children(children, lambda values: sum(w * v for w, v in zip(weights, values, strict=True)))


def extreme(children: list[Labelled], pick: Callable[[list[float]], float]) -> Callable[..., list[Score]]:
    """max or min over the children's values."""
    return reduce_children(children, pick)


def gate(gate_child: Labelled, then: Labelled, min_value: float = 1.0, otherwise: float = 0.0) -> Callable[..., list[Score]]:
    """`then`'s value only for samples whose gate (typically a format check) reaches `min_value`.

    Samples that fail the gate get `otherwise` and `then` is never run on them,
    which also saves the cost of an expensive second scorer on malformed output.
    """

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        gates = score_flat(gate_child[1], prompts, completions, kwargs)
        open_idx = [i for i, g in enumerate(gates) if g.ok and g.value >= min_value]
        sub = {k: [v[i] for i in open_idx] for k, v in kwargs.items()}
        thens = score_flat(then[1], [prompts[i] for i in open_idx], [completions[i] for i in open_idx], sub) \
            if open_idx else []
        by_index = dict(zip(open_idx, thens, strict=True))
        out = []
        for i, g in enumerate(gates):
            if not g.ok:
                out.append(Score(None, _parts([gate_child], [g]), f"{gate_child[0]}: {g.error}"))
            elif i not in by_index:
                out.append(Score(otherwise, {**_parts([gate_child], [g]), "gate": 0.0}))
            else:
                t = by_index[i]
                parts = {**_parts([gate_child, then], [g, t]), "gate": 1.0}
                out.append(Score(t.value, parts, t.error, t.answer) if t.ok else Score(None, parts, f"{then[0]}: {t.error}"))
        return out

    return score


def _answer(scores: tuple[Score, ...]) -> str | None:
    return next((s.answer for s in scores if s.answer is not None), None)
