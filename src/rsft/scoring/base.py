"""Running scorers over groups, with failures isolated to single samples.

A scorer is any callable with TRL GRPOTrainer's reward signature,
``f(prompts, completions, **fields) -> list[float | None]``, so the same
function works as an rsft scorer and as a GRPO `reward_funcs` entry. A scorer
may also return `Score` records, or dicts with value/parts/answer, to report
richer results. rsft passes only the keyword arguments a scorer accepts (all
of them when it takes ``**kwargs``): `completion_ids` and the prompt's fields.

If a call raises, the batch is re-scored one sample at a time so that the
exception lands on the sample that caused it. A `None` or non-finite value is
an error on that sample. Nothing here stops a run; the caller decides what to
do when everything failed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from rsft.data.formats import scorer_completion, scorer_prompt
from rsft.errors import ConfigError
from rsft.records import Group, Score


class Scorer(Protocol):
    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Sequence[Any]: ...


def build_scorer(spec: Any, default: Callable[..., Any] | None = None, key: str = "scorer") -> Callable[..., Any]:
    """The scorer a config names: None (the task's own), a built-in name, 'module:function', or {name, kwargs}."""
    from rsft.registry import builtin_scorers, import_object

    if spec is None:
        if default is None:
            raise ConfigError(f"key '{key}': this task has no default scorer; name one")
        return default
    kwargs: dict[str, Any] = {}
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "kwargs"}
        if unknown or "name" not in spec:
            raise ConfigError(f"key '{key}': expected {{name, kwargs}}, got keys {sorted(spec)}")
        kwargs = dict(spec.get("kwargs") or {})
        spec = spec["name"]
    if not isinstance(spec, str):
        raise ConfigError(f"key '{key}': expected a scorer name or 'module:function', got {spec!r}")
    builtins = builtin_scorers()
    if spec in builtins:
        try:
            return builtins[spec](**kwargs)
        except TypeError as e:
            raise ConfigError(f"key '{key}.kwargs': {e}") from None
    if ":" not in spec:
        raise ConfigError(f"key '{key}': unknown scorer {spec!r}, expected one of {sorted(builtins)} or 'module:function'")
    obj = import_object(spec, key)
    if kwargs:  # a factory taking options and returning the scorer
        return obj(**kwargs)
    return obj


def to_score(raw: Any) -> Score:
    """Normalize one scorer output (float, None, Score or dict) into a Score."""
    if isinstance(raw, Score):
        return raw if raw.value is None or math.isfinite(raw.value) else Score(None, raw.parts, "non-finite score")
    if isinstance(raw, dict):
        return to_score(Score(raw.get("value"), dict(raw.get("parts") or {}), raw.get("error"), raw.get("answer")))
    if raw is None:
        return Score(None, error="scorer returned None")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return Score(None, error=f"scorer returned {type(raw).__name__}, expected a number")
    value = float(raw)
    return Score(value) if math.isfinite(value) else Score(None, error="non-finite score")


def _accepted_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


def _call(fn: Callable[..., Any], prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]) -> list[Score]:
    out = list(fn(prompts=prompts, completions=completions, **_accepted_kwargs(fn, kwargs)))
    if len(out) != len(completions):
        raise ValueError(f"scorer returned {len(out)} values for {len(completions)} completions")
    return [to_score(v) for v in out]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:500]


def score_flat(fn: Callable[..., Any], prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]) -> list[Score]:
    """Score aligned lists; on an exception, retry one by one so it lands on its sample."""
    try:
        return _call(fn, prompts, completions, kwargs)
    except Exception:  # noqa: BLE001 - a scorer's failure is data, not a crash
        pass
    out = []
    for i in range(len(completions)):
        one = {k: [v[i]] for k, v in kwargs.items()}
        try:
            out.extend(_call(fn, [prompts[i]], [completions[i]], one))
        except Exception as e:  # noqa: BLE001
            out.append(Score(None, error=_describe(e)))
    return out


def score_groups(fn: Callable[..., Any], groups: list[Group]) -> list[Group]:
    """Score every sample of every group in one scorer call; groups come back with scores attached."""
    prompts, completions, ids = [], [], []
    field_names = sorted({k for g in groups for k in g.prompt.fields})
    fields: dict[str, list[Any]] = {k: [] for k in field_names}
    for g in groups:
        for s in g.samples:
            prompts.append(scorer_prompt(g.prompt))
            completions.append(scorer_completion(g.prompt, s.text))
            ids.append(list(s.token_ids))
            for k in field_names:
                fields[k].append(g.prompt.fields.get(k))
    scores = score_flat(fn, prompts, completions, {"completion_ids": ids, **fields}) if completions else []
    out, at = [], 0
    for g in groups:
        out.append(g.with_scores(scores[at : at + len(g.samples)]))
        at += len(g.samples)
    return out
