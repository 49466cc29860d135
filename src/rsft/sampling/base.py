"""The Engine protocol, sampling parameters, and per-sample seeds.

An engine turns prompts into K samples each and returns them grouped by
prompt, in prompt order. Randomness is per sample: the seed of sample i of
prompt p in round r is derived from (seed, r, p, i) with hashlib, never
Python's `hash()`, so a sample does not depend on which batch it landed in,
and a resumed run draws exactly what an uninterrupted one would.

Heavy engines are imported only when chosen; they are optional extras.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rsft.errors import ConfigError
from rsft.records import Prompt, Sample

if TYPE_CHECKING:
    from rsft.config import SamplingConfig


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0
    round: int = 0
    first_index: int = 0  # sample indices (and their seeds) start here: later waves of adaptive sampling

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_config(cls, cfg: SamplingConfig, seed: int, round_index: int) -> SamplingParams:
        return cls(cfg.temperature, cfg.top_p, cfg.top_k, cfg.max_new_tokens, tuple(cfg.stop), seed, round_index)


class Engine(Protocol):
    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        """K=n samples for each prompt, as one list per prompt in prompt order."""
        ...


def sample_seed(seed: int, round_index: int, prompt_id: str, index: int) -> int:
    """A 63-bit seed for one sample, stable across processes, batches and resumes."""
    key = f"{seed}/{round_index}/{prompt_id}/{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def auto_engine_name() -> str:
    """What `engine: auto` means on this machine: the fastest engine installed for the device.

    On CPU that is CTranslate2 when the `rsft[ctranslate2]` extra is installed (5.0x HF generate
    on a 25M model, see BENCHMARKS.md), else our transformers loop. On CUDA it is the transformers
    loop: there is no vLLM engine yet, and the CTranslate2 engine here is only measured on CPU.
    """
    import importlib.util

    import torch

    if torch.cuda.is_available():
        return "transformers"
    return "ctranslate2" if importlib.util.find_spec("ctranslate2") is not None else "transformers"


def build_engine(name: str, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                 trust_remote_code: bool = False, **options: object) -> Engine:
    """The engine a config names; `options` are the engine's own settings (sampling.engine_options).

    'auto' picks per device (see `auto_engine_name`); 'module:factory' names a user's engine factory.
    """
    check_engine_options(name, options)
    if name == "auto":
        name = auto_engine_name()
    if name in ("ctranslate2", "transformers"):
        return _builtin_engine(name).from_path(model_path, tokenizer_path, dtype, trust_remote_code=trust_remote_code,
                                               **options)
    if name == "vllm":
        raise ConfigError("key 'sampling.engine': the vllm engine is not available in this build; use auto, "
                          "transformers or ctranslate2")
    if name == "fake":
        from rsft.sampling.fake import FakeEngine

        return FakeEngine()
    if ":" in name:
        from rsft.registry import import_object

        factory = import_object(name, "sampling.engine")
        return factory(model_path=model_path, tokenizer_path=tokenizer_path, dtype=dtype, **options)
    raise ConfigError(f"key 'sampling.engine': unknown engine {name!r}, expected auto, transformers, ctranslate2, "
                      "fake or 'module:factory'")


def check_engine_options(name: str, options: dict[str, Any]) -> None:
    """Name a misspelt `sampling.engine_options` key before the engine's constructor turns it into a TypeError."""
    import inspect

    resolved = auto_engine_name() if name == "auto" else name
    if not options or resolved not in ("ctranslate2", "transformers"):
        return
    chosen = f"{resolved} engine" + (" (what auto chose here)" if name == "auto" else "")
    cls = _builtin_engine(resolved)
    known = {k for k in [*inspect.signature(cls.from_path).parameters, *inspect.signature(cls.__init__).parameters]
             if k not in ("self", "cls", "path", "model_path", "tokenizer_path", "dtype", "model", "tokenizer", "model_dir",
                          "eos_ids", "trust_remote_code", "kwargs")}
    for key in options:
        if key not in known:
            raise ConfigError(f"key 'sampling.engine_options.{key}': not an option of the {chosen}; "
                              f"expected one of {', '.join(sorted(known))}")


def _builtin_engine(name: str) -> Any:
    """The class of a built-in engine; a missing optional extra is a config error, not an ImportError."""
    if name == "ctranslate2":
        try:
            from rsft.sampling.ctranslate2_engine import CTranslate2Engine
        except ImportError:
            raise ConfigError("key 'sampling.engine': ctranslate2 is not installed (pip install 'rsft[ctranslate2]')") from None
        return CTranslate2Engine
    from rsft.sampling.transformers_engine import TransformersEngine

    return TransformersEngine


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), not the host's count.

    torch and CTranslate2 size their thread pools from the host's cores; in a
    2-CPU container on a 64-core host that oversubscribes 16x. This does not see
    a CFS quota (docker --cpus without a cpuset); set OMP_NUM_THREADS then.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
