"""The fast CPU engine: a CTranslate2 conversion of the model, sampled with `Generator.generate_batch`.

  1. The HF checkpoint is converted once (`TransformersConverter`) into a cache entry named by the
     sha256 of its files, the compute type and the CTranslate2 version, written to a temporary
     directory and renamed, so a killed conversion leaves no half entry.
  2. Prompts are sorted by token length and cut into batches under a token budget, at least one
     per worker; batches run in parallel on `inter_threads` single-threaded workers sharing one
     copy of the weights (measured faster here than one multi-threaded worker). Sorting keeps the
     length spread in a batch small: CTranslate2 runs the batch's shortest prompt length in one
     forward pass and feeds the rest of a longer prompt one token per step, for each of its K rows.
  3. `num_hypotheses=K`: each prompt runs once and its KV cache is copied to its K rows;
     finished rows leave the batch.
  4. Tokens, summed logprobs and (optionally) logits come from the results; the step callback
     ends a row early when its text contains a stop string.

Randomness. CTranslate2 4.8 has no per-call or per-row seed: `set_random_seed` sets a global that
a worker thread reads once, at its first random draw, into a thread-local generator it never
reseeds. So per-sample seeds (`sample_seed(seed, round, prompt id, index)`) cannot be honoured.
The rule here: every batch runs on a worker that has never drawn (a fresh `Generator` per wave of
at most `inter_threads` batches; ~20 ms for 25M int8), seeded from `sample_seed` over the batch's
prompt ids, the seeds of a wave handed to its workers in order (`_run_wave`). So **the same
prompts, n, params and engine settings give the same samples**, whatever ran before in the
process; rsft's sample stage cuts batches at fixed prompt offsets, so a resumed run still writes
what an uninterrupted one would. Unlike the transformers engine, a prompt's samples change when
it lands in another batch (other prompts, n, `inter_threads` or `max_batch_tokens`).

Log-probabilities. `Sample.logprob` is `GenerationResult.scores` with `length_penalty=0` (by
default CTranslate2 divides by the length): the sum over the sampled tokens, EOS included, of
log_softmax of the raw logits, before temperature, top-k and top-p, i.e. under the model, as rsft
wants. Under int8 the model itself is quantized: logprobs carry the quantization error.

Entropy. Full distributions come only through `return_logits_vocab`, which keeps a [V] vector per
step per row until the batch ends. With `entropy=None` that is on when the vocabulary has at most
4096 tokens (the built-in char models), and the entropy is the transformers engine's (after
temperature, top-k, top-p; of the raw distribution when greedy). Otherwise `Sample.entropy` is None,
"not measured", never a 0.0 that would read as collapsed entropy.

It does not do beam search or repetition penalties, run on CUDA (use vllm), or convert models
CTranslate2's converter does not know.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import torch

from rsft.core.errors import RsftError
from rsft.core.records import Prompt, Sample
from rsft.inputs.data.formats import prompt_ids
from rsft.inputs.modeling import (
    generation_eos,
    load_tokenizer,
    local_checkpoint,
    stop_token_ids,
    vocabulary_limit,
)
from rsft.parts.sampling.base import EngineFactory, SamplingParams, cut_at_stop, sample_seed, usable_cpus
from rsft.parts.sampling.ctranslate2_convert import convert_cached, count_parameters, resolve_compute_type
from rsft.parts.sampling.logits import filter_logits

ENTROPY_MAX_VOCAB = 4096


def plan_batches(lengths: list[int], n: int, max_new_tokens: int, max_batch_tokens: int,
                 workers: int) -> list[list[list[int]]]:
    """Waves of batches of prompt indices: sorted by length, contiguous, each under the token budget
    rows * (longest prompt + max_new_tokens), as many batches as workers when prompts allow, and
    at most `workers` batches per wave.

    Prompts of one token go in batches of their own: CTranslate2 returns the prompt tokens of the
    longer prompts as output when a batch's shortest prompt has a single token."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    segments = [s for s in ([i for i in order if lengths[i] <= 1], [i for i in order if lengths[i] > 1]) if s]
    batches: list[list[int]] = []
    for seg in segments:
        def cost(chunk: list[int]) -> int:
            return len(chunk) * n * (lengths[chunk[-1]] + max_new_tokens)

        wanted = max(math.ceil(cost(seg) / max_batch_tokens), min(workers, len(seg)))
        count = min(len(seg), math.ceil(wanted / workers) * workers)
        while True:
            q, r = divmod(len(seg), count)
            bounds = [i * q + min(i, r) for i in range(count + 1)]
            chunks = [seg[bounds[i]:bounds[i + 1]] for i in range(count)]
            if count >= len(seg) or all(cost(c) <= max_batch_tokens for c in chunks):
                break
            count = min(len(seg), count + workers)
        batches.extend(chunks)
    return [batches[i:i + workers] for i in range(0, len(batches), workers)]


