"""vLLM in-process (`sampling.engine: vllm`, the `rsft[vllm]` extra): PagedAttention batching, on GPU or vLLM's CPU build.

What it does:
- Prompts go in as token ids (`TokensPrompt`) from `rsft.inputs.data.formats.prompt_ids`, so vLLM samples
  from exactly the context SFT trains on (no second BOS from a chat template).
- K samples per prompt come from one request with ``n=K``. vLLM seeds each request's own generator
  and gives its i-th child ``seed + i``; rsft sets a prompt's seed from `sample_seed(seed, round,
  prompt id, 0)` plus `first_index`, so sample index i always draws with the same seed, whatever the
  batch and whichever wave of adaptive allocation draws it. vLLM documents per-request seeds as
  reproducible on the same hardware and version; that is the determinism this engine promises.
- It stops on every id of `rsft.inputs.modeling.stop_token_ids` (``stop_token_ids``), as the other engines do,
  and the id that stopped a sample is its last token id.
- `Sample.logprob` sums the raw log-probabilities vLLM returns for each sampled token
  (``logprobs_mode: raw_logprobs``, before temperature and filtering), as the other engines do.
- `Sample.entropy` is an estimate from the top-20 raw log-probabilities of each step, put through
  the same temperature, top-k and top-p as the draw and renormalised over those 20. It is exact when
  the filtered distribution fits in the top 20 (a char model; top_k <= 20) and a lower bound
  otherwise.
- `engine_options` pass through to `vllm.LLM(...)` (tensor_parallel_size, gpu_memory_utilization,
  max_model_len, enforce_eager, ...); a name that neither `LLM` nor `EngineArgs` knows is a one-line
  error when the config is checked. rsft itself sets model, tokenizer, dtype, trust_remote_code.
- A LoRA run (`lora_rank`, passed by rsft when `train.lora` is set) loads the base with
  ``enable_lora`` and serves each round's adapter with a `LoRARequest` (`switch`) when the adapter was
  trained on the loaded base (`train.init: base`); otherwise it loads the round's merged model.
- `close` shuts the engine core down, so training gets the memory back; rsft calls it before each
  train stage (unless the engine can `switch`, which keeps the base loaded).

It does not do beam search, or sample from a model vLLM does not support (on CPU, head sizes of 32
and multiples of 16 from 64 up).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError, RsftError
from rsft.core.records import Prompt, Sample
from rsft.inputs.data.formats import prompt_ids
from rsft.inputs.modeling import generation_eos, load_tokenizer, stop_token_ids
from rsft.inputs.serving.managed import cpu_kv_cache_env
from rsft.parts.sampling.base import EngineFactory, SamplingParams, sample_seed
from rsft.parts.sampling.logits import entropy_from_top

TOP_LOGPROBS = 20  # vLLM's default max_logprobs
SET_BY_RSFT = {"model", "tokenizer", "dtype", "trust_remote_code"}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's MaxLoRARanks


def llm_option_names() -> set[str]:
    """What `vllm.LLM(...)` accepts: its own parameters and every `EngineArgs` field."""
    from vllm import LLM, EngineArgs

    names = {p for p in inspect.signature(LLM.__init__).parameters if p not in ("self", "kwargs")}
    return (names | {f.name for f in dataclasses.fields(EngineArgs)}) - SET_BY_RSFT


def check_options(options: dict[str, Any], key: str = "sampling.engine_options") -> None:
    """The hook `rsft.parts.sampling.engines` calls for a factory that takes **options: each must be an
    `LLM` / `EngineArgs` name."""
    known = llm_option_names()
    for name in options:
        if name in SET_BY_RSFT:
            raise ConfigError(f"key '{key}.{name}': rsft sets it from the `model` section")
        if name not in known:
            close = sorted(k for k in known if k.startswith(name[:4]))[:5]
            raise ConfigError(f"key '{key}.{name}': not an option of vllm.LLM"
                              + (f" (close: {', '.join(close)})" if close else ""))


def _adapter_of(model_path: str) -> Path | None:
    """rsft keeps a LoRA round's adapter beside its merged model: ``model-adapter/``."""
    adapter = Path(model_path).with_name(Path(model_path).name + "-adapter")
    return adapter if (adapter / "adapter_config.json").is_file() else None


