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
import threading
from collections.abc import Callable
from typing import Any

from rsft.core.records import Group, Score
from rsft.inputs.data.formats import scorer_completion, scorer_prompt


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


def accepted_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments `fn` takes (all of them when it takes **kwargs or its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


def scorer_name(scorer: Any) -> str:
    """How the config would name a scorer: 'module:function' for a function or class, else its name."""
    module, qual = getattr(scorer, "__module__", None), getattr(scorer, "__qualname__", None)
    if module and qual and "<" not in qual:
        return f"{module}:{qual}"
    return str(getattr(scorer, "__name__", None) or type(scorer).__name__)


class ScorerTimeout(Exception):
    pass


class WrongCount(Exception):
    """The scorer broke its contract, one value per completion; retrying one by one would hide it."""


def _call(fn: Callable[..., Any], prompts: list[Any], completions: list[Any], kwargs: dict[str, Any],
          timeout: float | None = None) -> list[Score]:
    args = dict(prompts=prompts, completions=completions, **accepted_kwargs(fn, kwargs))
    if timeout is None:
        out = list(fn(**args))
    else:
        out = list(_with_timeout(fn, args, timeout * len(completions)))
    if len(out) != len(completions):
        raise WrongCount(f"scorer {scorer_name(fn)} returned {len(out)} values for {len(completions)} completions")
    return [to_score(v) for v in out]


def _with_timeout(fn: Callable[..., Any], args: dict[str, Any], seconds: float) -> Any:
    """Run fn in a daemon thread and give up after `seconds`.

    Python cannot kill a thread: a scorer that hangs forever keeps its thread
    (daemon, so it never blocks exit). Scorers that run untrusted code use
    `scoring.code`, which kills whole process groups instead.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(**args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="rsft-scorer")
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise ScorerTimeout(f"timed out after {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:500]


def score_flat(fn: Callable[..., Any], prompts: list[Any], completions: list[Any], kwargs: dict[str, Any],
               timeout: float | None = None) -> list[Score]:
    """Score aligned lists; on an exception or timeout, retry one by one so it lands on its sample.

    `timeout` is per sample: a batch call may take `timeout × batch size`. A scorer that returns the
    wrong number of values is an error on every sample of the call: it is not retried one by one, where
    a scorer that always returns one value would look right.
    """
    try:
        return _call(fn, prompts, completions, kwargs, timeout)
    except WrongCount as e:
        return [Score(None, error=str(e)) for _ in completions]
    except Exception:  # noqa: BLE001 - a scorer's failure is data, not a crash
        pass
    out = []
    for i in range(len(completions)):
        one = {k: [v[i]] for k, v in kwargs.items()}
        try:
            out.extend(_call(fn, [prompts[i]], [completions[i]], one, timeout))
        except Exception as e:  # noqa: BLE001
            out.append(Score(None, error=_describe(e)))
    return out


def score_groups(fn: Callable[..., Any], groups: list[Group], timeout: float | None = None) -> list[Group]:
    """Score every sample of every group in one scorer call; groups come back with scores attached.

    A sample that could not be drawn (`Sample.error`) is not shown to the scorer: its score is an error.
    """
    prompts, completions, ids = [], [], []
    field_names = sorted({k for g in groups for k in g.prompt.fields})
    fields: dict[str, list[Any]] = {k: [] for k in field_names}
    for g in groups:
        for s in g.samples:
            if s.error is not None:
                continue
            prompts.append(scorer_prompt(g.prompt))
            completions.append(scorer_completion(g.prompt, s.text))
            ids.append(list(s.token_ids))
            for k in field_names:
                fields[k].append(g.prompt.fields.get(k))
    scores = iter(score_flat(fn, prompts, completions, {"completion_ids": ids, **fields}, timeout) if completions else [])
    return [g.with_scores([Score(None, error=f"sampling: {s.error}") if s.error is not None else next(scores)
                           for s in g.samples]) for g in groups]
