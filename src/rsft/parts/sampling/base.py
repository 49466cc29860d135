"""The Engine protocol, sampling parameters, and per-sample seeds.

An engine turns prompts into K samples each and returns them grouped by
prompt, in prompt order. Randomness is per sample: the seed of sample i of
prompt p in round r is derived from (seed, r, p, i) with hashlib, never
Python's `hash()`, so a sample does not depend on which batch it landed in,
and a resumed run draws exactly what an uninterrupted one would.

An engine is built by a factory, ``factory(model_path, tokenizer_path, dtype,
trust_remote_code, **options)``: the first four are `MODEL_ARGS`, which rsft
passes from the `model` section; the rest of its signature are the engine's
own options (`sampling.engine_options`). Which factory a name means is in
`rsft.core.registry`; `rsft.parts.sampling.engines` builds it. This file builds nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rsft.core.records import Prompt, Sample

if TYPE_CHECKING:
    from rsft.core.config import SamplingConfig


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


MODEL_ARGS = ("model_path", "tokenizer_path", "dtype", "trust_remote_code")  # every engine factory takes these


@dataclass(frozen=True)
class EngineFactory:
    """An engine factory and what rsft must know about it beyond its signature, stated, not sniffed.

    `build` is called as ``build(model_path, tokenizer_path, dtype, trust_remote_code, **options)``.
    `check(options, key)` checks the options beyond their types when the config loads (a draft's path
    exists, vLLM's own engine arguments); for a `build` taking ``**options`` it sees the options its
    signature does not name. `serves_lora`: the factory takes ``lora_rank`` and then loads the base with
    LoRA slots and serves each round's adapter without merging, so a LoRA run passes `train.lora.r`.
    A user's ``module:function`` is wrapped as ``EngineFactory(function)``.
    """

    build: Callable[..., Engine]
    check: Callable[[dict[str, Any], str], None] | None = None
    serves_lora: bool = False

    def __call__(self, **kwargs: Any) -> Engine:
        return self.build(**kwargs)


class Engine(Protocol):
    """`name` and `precision` (the dtype or compute type it samples in) are recorded beside eval metrics.

    Two optional methods, looked up with getattr: ``close()`` frees what the engine holds (processes,
    memory) before training; ``switch(model_path) -> bool`` serves another checkpoint without
    reloading when it can (vLLM with a LoRA adapter), so the engine is kept across training.
    """

    name: str
    precision: str

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
