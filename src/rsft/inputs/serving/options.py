"""The settings of an OpenAI-compatible server, checked before any work: the openai engine's
`engine_options` and the judge scorer's `kwargs` share them.

`Client` and `ManagedServer` would refuse most of these only when they are built: for the engine,
after the base model was built and evaluated; for a judge's server, when a round's samples are
scored. Checked here, a mistake is one line naming the key (``sampling.engine_options.max_concurrency``,
``scorer.kwargs.python``) and costs nothing. (`rsft.inputs.serving.client.check_reachable` asks a running
server for its models, as the engine does when it loads.)

It starts no server and sends no completion request.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError


def check_client_options(key: str, base_url: Any, max_concurrency: Any = 8, timeout: Any = 120.0, retries: Any = 3,
                         api_key_env: Any = None) -> None:
    """What `Client` needs: an http(s) URL, at least one request at a time, retries >= 0, a positive timeout,
    and the API key's environment variable set."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"key '{key}.base_url': expected http(s)://HOST:PORT/v1, got {base_url!r}")
    for name, value, low, what in (("max_concurrency", max_concurrency, 1, "at least 1"),
                                   ("retries", retries, 0, "0 or more")):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"key '{key}.{name}': expected an integer {what}, got {value!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"key '{key}.timeout': expected seconds > 0, got {timeout!r}")
    if api_key_env and not os.environ.get(api_key_env):
        raise ConfigError(f"key '{key}.api_key_env': the environment variable {api_key_env!r} is not set")


def check_serve_python(key: str, python: str | None) -> None:
    """The interpreter `vllm serve` would be started with exists and can import vllm (without importing it:
    that takes seconds)."""
    if python is None:
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"key '{key}': rsft starts vllm serve with this interpreter ({sys.executable}), "
                              "which has no vllm; set python: to the interpreter of a venv where vLLM is installed")
        return
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        raise ConfigError(f"key '{key}': {python!r}: no such interpreter (expected the python of a venv where "
                          "vLLM is installed)")
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 3)"
    try:
        found = subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"key '{key}': {python!r} cannot be run ({type(e).__name__}: {e})") from None
    if found != 0:
        raise ConfigError(f"key '{key}': {python!r} cannot import vllm (exit {found}); name the python of a venv "
                          "where vLLM is installed")


def check_engine_options(options: dict[str, Any], key: str) -> None:
    """The openai engine's options (`rsft.parts.sampling.openai_engine.OpenAIEngine.from_path`): a running server
    (`base_url`) or one rsft starts (`serve: true`), exactly one; the client's settings; the serve python."""
    serve, base_url = options.get("serve", False), options.get("base_url")
    if bool(serve) == (base_url is not None):
        raise ConfigError(f"key '{key}': give exactly one of base_url (a running server) or serve: true (rsft "
                          f"starts vllm serve); got {'both' if serve else 'neither'}")
    fmt = options.get("prompt_format", "ids")
    if fmt not in ("ids", "text"):
        raise ConfigError(f"key '{key}.prompt_format': expected ids or text, got {fmt!r}")
    for name, low in (("logprobs", 0), ("startup_timeout", 1e-9)):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or value < low):
            raise ConfigError(f"key '{key}.{name}': expected a number >= {low:g}, got {value!r}")
    client = {k: options[k] for k in ("max_concurrency", "timeout", "retries", "api_key_env") if k in options}
    check_client_options(key, base_url if base_url is not None else "http://127.0.0.1/v1", **client)
    if serve:
        check_serve_python(f"{key}.python", options.get("python"))

