"""Any OpenAI-compatible completions server (`sampling.engine: openai`, the `rsft[openai]` extra).

`vllm serve`, SGLang, llama.cpp's server or `transformers serve`, named by `base_url`; or, with
``serve: true``, a `vllm serve` that rsft starts on the round's model and stops again (managed mode,
`rsft.inputs.serving.managed`; ``python:`` names the interpreter of the venv where vLLM is installed).

Requests (`/v1/completions`): the prompt as token ids from `rsft.inputs.data.formats.prompt_ids` (``prompt_format:
ids``, what SFT trains on) or as the same ids decoded to text without a leading BOS, which the server
adds back (``prompt_format: text``, for servers that take only text); ``n``, temperature, top_p,
top_k, max_tokens, stop, a seed per prompt as the vllm engine sets it (sample index i draws with
``seed + i``), and ``logprobs`` (20 by default) for logprobs and the entropy estimate. vLLM's
``return_token_ids`` and ``return_tokens_as_token_ids`` give exact token ids; a server without them
has its text re-tokenized locally.

What servers do differently, and what rsft does about it:
- a server that returns fewer than ``n`` choices (`transformers serve` ignores ``n``) gets one more
  request per missing sample, with that sample's own seed;
- a server that returns no logprobs leaves `Sample.logprob` and `Sample.entropy` None (not measured);
- a server that ignores ``stop`` has its text cut at the stop strings here.

Failures: requests run `max_concurrency` at a time with `retries` (backoff) on connection errors and
5xx. A request that still fails makes its samples errors (`Sample.error`), counted in the round's
metrics and never trained on; a server that cannot be reached at all stops the stage with one line
naming `base_url`, and the stage resumes at the first unwritten prompt.

External servers serve the model they were started with. When that is not the round's model, rsft
says so in one line; a server started with ``--enable-lora`` (and VLLM_ALLOW_RUNTIME_LORA_UPDATING)
is given each round's LoRA adapter instead (``/v1/load_lora_adapter``), when the adapter was trained
on the served base (`train.init: base`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError, RsftError
from rsft.core.progress import notice
from rsft.core.records import Prompt, Sample
from rsft.inputs.data.formats import prompt_ids
from rsft.inputs.modeling import generation_eos, load_tokenizer, stop_token_ids
from rsft.inputs.serving.client import Client
from rsft.parts.sampling.base import EngineFactory, SamplingParams, cut_at_stop, sample_seed
from rsft.parts.sampling.logits import entropy_from_top

TOKEN_ID = "token_id:"


def check_options(options: dict[str, Any], key: str) -> None:
    """The registry's hook (`rsft.parts.sampling.engines.check_engine_options`): the options checked before any
    work, by `rsft.inputs.serving.options`, rather than when the engine loads after the base model is built."""
    from rsft.inputs.serving.options import check_engine_options

    check_engine_options(options, key)


def _adapter_of(model_path: str) -> Path | None:
    adapter = Path(model_path).with_name(Path(model_path).name + "-adapter")
    return adapter if (adapter / "adapter_config.json").is_file() else None


class OpenAIEngine:
    """Samples through an OpenAI-compatible server; see the module docstring."""

    name = "openai"

    def __init__(self, client: Client, model: str, tokenizer: Any, precision: str, server: Any = None,
                 base_root: str = "", prompt_format: str = "ids", logprobs: int = 20) -> None:
        self.client, self.model, self.tokenizer, self.precision = client, model, tokenizer, precision
        self.server, self.base_root, self.prompt_format = server, base_root, prompt_format
        self.logprobs = min(logprobs, len(tokenizer))  # a server may fail when asked for more than the vocabulary
        self.request_model = model  # the served model, or the round's LoRA adapter on it
        self.stop_ids = stop_token_ids(tokenizer, None)  # the server's own EOS, plus the template's end of turn
        self._adapters: set[str] = set()

    @classmethod
    def from_path(cls, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                  trust_remote_code: bool = False, base_url: str | None = None, model: str | None = None,
                  api_key_env: str | None = None, max_concurrency: int = 8, timeout: float = 300.0,
                  retries: int = 3, serve: bool = False, python: str | None = None, serve_args: list[str] = (),
                  startup_timeout: float = 900.0, prompt_format: str = "ids", logprobs: int = 20,
                  lora_rank: int | None = None) -> OpenAIEngine:
        """The registry's factory: `base_url` (+ `model`) for a running server, or `serve: true` to start one."""
        if prompt_format not in ("ids", "text"):
            raise ConfigError(f"key 'sampling.engine_options.prompt_format': expected ids or text, got {prompt_format!r}")
        if serve == (base_url is not None):
            raise ConfigError("key 'sampling.engine_options': give exactly one of base_url (a running server) "
                              "or serve: true (rsft starts vllm serve)")
        tok = load_tokenizer(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        server = None
        if serve:
            from rsft.inputs.serving.managed import ManagedServer

            server = ManagedServer(model_path, python, dtype, list(serve_args), startup_timeout=startup_timeout)
            base_url, model = server.start(), server.served_name
        try:
            client = Client(base_url, api_key_env, max_concurrency, timeout, retries)
            served = client.get("/models").get("data") or []
            if model is None:
                if not served:
                    raise RsftError(f"{base_url}/models lists no model; set engine_options.model")
                model = served[0]["id"]
            root = next((m.get("root") or m["id"] for m in served if m["id"] == model), model)
        except BaseException:
            if server is not None:
                server.stop()
            raise
        engine = cls(client, model, tok, "server" if server is None else dtype, server, str(root), prompt_format, logprobs)
        if Path(model_path).is_dir():
            engine.stop_ids = stop_token_ids(tok, generation_eos(model_path))
        if server is None and not engine.switch(model_path) and Path(root).resolve() != Path(model_path).resolve():
            notice(f"openai engine: {base_url} serves {root!r}, not {model_path!r}: the samples come from the "
                   "server's model (start it on the round's model, or use serve: true)")
        return engine

    def switch(self, model_path: str) -> bool:
        """Serve a round's LoRA adapter on the running base, when the server allows runtime adapters."""
        if self.server is not None:  # a managed server is restarted on each round's model instead
            return False
        adapter = _adapter_of(model_path)
        if adapter is None:
            return Path(self.base_root).resolve() == Path(model_path).resolve()
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
        if not base or Path(base).resolve() != Path(self.base_root).resolve():
            return False
        name = "rsft-" + hashlib.sha256(str(adapter.resolve()).encode()).hexdigest()[:12]
        if name not in self._adapters:
            reply = self.client.post("/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter.resolve())})
            if reply.error is not None:
                return False
            self._adapters.add(name)
        self.request_model = name
        return True

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()

    def _prompt(self, prompt: Prompt) -> list[int] | str:
        ids = prompt_ids(prompt, self.tokenizer)
        if self.prompt_format == "ids":
            return ids
        bos = self.tokenizer.bos_token_id
        adds_bos = bos is not None and self.tokenizer("").input_ids[:1] == [bos]
        return self.tokenizer.decode(ids[1:] if adds_bos and ids[:1] == [bos] else ids, skip_special_tokens=False)

    def _body(self, prompt: Any, n: int, seed: int, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.request_model, "prompt": prompt, "n": n, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "seed": seed,
            "return_token_ids": True, "return_tokens_as_token_ids": True, "skip_special_tokens": True,
        }
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if self.stop_ids:  # vLLM's extension; servers that do not know it ignore it and stop on their EOS
            body["stop_token_ids"] = self.stop_ids
        if params.stop:
            body["stop"] = list(params.stop)
        if self.logprobs:
            body["logprobs"] = self.logprobs
        return body

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        if not prompts:
            return []
        wire = [self._prompt(p) for p in prompts]
        seeds = [(sample_seed(params.seed, params.round, p.id, 0) & 0x3FFFFFFF) + params.first_index for p in prompts]
        replies = self.client.post_many("/completions", [self._body(w, n, s, params) for w, s in zip(wire, seeds)])
        choices: list[dict[int, dict[str, Any] | str]] = []
        missing: list[tuple[int, int]] = []  # (prompt, sample index) a server that ignores n did not return
        for b, reply in enumerate(replies):
            got: dict[int, dict[str, Any] | str] = {}
            if reply.error is not None:
                got = {i: reply.error for i in range(n)}
            else:
                for c in (reply.body or {}).get("choices") or []:
                    if c.get("index", 0) < n and c.get("index", 0) not in got:
                        got[c.get("index", 0)] = c
                missing += [(b, i) for i in range(n) if i not in got]
            choices.append(got)
        if missing:
            extra = self.client.post_many("/completions", [self._body(wire[b], 1, seeds[b] + i, params)
                                                           for b, i in missing])
            for (b, i), reply in zip(missing, extra):
                c = ((reply.body or {}).get("choices") or [None])[0] if reply.error is None else None
                choices[b][i] = c if c is not None else (reply.error or "the server returned no choice")
        return [[self._sample(p, i, choices[b][i], params) for i in range(n)] for b, p in enumerate(prompts)]

    def _sample(self, prompt: Prompt, i: int, choice: dict[str, Any] | str, params: SamplingParams) -> Sample:
        index = params.first_index + i
        if isinstance(choice, str):
            return Sample(prompt.id, index, "", (), None, None, "error", error=choice)
        text = choice.get("text") or ""
        cut, stopped = cut_at_stop(text, params.stop) if params.stop else (text, False)
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        ids = choice.get("token_ids")
        if ids is None and tokens and all(str(t).startswith(TOKEN_ID) for t in tokens):
            ids = [int(str(t)[len(TOKEN_ID):]) for t in tokens]
        if ids is None:  # a server that reports neither: the local tokenizer's reading of the text
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        token_lps = [x for x in (lp.get("token_logprobs") or []) if x is not None]
        logprob = float(sum(token_lps)) if token_lps else None
        top = [list((step or {}).values()) for step in (lp.get("top_logprobs") or [])]
        reason = choice.get("finish_reason")
        return Sample(prompt.id, index, cut, tuple(int(t) for t in ids), logprob,
                      entropy_from_top(top, params) if top else None,
                      "length" if reason == "length" and not stopped else "stop")


FACTORY = EngineFactory(OpenAIEngine.from_path, check=check_options, serves_lora=True)  # what the registry's name means
