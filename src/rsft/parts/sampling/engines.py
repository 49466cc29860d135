"""Building the engine a config names: `auto` resolved for this machine, the factory from the registry,
its options checked against the factory's signature.

The factories themselves live one per engine file (see `rsft.core.registry.BUILTINS`);
this module only chooses and calls. It samples nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.progress import notice
from rsft.core.registry import BUILTINS, accepts_any, check_options, lookup, parameters
from rsft.parts.sampling.base import MODEL_ARGS, Engine, EngineFactory

KEY = "sampling.engine"
_SAID: set[str] = set()  # user factories whose plain-function notice was given


EXTRAS = {"ctranslate2": "ctranslate2", "vllm": "vllm", "openai": "httpx"}  # engine -> the module its extra installs


def auto_engine_name() -> str:
    """What `engine: auto` means on this machine: the fastest engine installed for the device.

    On CUDA that is vLLM when the `rsft[vllm]` extra is installed, else our transformers loop. On CPU
    it is CTranslate2 when `rsft[ctranslate2]` is installed (5.0x HF generate on a 25M model, see
    BENCHMARKS.md), else the transformers loop; vLLM's CPU build is chosen on CPU only by name.
    """
    import torch

    if torch.cuda.is_available():
        return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    return "ctranslate2" if importlib.util.find_spec("ctranslate2") is not None else "transformers"


def engine_factory(name: str, key: str = KEY) -> tuple[str, EngineFactory]:
    """(the resolved name, its factory); a built-in whose optional extra is missing is a one-line error.
    A user's 'module:function' comes back wrapped as an `EngineFactory` with no checks and no LoRA serving."""
    resolved = auto_engine_name() if name == "auto" else name
    if resolved in EXTRAS and importlib.util.find_spec(EXTRAS[resolved]) is None:
        raise ConfigError(f"key '{key}': {resolved} is not installed (pip install 'rsft[{resolved}]')")
    found = lookup("engine", resolved, key)
    if isinstance(found, EngineFactory):
        return resolved, found
    hooks = "lora_rank" in parameters(found) or callable(getattr(sys.modules.get(getattr(found, "__module__", "")),
                                                                  "check_options", None))
    if hooks and resolved not in _SAID:  # what rsft used to find by name: said once, not dropped silently
        _SAID.add(resolved)
        notice(f"{key}: {resolved!r} is a plain function, so rsft neither passes it lora_rank nor calls its "
               "module's check_options; name an EngineFactory(fn, check=..., serves_lora=True) instead")
    return resolved, EngineFactory(found)


def check_engine_options(name: str, options: dict[str, Any], key: str = "sampling.engine_options",
                         name_key: str = KEY) -> tuple[EngineFactory, dict[str, Any]]:
    """The engine factory, and `options` checked against its signature: it must take the MODEL_ARGS, and
    every option must be one of its other parameters; then the factory's own `check`, if it states one.
    `name_key` and `key` are the config keys named in errors (sampling.engine / eval.engine)."""
    resolved, factory = engine_factory(name, name_key)
    build = factory.build
    what = f"the {resolved} engine" + (" (what auto chose here)" if name == "auto" else "")
    if resolved not in BUILTINS["engine"]:
        what = f"engine factory {resolved!r}"
        missing = [a for a in MODEL_ARGS if a not in parameters(build)]
        if missing and not accepts_any(build):
            raise ConfigError(f"key '{name_key}': {what} must take ({', '.join(MODEL_ARGS)}, **options); "
                              f"it has no parameter {missing[0]!r}")
    checked = check_options(build, options, key, what=what, given=MODEL_ARGS)
    if factory.check is not None:  # a factory passing **options on sees those its signature does not name
        factory.check({k: v for k, v in options.items() if k not in parameters(build)} if accepts_any(build)
                      else checked, key)
    return factory, checked


def build_engine(name: str, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                 trust_remote_code: bool = False, key: str = KEY, **options: Any) -> Engine:
    """The engine a config names (under `key`), loaded on `model_path`; `options` are its engine_options."""
    factory, options = check_engine_options(name, options, f"{key}_options", key)
    return factory(model_path=model_path, tokenizer_path=tokenizer_path, dtype=dtype,
                   trust_remote_code=trust_remote_code, **options)


def exact_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` changed so that the engine computes in the checkpoint's own precision.

    Only CTranslate2 quantizes on its own (`compute_type: auto` is int8 from 10M parameters up); it is
    set to float32, which holds fp32, bf16 and fp16 weights exactly. Evaluation uses this by default,
    so a reported pass@1 is the saved checkpoint's, not a quantized copy's.
    """
    resolved = auto_engine_name() if name == "auto" else name
    if resolved == "ctranslate2":
        return {**options, "compute_type": "float32"}
    return dict(options)
