"""Combining scorers: weighted sum, gate, max and min, nested as deep as the config likes.

`from_spec` reads a ``{combine: ...}`` config spec; its children are built by the
spec builder it is handed (`rsft.parts.scoring.spec.build_scorer`), so specs nest.

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

from rsft.core.errors import ConfigError
from rsft.core.records import Score
from rsft.parts.scoring.base import score_flat

Labelled = tuple[str, Callable[..., Any]]
Build = Callable[..., Callable[..., Any]]  # build_scorer(spec, key=...)

_KEYS = {"sum": {"combine", "scorers", "weights"}, "max": {"combine", "scorers"},
         "min": {"combine", "scorers"}, "gate": {"combine", "gate", "then", "min", "otherwise"}}


def _label(spec: Any) -> str:
    if isinstance(spec, str):
        return spec.split(":")[-1]
    if isinstance(spec, dict):
        return str(spec.get("name") or spec.get("combine") or "scorer").split(":")[-1]
    return "scorer"


def _labelled(specs: list[Any], keys: list[str], build: Build) -> list[Labelled]:
    """Each child with a label for the parts: its name, numbered when a name repeats. `keys`: where the
    config names each child (scorer.scorers.0, scorer.gate), for its errors."""
    out, seen = [], {}
    for spec, key in zip(specs, keys, strict=True):
        label = _label(spec)
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}{seen[label]}", build(spec, key=key)))
    return out


def _with_children(score: Callable[..., list[Score]], children: list[Labelled], keys: list[str]) -> Callable[..., Any]:
    """`score` carrying its children and their config keys, so `rsft.parts.scoring.spec.check_scorer` checks each
    child's signature against the data (the combination itself takes any column)."""
    score.children = [(key, fn) for key, (_, fn) in zip(keys, children, strict=True)]  # type: ignore[attr-defined]
    return score


def _number(spec: dict[str, Any], name: str, default: float, key: str) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"key '{key}.{name}': expected a number, got {value!r}")
    return float(value)


def from_spec(spec: dict[str, Any], key: str, build: Build) -> Callable[..., list[Score]]:
    """The combination a ``{combine: sum|max|min|gate, ...}`` spec describes."""
    kind = spec["combine"]
    if kind not in _KEYS:
        raise ConfigError(f"key '{key}.combine': unknown combination {kind!r}, expected one of {sorted(_KEYS)}")
    unknown = set(spec) - _KEYS[kind]
    if unknown:
        raise ConfigError(f"key '{key}': unknown key {sorted(unknown)[0]!r} for combine: {kind}")
    if kind == "gate":
        if "gate" not in spec or "then" not in spec:
            raise ConfigError(f"key '{key}': combine: gate needs 'gate' and 'then' scorers")
        keys = [f"{key}.gate", f"{key}.then"]
        g, t = _labelled([spec["gate"], spec["then"]], keys, build)
        return _with_children(gate(g, t, _number(spec, "min", 1.0, key), _number(spec, "otherwise", 0.0, key)),
                              [g, t], keys)
    children = spec.get("scorers")
    if not isinstance(children, list) or not children:
        raise ConfigError(f"key '{key}.scorers': expected a non-empty list of scorers")
    keys = [f"{key}.scorers.{i}" for i in range(len(children))]
    labelled = _labelled(children, keys, build)
    if kind == "sum":
        weights = spec.get("weights", [1.0] * len(children))
        if not isinstance(weights, list) or len(weights) != len(children) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
            raise ConfigError(f"key '{key}.weights': expected {len(children)} numbers, got {weights!r}")
        return _with_children(weighted_sum(labelled, [float(w) for w in weights]), labelled, keys)
    return _with_children(extreme(labelled, max if kind == "max" else min), labelled, keys)


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
        open_idx = [i for i, g in enumerate(gates) if g.passes(min_value)]
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