@dataclass
class _Batch:
    """One CTranslate2 batch. Its step callback, when it needs one, holds its worker at the first token
    (the seeding handshake, see `_run_wave`) and ends a row as soon as its text contains a stop string.
    A Python call per token costs ~10% on a 1M-parameter model, so batches that need neither go without."""

    indices: list[int]
    stop: tuple[str, ...]
    decode: Callable[[list[int]], str]
    started: threading.Event = field(default_factory=threading.Event)
    hold: Callable[[], Any] | None = None
    tokens: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (prompt in batch, hypothesis)

    @property
    def callback(self) -> _Batch | None:
        return self if self.hold is not None or self.stop else None

    def __call__(self, step: Any) -> bool:
        if not self.started.is_set():  # first token: this worker's generator is seeded now
            self.started.set()
            if self.hold is not None:
                self.hold()  # keep the worker until the wave's last batch has a worker of its own
        if not self.stop or step.is_last:
            return False
        row = self.tokens.setdefault((step.batch_id, step.hypothesis_id), [])
        row.append(step.token_id)
        return cut_at_stop(self.decode(row), self.stop)[1]  # True ends this row only


class CTranslate2Engine:
    """Samples from a converted model on the CPU; see the module docstring for what it guarantees."""

    name = "ctranslate2"

    def __init__(self, model_dir: str | Path, tokenizer: Any, eos_ids: list[int], compute_type: str = "float32",
                 inter_threads: int | None = None, intra_threads: int = 1, max_batch_tokens: int = 32768,
                 entropy: bool | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = tokenizer
        self.eos_ids = sorted(set(eos_ids))
        self.compute_type = compute_type
        self.precision = compute_type  # what it computes in, for eval.json
        self.inter_threads = inter_threads or usable_cpus()
        self.intra_threads = intra_threads
        self.max_batch_tokens = max_batch_tokens
        vocab = json.loads((self.model_dir / "vocabulary.json").read_text())
        self._check_vocabulary(vocab)
        self.entropy = len(vocab) <= ENTROPY_MAX_VOCAB if entropy is None else entropy
        self._generator: Any = None  # a generator none of whose workers has drawn a random number yet

    @classmethod
    def from_path(cls, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                  trust_remote_code: bool = False, compute_type: str = "auto", cache_dir: str | Path | None = None,
                  inter_threads: int | None = None, intra_threads: int = 1, max_batch_tokens: int = 32768,
                  entropy: bool | None = None) -> CTranslate2Engine:
        """The registry's factory: convert (or reuse the cached conversion of) `model_path` and load it.

        `dtype` is part of every engine factory's signature; the inference precision here is
        `compute_type` ('auto', 'int8', 'int8_float32' or 'float32')."""
        ckpt = local_checkpoint(model_path)
        compute_type = resolve_compute_type(compute_type, count_parameters(ckpt))
        model_dir = convert_cached(ckpt, compute_type, cache_dir, trust_remote_code)
        tok = load_tokenizer(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        return cls(model_dir, tok, _eos_ids(ckpt, tok), compute_type, inter_threads, intra_threads,
                   max_batch_tokens, entropy)

    def _check_vocabulary(self, vocab: list[str]) -> None:
        """Token strings are how prompts reach CTranslate2: every id the tokenizer and the converted model
        share must name the same token. The converter pads the vocabulary with ``<extra_id_N>`` up to the
        embedding's rows and cuts it at them, so sizes may differ (said in one line by
        `vocabulary_limit`); the ids past the shorter side are suppressed when sampling, and a prompt
        holding one is refused."""
        self.vocab = vocabulary_limit(self.tokenizer, len(vocab), "ctranslate2 engine")
        ours = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab)))
        bad = next((i for i, (a, b) in enumerate(zip(ours, vocab)) if a != b), None)
        if bad is not None:
            raise RsftError(f"ctranslate2 model {str(self.model_dir)!r}: its vocabulary does not match the "
                            f"tokenizer at id {bad} ({vocab[bad]!r} there, {ours[bad]!r} in the tokenizer); pass the "
                            "tokenizer it was converted with")
        # embedding rows no token decodes to: never sampled (CTranslate2 suppresses them by name)
        self.suppress = [[t] for t in vocab[self.vocab:]]
        self.rows = len(vocab)

    def _fresh_generator(self) -> Any:
        """A generator whose workers have not drawn yet. Building one sets the calling thread's OpenMP
        thread count to `intra_threads`, which torch shares; torch's count is put back afterwards."""
        if self._generator is None:
            torch_threads = torch.get_num_threads()
            try:
                self._generator = ctranslate2.Generator(
                    str(self.model_dir), device="cpu", compute_type=self.compute_type,
                    inter_threads=self.inter_threads, intra_threads=self.intra_threads)
                self.precision = getattr(self._generator, "compute_type", self.compute_type)  # what it loaded
            finally:
                torch.set_num_threads(torch_threads)
        return self._generator

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        if not prompts:
            return []
        tok = self.tokenizer
        ids = [prompt_ids(p, tok) for p in prompts]  # what SFT trains on (see rsft.inputs.data.formats)
        if any(not x for x in ids):
            raise RsftError("ctranslate2 engine: a prompt encodes to no tokens (empty prompt and no BOS)")
        for p, x in zip(prompts, ids, strict=True):
            if max(x) >= self.rows:
                raise RsftError(f"prompt {p.id!r}: token id {max(x)} ({tok.convert_ids_to_tokens(max(x))}) is past "
                                f"the model's {self.rows} embedding rows; the model cannot read it")
        if params.max_new_tokens <= 0:
            return [[Sample(p.id, i, "", finish_reason="length") for i in range(n)] for p in prompts]
        greedy = params.greedy or params.top_k == 1
        hyps = 1 if greedy else n  # greedy draws are all the same: decode once, copy
        waves = plan_batches([len(x) for x in ids], hyps, params.max_new_tokens, self.max_batch_tokens,
                             self.inter_threads)
        options = dict(
            max_length=params.max_new_tokens, include_prompt_in_result=False, return_end_token=True,
            end_token=self.eos_ids or None, num_hypotheses=hyps, return_scores=True, length_penalty=0,
            return_logits_vocab=self.entropy,
            sampling_topk=1 if greedy else max(params.top_k, 0), sampling_topp=params.top_p,
            sampling_temperature=1.0 if greedy else params.temperature,
        )
        if self.suppress:
            options["suppress_sequences"] = self.suppress
        decode = lambda t: tok.decode(t, skip_special_tokens=True)  # noqa: E731
        rows: dict[int, list[Sample]] = {}
        for wave in waves:
            batches = [_Batch(indices, params.stop, decode) for indices in wave]
            tokens = [[tok.convert_ids_to_tokens(ids[i]) for i in b.indices] for b in batches]
            seeds = [_batch_seed(params, [prompts[i].id for i in b.indices], n) for b in batches]
            results = [r for b, rs in zip(batches, self._run_wave(batches, tokens, seeds, options, not greedy))
                       for r in rs]  # one per prompt, in the order of the batches' indices
            entropies = self._entropies(results, params) if self.entropy else [None] * len(results)
            for i, result, ent in zip([i for b in batches for i in b.indices], results, entropies):
                rows[i] = self._samples(prompts[i], result, ent, n, params)
        return [rows[i] for i in range(len(prompts))]

    def _run_wave(self, batches: list[_Batch], tokens: list[list[list[str]]], seeds: list[int],
                  options: dict[str, Any], sampling: bool) -> list[list[Any]]:
        """Run up to `inter_threads` batches in parallel, each on a worker that has not drawn yet, seeded in order."""
        gen = self._fresh_generator()
        all_taken = threading.Event()  # no batch left in the queue: each has a worker of its own
        if sampling:  # (callbacks must not reference `gen`: a worker dropping the last reference aborts)
            for b in batches[:-1]:
                b.hold = all_taken.wait
            self._generator = None  # its workers are about to draw: the next wave needs fresh ones
        pending: list[list[Any]] = []
        try:
            for b, toks, seed in zip(batches, tokens, seeds):
                if sampling:
                    ctranslate2.set_random_seed(seed)  # read by the next worker at its first draw
                pending.append(gen.generate_batch(toks, asynchronous=True, callback=b.callback, **options))
                while sampling and b is not batches[-1] and not b.started.wait(0.005):  # until that draw
                    if all(r.done() for r in pending[-1]):  # failed before its first token
                        break
            while sampling and gen.num_queued_batches > 0:
                time.sleep(0.0002)
        finally:
            all_taken.set()  # never leave a worker waiting, even when a submission failed
        # the last batch reads its seed at its first draw, before its results exist: the global
        # seed must not change until they do, and it does not, as the next seed is set after this
        return [[r.result() for r in batch] for batch in pending]

    def _samples(self, prompt: Prompt, result: Any, entropies: list[float] | None, n: int,
                 params: SamplingParams) -> list[Sample]:
        """The prompt's n samples from its result. CTranslate2 sorts hypotheses by score; a seeded shuffle
        gives back an exchangeable order (maj@k votes over the first k samples). Greedy results hold one
        hypothesis, copied n times."""
        texts = self.tokenizer.batch_decode(result.sequences_ids, skip_special_tokens=True)
        rows = list(zip(result.sequences_ids, texts, result.scores, entropies or [None] * len(texts)))
        random.Random(sample_seed(params.seed, params.round, prompt.id, -1 - params.first_index)).shuffle(rows)
        out = []
        for i in range(n):
            ids, text, logprob, entropy = rows[i % len(rows)]
            text, stopped = cut_at_stop(text, params.stop) if params.stop else (text, False)
            stopped = stopped or (bool(ids) and ids[-1] in self.eos_ids)
            out.append(Sample(prompt_id=prompt.id, index=params.first_index + i, text=text, token_ids=tuple(ids),
                              logprob=float(logprob), entropy=entropy,
                              finish_reason="stop" if stopped else "length"))
        return out

    def _entropies(self, results: list[Any], params: SamplingParams) -> list[list[float | None]]:
        """Mean entropy of each hypothesis of each result, from the logits CTranslate2 returns per step.

        A row's first logits belong to prompt tokens fed one step at a time; its last len(sequence)
        ones to the sampled tokens. All steps of the wave go through one batched computation."""
        blocks = [np.stack([np.asarray(x) for x in steps[-len(seq):]]) if seq else np.zeros((0, 1), np.float32)
                  for result in results for seq, steps in zip(result.sequences_ids, result.logits)]  # [t, V] each
        sizes = [len(b) for b in blocks]
        ent = np.zeros(0)
        if sum(sizes):
            logits = torch.from_numpy(np.concatenate([b for b in blocks if len(b)])).float()  # [N, V]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small tensors: waking torch's OpenMP threads costs more than the math
            try:
                probs = (logits if params.greedy else filter_logits(logits, params)).softmax(-1)  # [N, V]
                ent = (-(probs * probs.clamp_min(1e-30).log()).sum(-1)).double().numpy()  # [N]
            finally:
                torch.set_num_threads(threads)
        means = iter([float(ent[e - k:e].mean()) if k else None for k, e in zip(sizes, np.cumsum(sizes))])
        return [[next(means) for _ in result.sequences_ids] for result in results]


def _batch_seed(params: SamplingParams, prompt_ids: list[str], n: int) -> int:
    """The 32-bit seed of one batch (all CTranslate2 takes), from the run seed, round, n and its prompts."""
    key = "\x1f".join(prompt_ids) + f"\x1e{params.first_index}"  # later waves draw afresh
    return sample_seed(params.seed, params.round, key, n) & 0xFFFFFFFF


def _eos_ids(path: Path, tokenizer: Any) -> list[int]:
    """The ids that end a completion, as every engine takes them (`rsft.inputs.modeling.stop_token_ids`)."""
    return stop_token_ids(tokenizer, generation_eos(path))


FACTORY = EngineFactory(CTranslate2Engine.from_path)  # what the registry's name means
