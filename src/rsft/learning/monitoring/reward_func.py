"""An rsft scorer as TRL GRPOTrainer's `reward_funcs` entry, scoring what the rounds scored.

rsft scorers share TRL's reward signature, but rsft is more forgiving about how a scorer is written
than GRPOTrainer is, and the hand-off must not fail where the rounds worked:

- rsft passes only the keywords a scorer's signature names; GRPOTrainer passes `completion_ids`,
  `trainer_state`, `log_extra`, `log_metric` and every dataset column, and `def f(prompts,
  completions, answer)` then raises TypeError. The adapter passes the per-completion columns a scorer
  accepts, and the trainer's objects (`trainer_state`, `log_metric`, ...) only to a scorer that names
  them or takes ``**kwargs``.
- A scorer may return `Score` records or dicts (value/parts/answer); GRPOTrainer wants floats or None.
  The adapter returns `Score.value` (None for an error, which TRL treats as a missing reward).
- A scorer that raises on one sample is re-scored one by one, as in the rounds, so one bad completion
  is a missing reward, not a crashed GRPO step.
- The rounds' completions end before the first stop string (`sampling.stop`). TRL's transformers
  generation cannot stop on strings (it passes no tokenizer to `generate`), so the adapter cuts each
  completion at its first stop string before scoring. What it cannot do: the tokens after the stop
  still count in GRPO's loss (`rsft graduate` says so in one line).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rsft.parts.sampling.base import cut_at_stop
from rsft.parts.scoring.base import accepted_kwargs, score_flat, scorer_name


def _cut(completion: Any, stop: tuple[str, ...]) -> Any:
    if not stop:
        return completion
    if isinstance(completion, str):
        return cut_at_stop(completion, stop)[0]
    if isinstance(completion, list):  # TRL's conversational completion: [{"role": "assistant", "content": ...}]
        return [{**m, "content": cut_at_stop(m["content"], stop)[0]}
                if m.get("role", "assistant") == "assistant" and isinstance(m.get("content"), str) else m
                for m in completion]
    return completion


def as_reward_func(scorer: Callable[..., Any], stop: tuple[str, ...] | list[str] = (),
                   timeout: float | None = None) -> Callable[..., list[float | None]]:
    """`scorer` wrapped to GRPOTrainer's calling convention; the wrapper keeps the scorer's name (TRL logs
    ``rewards/<name>/mean``). `stop`: the rounds' stop strings, cut before scoring."""
    stop = tuple(stop)

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
        objects = {k: v for k, v in kwargs.items() if k not in columns}
        fn = scorer
        if objects:  # bound by name, so the one-by-one retry does not index them
            accepted = accepted_kwargs(scorer, objects)
            if accepted:
                def fn(**call: Any) -> Any:  # noqa: E306 - a closure over this call's objects
                    return scorer(**call, **accepted)
                fn.__signature__ = _signature_without(scorer, accepted)  # type: ignore[attr-defined]
        scores = score_flat(fn, prompts, [_cut(c, stop) for c in completions], columns, timeout)
        return [s.value for s in scores]

    name = scorer_name(scorer).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    reward.__name__ = reward.__qualname__ = name
    return reward


def _signature_without(fn: Callable[..., Any], bound: dict[str, Any]) -> Any:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # unreadable: the wrapper takes what the scorer would
        return inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    return sig.replace(parameters=[p for p in sig.parameters.values() if p.name not in bound])