def _adapter_base(adapter: Path) -> str:
    return str(json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path") or "")


class VLLMEngine:
    """Samples with an in-process `vllm.LLM`; see the module docstring for what it guarantees."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, dtype: str, base_path: str, lora: bool,
                 stop_ids: list[int] = ()) -> None:
        self.llm, self.tokenizer, self.precision = llm, tokenizer, dtype
        self.stop_ids = list(stop_ids)  # vLLM stops on its own EOS; these add generation_config's and end-of-turn
        self.base_path, self.lora = base_path, lora
        try:
            vocab = int(llm.llm_engine.model_config.get_vocab_size())
        except Exception:  # noqa: BLE001 - an older or newer vLLM: the tokenizer's size will do
            vocab = len(tokenizer)
        self.top_logprobs = min(TOP_LOGPROBS, vocab, len(tokenizer))  # vLLM fails when asked for more than V
        self.lora_request: Any = None
        self._lora_ids: dict[str, int] = {}

    @classmethod
    def from_path(cls, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                  trust_remote_code: bool = False, lora_rank: int | None = None, **options: Any) -> VLLMEngine:
        """The registry's factory. With `lora_rank`, the base of the round's adapter is loaded with LoRA
        enabled, and the adapter is served on it."""
        try:
            from vllm import LLM
        except ImportError as e:
            raise ConfigError(f"key 'sampling.engine': vllm is not installed ({e}); pip install 'rsft[vllm]'") from None
        check_options(options)  # also checked when the config was, but a direct caller gets the same message
        adapter = _adapter_of(model_path) if lora_rank else None
        base = _adapter_base(adapter) if adapter is not None else ""
        load = base if base and Path(base).is_dir() else model_path
        if lora_rank:
            rank = next((r for r in LORA_RANKS if r >= lora_rank), LORA_RANKS[-1])
            options = {"enable_lora": True, "max_lora_rank": rank, **options}
        tok = load_tokenizer(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        options.setdefault("max_logprobs", TOP_LOGPROBS)
        os.environ.update(cpu_kv_cache_env())
        try:
            llm = LLM(model=load, tokenizer=tokenizer_path or load, dtype=dtype, trust_remote_code=trust_remote_code,
                      **options)
        except Exception as e:  # noqa: BLE001 - vLLM raises many kinds; all mean "cannot serve this here"
            raise RsftError(f"vllm could not load {load!r}: {_reason(e)}") from None
        engine = cls(llm, tok, dtype, load, bool(lora_rank), stop_token_ids(tok, generation_eos(load)))
        if load != model_path and not engine.switch(model_path):
            engine.close()
            raise RsftError(f"vllm: cannot serve {model_path!r} as an adapter of {load!r}")
        return engine

    def switch(self, model_path: str) -> bool:
        """Serve another checkpoint without reloading, when it is a LoRA adapter of the loaded base."""
        if model_path == self.base_path:
            self.lora_request = None
            return True
        adapter = _adapter_of(model_path) if self.lora else None
        if adapter is None or _adapter_base(adapter) != self.base_path:
            return False
        from vllm.lora.request import LoRARequest

        key = str(adapter.resolve())
        lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        self.lora_request = LoRARequest(f"rsft-{lora_id}", lora_id, key)
        return True

    def close(self) -> None:
        """Shut the engine core down (its processes and memory); the engine is unusable afterwards."""
        llm, self.llm = self.llm, None
        if llm is not None:
            engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if engine_core is not None:
                engine_core.shutdown()
            del llm

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        if not prompts:
            return []
        if self.llm is None:
            raise RsftError("vllm engine: used after close()")
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        inputs, requests = [], []
        for p in prompts:
            ids = prompt_ids(p, self.tokenizer)
            seed = (sample_seed(params.seed, params.round, p.id, 0) & 0x3FFFFFFF) + params.first_index
            inputs.append(TokensPrompt(prompt_token_ids=ids))
            requests.append(VSamplingParams(
                n=n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else 0,
                max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=seed,
                stop_token_ids=self.stop_ids or None, logprobs=self.top_logprobs, skip_special_tokens=True,
            ))
        outs = self.llm.generate(inputs, requests, use_tqdm=False, lora_request=self.lora_request)
        return [self._samples(p, out, n, params) for p, out in zip(prompts, outs, strict=True)]

    def _samples(self, prompt: Prompt, out: Any, n: int, params: SamplingParams) -> list[Sample]:
        by_index = {o.index: o for o in out.outputs}
        samples = []
        for i in range(n):
            o = by_index[i]
            steps = list(o.logprobs or [])
            logprob = sum(step[t].logprob for step, t in zip(steps, o.token_ids) if t in step)
            samples.append(Sample(
                prompt_id=prompt.id, index=params.first_index + i, text=o.text, token_ids=tuple(o.token_ids),
                logprob=float(logprob), entropy=entropy_from_top([[lp.logprob for lp in step.values()] for step in steps],
                                                                 params),
                finish_reason="length" if o.finish_reason == "length" else "stop",
            ))
        return samples


def _reason(e: Exception) -> str:
    """One line for why vLLM refused: a pydantic validation's message, else the exception's first line."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', '')}".strip(": ")
        except Exception:  # noqa: BLE001 - not pydantic's after all
            pass
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


FACTORY = EngineFactory(VLLMEngine.from_path, check=check_options, serves_lora=True)  # what the registry's name means
