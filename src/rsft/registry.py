"""The one explicit name → factory table, read where the config is parsed.

Users name their own code as ``"package.module:function"``. There is no
decorator-based registration and no subclass discovery: what a name means is
written down here, or in the module the user names. Heavy or optional
dependencies (math-verify, jsonschema, a reward model) are imported only when
their scorer is built.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.errors import ConfigError


def import_object(spec: str, key: str) -> Any:
    """Import ``module:attr``; the working directory is importable, as it is for a user's script."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"key '{key}': {spec!r} is not of the form 'module:function'")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"key '{key}': cannot import module {module_name!r} ({e})") from None
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"key '{key}': module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _lazy(module: str, name: str) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> Any:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"scorer needs an optional dependency: {e} (see the README's extras)") from None
        return getattr(mod, name)(**kwargs)

    return factory


def _plain(module: str, name: str) -> Callable[..., Any]:
    """A scorer that is itself the callable (no options)."""
    return lambda: getattr(importlib.import_module(module), name)


SCORERS: dict[str, Callable[..., Callable[..., Any]]] = {
    "addition": _plain("rsft.tasks.addition", "addition_scorer"),
    "countdown": _lazy("rsft.tasks.countdown", "countdown_scorer"),
    "numeric": _lazy("rsft.scoring.verifiers", "numeric"),
    "math": _lazy("rsft.scoring.verifiers", "math_equiv"),
    "match": _lazy("rsft.scoring.verifiers", "match"),
    "regex": _lazy("rsft.scoring.verifiers", "regex"),
    "flag": _lazy("rsft.scoring.verifiers", "flag"),
    "json": _lazy("rsft.scoring.verifiers", "json_schema"),
    "reward_model": _lazy("rsft.scoring.reward_model", "reward_model"),
    "code": _lazy("rsft.scoring.code", "code_scorer"),
}

_COMBINE_KEYS = {"sum": {"combine", "scorers", "weights"}, "max": {"combine", "scorers"},
                 "min": {"combine", "scorers"}, "gate": {"combine", "gate", "then", "min", "otherwise"}}


def _label(spec: Any) -> str:
    if isinstance(spec, str):
        return spec.split(":")[-1]
    if isinstance(spec, dict):
        return str(spec.get("name") or spec.get("combine") or "scorer").split(":")[-1]
    return "scorer"


def _labelled(specs: list[Any], key: str) -> list[tuple[str, Callable[..., Any]]]:
    out, seen = [], {}
    for i, spec in enumerate(specs):
        label = _label(spec)
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}{seen[label]}", build_scorer(spec, key=f"{key}.{i}")))
    return out


def _combination(spec: dict[str, Any], key: str) -> Callable[..., Any]:
    from rsft.scoring import combine

    kind = spec["combine"]
    if kind not in _COMBINE_KEYS:
        raise ConfigError(f"key '{key}.combine': unknown combination {kind!r}, expected one of {sorted(_COMBINE_KEYS)}")
    unknown = set(spec) - _COMBINE_KEYS[kind]
    if unknown:
        raise ConfigError(f"key '{key}': unknown key {sorted(unknown)[0]!r} for combine: {kind}")
    if kind == "gate":
        if "gate" not in spec or "then" not in spec:
            raise ConfigError(f"key '{key}': combine: gate needs 'gate' and 'then' scorers")
        (g,) = _labelled([spec["gate"]], f"{key}.gate")
        (t,) = _labelled([spec["then"]], f"{key}.then")
        return combine.gate(g, t, float(spec.get("min", 1.0)), float(spec.get("otherwise", 0.0)))
    children = spec.get("scorers")
    if not isinstance(children, list) or not children:
        raise ConfigError(f"key '{key}.scorers': expected a non-empty list of scorers")
    labelled = _labelled(children, f"{key}.scorers")
    if kind == "sum":
        weights = spec.get("weights", [1.0] * len(children))
        if not isinstance(weights, list) or len(weights) != len(children):
            raise ConfigError(f"key '{key}.weights': expected {len(children)} numbers, got {weights!r}")
        return combine.weighted_sum(labelled, [float(w) for w in weights])
    return combine.extreme(labelled, max if kind == "max" else min)


def build_scorer(spec: Any, default: Callable[..., Any] | None = None, key: str = "scorer") -> Callable[..., Any]:
    """The scorer a config names.

    None (the task's own), a built-in name, 'module:function', {name, kwargs}, or
    a combination {combine: sum|max|min, scorers: [...], weights: [...]} /
    {combine: gate, gate: ..., then: ..., min: 1.0}.
    """
    if spec is None:
        if default is None:
            raise ConfigError(f"key '{key}': this task has no default scorer; name one")
        return default
    if isinstance(spec, dict) and "combine" in spec:
        return _combination(spec, key)
    kwargs: dict[str, Any] = {}
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "kwargs"}
        if unknown or "name" not in spec:
            raise ConfigError(f"key '{key}': expected {{name, kwargs}} or {{combine, ...}}, got keys {sorted(spec)}")
        kwargs = dict(spec.get("kwargs") or {})
        spec = spec["name"]
    if not isinstance(spec, str):
        raise ConfigError(f"key '{key}': expected a scorer name or 'module:function', got {spec!r}")
    if spec in SCORERS:
        try:
            return SCORERS[spec](**kwargs)
        except TypeError as e:
            raise ConfigError(f"key '{key}': scorer {spec!r}: {e}") from None
    if ":" not in spec:
        raise ConfigError(f"key '{key}': unknown scorer {spec!r}, expected one of {sorted(SCORERS)} or 'module:function'")
    obj = import_object(spec, key)
    if kwargs:  # a factory taking options and returning the scorer
        return obj(**kwargs)
    return obj
