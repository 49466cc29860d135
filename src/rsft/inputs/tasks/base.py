"""A Task is prompts plus their default scorer, and `build_task` makes the one a config names.

The built-in tasks generate their prompts from a seed; a user's dataset is
loaded from files with a column mapping (`rsft.inputs.tasks.dataset`) and becomes a
Task in the same shape, so the round loop never asks where its prompts came
from. A task is made by a factory found through `rsft.core.registry`: a built-in
name, or a user's ``"module:function"``. The factory receives ``task.params``
(checked against its signature), ``seed`` when it takes one, and ``settings``
(the whole `task` section: files, splits, columns) when it takes that: a stated
interface, not one parameter per setting found by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rsft.core.errors import ConfigError
from rsft.core.records import Prompt
from rsft.core.registry import check_options, lookup, parameters

if TYPE_CHECKING:
    from rsft.core.config import TaskConfig


@dataclass(frozen=True)
class Task:
    """Prompts for sampling and held-out evaluation, and the scorer that judges them.

    `gold` pairs prompts with reference completions (text, or TRL conversational completion
    messages for a multi-turn task); only the optional warm start
    uses them, never the rounds themselves. `alphabet` lists the characters the
    built-in 'tiny' model's tokenizer needs; it is None for tasks meant for real
    hub models. A multi-turn task names its environment factory in `env`
    (``env(prompt) -> Env``, see `rsft.parts.sampling.rollout`); `chat_template` is the
    template the built-in tiny model's tokenizer gets (None: no template).
    """

    name: str
    train: Sequence[Prompt]  # a list, or prompts read from disk on demand (`rsft.inputs.data.prompts.LazyPrompts`)
    eval: list[Prompt]
    scorer: Callable[..., Any] | None
    gold: list[tuple[Prompt, Any]] = field(default_factory=list)
    alphabet: str | None = None
    chat_template: str | None = None
    env: Callable[..., Any] | None = None


def build_task(cfg: TaskConfig, seed: int = 0) -> Task:
    """The Task a config names, cut to `max_train_prompts` / `max_eval_prompts`."""
    factory = lookup("task", cfg.name, "task.name")
    accepted = parameters(factory)
    named = sorted(set(accepted) & (set(type(cfg).model_fields) - {"name", "params", "settings"}))
    if named:  # the old wiring by name: say so rather than leave the parameter at its default
        raise ConfigError(f"key 'task.name': task {cfg.name!r} takes {named[0]!r}, a task section setting; a task "
                          "factory takes `settings` (the whole task section) for those, and task.params for its own")
    given: dict[str, Any] = {"settings": cfg} if "settings" in accepted else {}
    if "seed" in accepted and "seed" not in cfg.params:  # task.params.seed picks another draw of the task
        given["seed"] = seed
    params = check_options(factory, cfg.params, "task.params", what=f"task {cfg.name!r}", given=tuple(given))
    try:
        task = factory(**given, **params)
    except (TypeError, ValueError) as e:  # an impossible combination of params
        raise ConfigError(f"key 'task.params' of task {cfg.name!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(task, Task):
        raise ConfigError(f"key 'task.name': {cfg.name!r} returned {type(task).__name__}, expected an rsft Task")
    train = task.train[: cfg.max_train_prompts] if cfg.max_train_prompts else task.train
    evals = task.eval[: cfg.max_eval_prompts] if cfg.max_eval_prompts else task.eval
    return dataclasses.replace(task, train=train, eval=evals)
