"""What an agent environment (`rollout.env: module:Class`) must be, checked before any work.

The rollout (`rsft.parts.sampling.rollout`) calls ``Class(prompt, **rollout.env_options)``, then
``reset(prompt)`` and ``step(action) -> (observation, done, info)``. It turns an environment that
raises into an observation or an errored trajectory, as it must for a tool that fails on one action;
but a class with no `step` then fails on every action of every trajectory while the round samples
and trains, and a class whose first parameter is one of its options (no parameter for the prompt)
is told that its real option is not an option. Both are found here, naming `rollout.env`.

It does not construct an environment (that may start a sandbox); a factory function, rather than a
class, is checked only for how it is called.
"""

from __future__ import annotations

import inspect
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.registry import lookup

KEY = "rollout.env"
PROTOCOL = "reset(prompt) -> observation and step(action) -> (observation, done, info)"


def check_env(spec: str | None, options: dict[str, Any], default: Any = None, key: str = KEY) -> None:
    """The environment `spec` names (else the task's own, `default`) can be called as the rollout calls it."""
    target = default if spec is None else lookup("env", spec, key)
    if target is None or not callable(target):
        return  # no environment (single-turn), or one `rsft.parts.sampling.rollout.build_env` refuses itself
    name = repr(spec) if spec is not None else "of the task"
    short = getattr(target, "__name__", "Env")
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = None
    if params is not None:
        first = params[0] if params else None
        if first is None or first.kind in (first.KEYWORD_ONLY, first.VAR_KEYWORD):
            raise ConfigError(f"key '{key}': environment {name} is called as {short}(prompt, **{key}_options), and "
                              f"{short}{inspect.signature(target)} takes no prompt; give it a first parameter "
                              "for the prompt")
        if first.name in options:
            raise ConfigError(f"key '{key}': environment {name} is called as {short}(prompt, **{key}_options), so "
                              f"its first parameter {first.name!r} gets the prompt, yet {key}_options sets it; add a "
                              f"prompt parameter before it ({short}(prompt, {first.name}=..., ...))")
    if inspect.isclass(target):
        for method, arg in (("reset", "prompt"), ("step", "action")):
            _check_method(target, method, arg, name, key)


def _check_method(cls: type, method: str, arg: str, name: str, key: str) -> None:
    """`cls.method` exists and takes one positional argument (after self)."""
    fn = getattr(cls, method, None)
    if not callable(fn):
        raise ConfigError(f"key '{key}': environment {name} has no {method}() method; an environment needs {PROTOCOL}")
    bound = isinstance(inspect.getattr_static(cls, method, None), (staticmethod, classmethod))
    try:
        inspect.signature(fn).bind(*(() if bound else (None,)), arg)
    except TypeError:
        raise ConfigError(f"key '{key}': environment {name}: {method}{inspect.signature(fn)} cannot be called as "
                          f"{method}({arg}); an environment needs {PROTOCOL}") from None
    except ValueError:
        pass  # no signature to read (a builtin): left to the rollout
