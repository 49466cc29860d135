"""The one explicit name → factory table, read where the config is parsed.

Users name their own code as ``"package.module:function"``. There is no
decorator-based registration and no subclass discovery: what a name means is
written down here, or in the module the user names.
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


def builtin_scorers() -> dict[str, Callable[..., Callable[..., Any]]]:
    """Scorer name → factory(**kwargs) returning a scorer callable."""
    from rsft.tasks.addition import addition_scorer

    return {"addition": lambda: addition_scorer}
