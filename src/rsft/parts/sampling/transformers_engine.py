"""The default engine: our own cached sampling loop over a transformers causal LM.

Why not `model.generate(num_return_sequences=K)`: it runs the prompt K times
and keeps finished rows in the batch until the longest one ends. This loop
instead
  1. runs each prompt once (left-padded batch, explicit position ids);
  2. copies the prompt's KV cache to its K rows (`batch_repeat_interleave`);
  3. decodes one token per step for every live row;
  4. drops finished rows from the cache (`batch_select_indices`).
Each row draws its randomness from its own generator seeded by
`sample_seed(seed, round, prompt id, index)`, by inverse-CDF sampling with one
uniform per step, so a sample is the same whichever batch it is in.

Greedy decoding (temperature 0) takes the argmax and matches `generate`.
With `engine_options: {draft: PATH|ngram, draft_tokens: k}` it samples speculatively instead
(`rsft.parts.sampling.speculative`: a draft proposes, the model verifies; the distribution is the same). It does not implement beam
search or repetition penalties.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import DynamicCache

from rsft.core.errors import RsftError
from rsft.core.records import Prompt, Sample
from rsft.inputs.data.formats import prompt_ids
from rsft.inputs.modeling import load_model, load_tokenizer, stop_token_ids, vocabulary_limit
from rsft.parts.sampling.base import EngineFactory, SamplingParams, cut_at_stop, sample_seed, usable_cpus
from rsft.parts.sampling.logits import pick_tokens


class TransformersEngine:
    """Samples from an in-memory transformers model; see the module docstring for the loop."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, max_batch_tokens: int = 65536, threads: int | None = None,
                 draft: Any = None, draft_tokens: int = 4) -> None:
        self.model = model.eval()
        self.draft, self.draft_tokens = draft, draft_tokens  # a loaded draft (rsft.parts.sampling.speculative) or None
        self.speculative_stats = dict.fromkeys(("passes", "rows", "tokens", "proposed", "tested", "accepted"), 0)
        self.precision = str(model.dtype).removeprefix("torch.")  # what it computes in, for eval.json
        self.threads = threads
        self.tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        # every id that ends a completion: the tokenizer's EOS, generation_config's, the template's end of turn
        self.eos_ids = torch.tensor(stop_token_ids(tokenizer, model.generation_config.eos_token_id),
                                    dtype=torch.long)  # [E]
        rows = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None \
            else model.config.get_text_config().vocab_size
        self.vocab = vocabulary_limit(tokenizer, rows, "transformers engine")  # ids it may sample: [0, vocab)
        self.rows = rows

    @classmethod
    def from_path(cls, model_path: str, tokenizer_path: str | None = None, dtype: str = "float32",
                  trust_remote_code: bool = False, max_batch_tokens: int = 65536,
                  threads: int | None = None, draft: str | None = None, draft_tokens: int = 4) -> TransformersEngine:
        """The registry's factory. `threads`: torch's intra-op threads while this engine generates
        (restored afterwards); `max_batch_tokens`: KV-cache positions per sub-batch; `draft`: sample
        speculatively with this draft model directory (same tokenizer) or `ngram` (prompt lookup),
        proposing `draft_tokens` tokens per step."""
        tok = load_tokenizer(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        model = load_model(model_path, dtype, trust_remote_code=trust_remote_code)
        if draft is not None:
            from rsft.parts.sampling.speculative import load_draft

            draft = load_draft(draft, tok, dtype, trust_remote_code, draft_tokens)
        return cls(model, tok, max_batch_tokens, threads, draft, draft_tokens)

    def _threads(self) -> int:
        """The engine's `threads`, else torch's own choice capped at the CPUs this process may use
        (unless OMP_NUM_THREADS is set: then torch already follows it)."""
        if self.threads:
            return self.threads
        if "OMP_NUM_THREADS" in os.environ:
            return torch.get_num_threads()
        return min(torch.get_num_threads(), usable_cpus())

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        """Prompts are bucketed by length into sub-batches of at most `max_batch_tokens` KV-cache
        positions (rows × (prompt + new tokens)), so short prompts are not padded to long ones;
        results come back in prompt order."""
        if not prompts:
            return []
        ids = [prompt_ids(p, self.tokenizer) for p in prompts]
        for p, x in zip(prompts, ids, strict=True):
            if x and max(x) >= self.rows:
                raise RsftError(f"prompt {p.id!r}: token id {max(x)} ({self.tokenizer.convert_ids_to_tokens(max(x))}) "
                                f"is past the model's {self.rows} embedding rows; the model cannot read it")
        lengths = [len(x) for x in ids]
        order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
        out: list[list[Sample] | None] = [None] * len(prompts)
        before = torch.get_num_threads()
        torch.set_num_threads(self._threads())
        try:
            with torch.inference_mode():
                for bucket in self._buckets(order, lengths, n, params.max_new_tokens):
                    groups = self._generate([prompts[i] for i in bucket], [ids[i] for i in bucket], n, params)
                    for i, g in zip(bucket, groups, strict=True):
                        out[i] = g
        finally:
            torch.set_num_threads(before)
        return out  # type: ignore[return-value]

    def _buckets(self, order: list[int], lengths: list[int], n: int, new_tokens: int) -> list[list[int]]:
        buckets: list[list[int]] = [[]]
        for i in order:  # ascending length: the newest prompt is the bucket's longest
            if buckets[-1] and (len(buckets[-1]) + 1) * n * (lengths[i] + new_tokens) > self.max_batch_tokens:
                buckets.append([])
            buckets[-1].append(i)
        return buckets

    def _generate(self, prompts: list[Prompt], ids: list[list[int]], n: int,
                  params: SamplingParams) -> list[list[Sample]]:
        if self.draft is not None:
            from rsft.parts.sampling.speculative import Target, decode

            target = Target(self.model, self.tokenizer, frozenset(self.eos_ids.tolist()), self.draft,
                            self.draft_tokens, self.speculative_stats)
            rows = decode(target, ids, n, params, [p.id for p in prompts])
            return self._samples(prompts, n, params, *rows)
        tok = self.tokenizer
        enc = tok.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
        mask = enc["attention_mask"]  # [B, P]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, P]
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        rows = len(prompts) * n
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1, : self.vocab].repeat_interleave(n, 0)  # [B*n, V'] (only ids a token decodes to)
        mask = mask.repeat_interleave(n, 0)  # [B*n, P]
        next_pos = positions[:, -1:].repeat_interleave(n, 0) + 1  # [B*n, 1]
        live = torch.arange(rows)  # [b] original row of each live row
        generators = []
        for p in prompts:
            for i in range(n):
                g = torch.Generator()
                g.manual_seed(sample_seed(params.seed, params.round, p.id, params.first_index + i))
                generators.append(g)
        ids: list[list[int]] = [[] for _ in range(rows)]
        logprob = torch.zeros(rows, dtype=torch.float64)
        entropy_sum = torch.zeros(rows, dtype=torch.float64)
        reason = ["length"] * rows

        for step in range(params.max_new_tokens):
            token, lp, ent = pick_tokens(logits, params, [generators[r] for r in live.tolist()])
            logprob[live] += lp.double()
            entropy_sum[live] += ent.double()
            finished = torch.isin(token, self.eos_ids)  # [b]
            for j, (r, t) in enumerate(zip(live.tolist(), token.tolist())):
                ids[r].append(t)
                if finished[j]:
                    reason[r] = "stop"
                elif params.stop and cut_at_stop(tok.decode(ids[r], skip_special_tokens=True), params.stop)[1]:
                    reason[r] = "stop"
                    finished[j] = True
            if step == params.max_new_tokens - 1:
                break
            keep = (~finished).nonzero().squeeze(-1)  # [b']
            if keep.numel() == 0:
                break
            if keep.numel() < live.numel():
                cache.batch_select_indices(keep)
                live, token, mask, next_pos = live[keep], token[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)  # [b, L+1]
            out = self.model(
                input_ids=token.unsqueeze(-1), attention_mask=mask, position_ids=next_pos,
                past_key_values=cache, use_cache=True,
            )
            logits = out.logits[:, -1, : self.vocab]  # [b, V']
            next_pos = next_pos + 1
        return self._samples(prompts, n, params, ids, logprob, entropy_sum, reason)

    def _samples(self, prompts: list[Prompt], n: int, params: SamplingParams, ids: list[list[int]],
                 logprob: torch.Tensor, entropy_sum: torch.Tensor, reason: list[str]) -> list[list[Sample]]:
        """Each row's tokens, summed logprob and entropy and finish reason as Samples grouped by prompt."""
        tok = self.tokenizer
        groups = []
        for b, p in enumerate(prompts):
            group = []
            for i in range(n):
                r = b * n + i
                text = tok.decode(ids[r], skip_special_tokens=True)
                if params.stop:
                    text = cut_at_stop(text, params.stop)[0]
                group.append(Sample(
                    prompt_id=p.id, index=params.first_index + i, text=text, token_ids=tuple(ids[r]),
                    logprob=float(logprob[r]), entropy=float(entropy_sum[r] / max(len(ids[r]), 1)),
                    finish_reason=reason[r],
                ))
            groups.append(group)
        return groups


def check_options(options: dict[str, Any], key: str = "sampling.engine_options") -> None:
    """The engine factory's `check` (`rsft.parts.sampling.engines` calls it when the run opens, in preflight, and
    again when the engine is built): the draft's path and draft_tokens."""
    from rsft.parts.sampling.speculative import check_options as check_draft

    check_draft(options, key)


FACTORY = EngineFactory(TransformersEngine.from_path, check=check_options)  # what the registry's name means
