"""A Task is prompts plus their default scorer.

The built-in tasks generate their prompts from a seed; a user's dataset is
loaded from files with a column mapping and becomes a Task in the same shape,
so the round loop never asks where its prompts came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rsft.errors import ConfigError
from rsft.records import Prompt

if TYPE_CHECKING:
    from rsft.config import TaskConfig


@dataclass(frozen=True)
class Task:
    """Prompts for sampling and held-out evaluation, and the scorer that judges them.

    `gold` pairs prompts with reference completions; only the optional warm start
    uses them, never the rounds themselves. `alphabet` lists the characters the
    built-in 'tiny' model's tokenizer needs; it is None for tasks meant for real
    hub models.
    """

    name: str
    train: list[Prompt]
    eval: list[Prompt]
    scorer: Callable[..., Any] | None
    gold: list[tuple[Prompt, str]] = field(default_factory=list)
    alphabet: str | None = None


def _builtin_factories() -> dict[str, Callable[..., Task]]:
    from rsft.tasks import addition, countdown

    return {"addition": addition.make_task, "countdown": countdown.make_task}


def load_task(cfg: TaskConfig, seed: int = 0) -> Task:
    """Build the Task a config names: a built-in by name, or 'dataset' from files."""
    if cfg.name == "dataset":
        from rsft.data.prompts import dataset_task

        return dataset_task(cfg)
    factories = _builtin_factories()
    if cfg.name not in factories:
        raise ConfigError(f"key 'task.name': unknown task {cfg.name!r}, expected one of {sorted(factories) + ['dataset']}")
    params = {"seed": seed, **cfg.params}
    _check_param_types(cfg.name, factories[cfg.name], cfg.params)
    try:
        task = factories[cfg.name](**params)
    except (TypeError, ValueError) as e:  # an unknown or ill-typed param, or an impossible combination
        raise ConfigError(f"key 'task.params' of task {cfg.name!r}: {str(e).splitlines()[0]}") from None
    train = task.train[: cfg.max_train_prompts] if cfg.max_train_prompts else task.train
    evals = task.eval[: cfg.max_eval_prompts] if cfg.max_eval_prompts else task.eval
    return Task(task.name, train, evals, task.scorer, task.gold, task.alphabet)


def _check_param_types(name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """A built-in's params take the type of their default (a float param also takes an int)."""
    import inspect

    signature = inspect.signature(factory).parameters
    for key, value in params.items():
        param = signature.get(key)
        if param is None or param.default is inspect.Parameter.empty:
            continue
        want = type(param.default)
        accepts = (int, float) if want is float else want
        if isinstance(value, bool) and want is not bool or not isinstance(value, accepts):
            raise ConfigError(f"key 'task.params.{key}' of task {name!r}: expected {want.__name__}, got {value!r}")
