"""What a `scorer:` spec in a config means, and the scorer it builds.

The forms, each resolved through `rsft.core.registry`:
- None: the task's own scorer;
- a built-in name (``numeric``) or ``{name: numeric, kwargs: {...}}``: the
  built-in's factory, called with the kwargs (checked against its signature);
- ``"module:function"``: the user's scorer itself; with ``kwargs`` it is a
  factory, called with them, that returns the scorer;
- ``{combine: sum|max|min|gate, ...}``: a combination (`rsft.parts.scoring.combine`),
  whose children are specs of their own.

It builds, and checks a scorer's signature against the columns it will get
(`check_scorer`); it does not score (`rsft.parts.scoring.base` runs scorers).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.registry import BUILTINS, check_options, lookup, parameters
from rsft.parts.scoring import combine
from rsft.parts.scoring.base import scorer_name

GIVEN = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}  # rsft/TRL pass these


def check_scorer(scorer: Any, columns: set[str], key: str, hint: str = "") -> None:
    """Callable, and every parameter its signature requires is a dataset column (or passed by rsft); so are
    a judge's rubric placeholders, and the same holds for every scorer of a combination."""
    if not callable(scorer):
        raise ConfigError(f"key '{key}': the scorer is not callable ({type(scorer).__name__})")
    for child_key, child in getattr(scorer, "children", ()):  # a combination: each child gets the same columns
        check_scorer(child, columns, child_key, hint)
    missing = sorted(set(getattr(scorer, "template_columns", ())) - columns)
    if missing:
        raise ConfigError(f"key '{key}.kwargs.template': the rubric names {{{missing[0]}}}, a column the prompts "
                          f"do not have (columns: {sorted(columns) or 'none'}; {{prompt}} and {{completion}} are "
                          "always there)")
    check_server = getattr(scorer, "check_server", None)  # a scorer behind a server (the judge): it answers
    if callable(check_server):
        check_server()
    try:
        params = list(inspect.signature(scorer).parameters.values())
    except (TypeError, ValueError):
        return
    name = scorer_name(scorer)
    # rsft calls a scorer as TRL does, by keyword: prompts=, completions=, completion_ids=, **columns
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    lacking = [n for n in ("prompts", "completions") if n not in named and not takes_any]
    positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if lacking or positional_only:
        raise ConfigError(f"key '{key}': scorer {name} is called as f(prompts=..., completions=..., **columns) "
                          f"(TRL's reward signature); {name}{inspect.signature(scorer)} cannot take "
                          f"{(lacking or positional_only)[0]!r} by keyword")
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [n for n in required if n not in columns and n not in GIVEN]
    if missing:
        raise ConfigError(f"key '{key}': scorer {name} needs the column {missing[0]!r}, which the prompts do not "
                          f"have (columns: {sorted(columns) or 'none'}){hint}")


def build_scorer(spec: Any, default: Callable[..., Any] | None = None, key: str = "scorer") -> Callable[..., Any]:
    """The scorer a config names (see the module docstring for the forms)."""
    if spec is None:
        if default is None:
            raise ConfigError(f"key '{key}': this task has no default scorer; name one")
        return default
    if isinstance(spec, dict) and "combine" in spec:
        return combine.from_spec(spec, key, build_scorer)
    kwargs: dict[str, Any] = {}
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "kwargs"}
        if unknown or "name" not in spec:
            raise ConfigError(f"key '{key}': expected {{name, kwargs}} or {{combine, ...}}, got keys {sorted(spec)}")
        if not isinstance(spec.get("kwargs") or {}, dict):
            raise ConfigError(f"key '{key}.kwargs': expected a mapping of options, got {spec['kwargs']!r}")
        kwargs = dict(spec.get("kwargs") or {})
        spec = spec["name"]
    if not isinstance(spec, str):
        raise ConfigError(f"key '{key}': expected a scorer name or 'module:function', got {spec!r}")
    if spec.lstrip().startswith("{"):
        raise ConfigError(f"key '{key}': {spec!r} is not a valid inline spec (a YAML mapping such as "
                          "'{name: numeric, kwargs: {field: answer}}')")
    factory = lookup("scorer", spec, key)
    if not callable(factory):
        raise ConfigError(f"key '{key}': {spec!r} is not callable")
    if spec not in BUILTINS["scorer"] and not kwargs:
        return factory  # a user's scorer itself
    # a built-in that names its own key in errors (the judge: its server's base_url) is told where it is
    names_key = "config_key" in parameters(factory)
    options = check_options(factory, kwargs, f"{key}.kwargs", what=f"scorer {spec!r}",
                            given=("config_key",) if names_key else ())
    try:
        return factory(**options, **({"config_key": key} if names_key else {}))
    except ImportError as e:
        raise ConfigError(f"key '{key}': scorer {spec!r} needs an optional dependency: {e} "
                          "(see the README's extras)") from None
    except (TypeError, ValueError, OSError) as e:
        raise ConfigError(f"key '{key}': scorer {spec!r}: {str(e).splitlines()[0]}") from None
