"""Exact speculative sampling for the transformers engine: a cheap draft proposes, the model verifies.

Why: one forward pass of the model over k+1 tokens can cost little more than over one token when
the pass is bound by reading the weights (a GPU, or a CPU with few rows), so tokens a cheap draft
guesses right come almost free. The draft is either a small causal LM with the same tokenizer
(`engine_options: {draft: PATH, draft_tokens: k}`), or `draft: ngram`, prompt-lookup decoding: the
k tokens that followed the most recent earlier occurrence of the text's last n-gram (n = 3, 2, 1).

What one step does for every live row (Leviathan et al. 2023; Chen et al. 2023):
  1. the draft proposes d_1..d_k from q (its own distribution after the same temperature, top-k and
     top-p as the model's; the ngram draft's q is a point mass on its guess);
  2. the model scores [last token, d_1..d_k] in one pass, giving p at each of the k+1 positions;
  3. d_j is accepted with probability min(1, p(d_j)/q(d_j)), in order, until the first rejection;
  4. at a rejection the next token is drawn from norm(max(0, p - q)); when all are accepted, one
     more token is drawn from p.
Every emitted token is then distributed exactly as plain sampling from p would give. Greedy (T=0) is
the same rule on one-hot p and q: a draft token is kept iff it is the model's argmax, so the output is
plain greedy's. Rejected tokens stay in both KV caches as masked holes (explicit position ids), so
rows of one batch may accept different numbers of tokens without cropping or copying the caches; the
engine's `max_batch_tokens` budget counts emitted tokens, not these holes (at most k per step).

Randomness stays per sample: each row's generator (seeded by `sample_seed`) gives 2k+1 uniforms per
step (k for the draft, k for the acceptance tests, 1 for the final draw), whatever the batch, and a
row's number of proposals depends only on its own budget and context; so a sample is reproducible and
does not depend on its batch. It is not draw-for-draw the sample plain sampling gives for that seed.
`Sample.logprob` and `entropy` mean what they mean for plain sampling: the model's raw log-probability
of each kept token and the entropy of the distribution p it is sampled from (not of the residual).

It does not do tree or multi-draft speculation, draft heads (Medusa, EAGLE), a draft with another
tokenizer, or adaptive k. It pays off only when a model pass over k+1 tokens is much cheaper than
k+1 passes: on CPU with many rows per batch the pass is compute-bound and speculation is slower (see
BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

from rsft.core.errors import ConfigError
from rsft.parts.sampling.base import SamplingParams, cut_at_stop, sample_seed
from rsft.parts.sampling.logits import draw, filter_logits

KEY = "sampling.engine_options"
NGRAM_SIZES = (3, 2, 1)  # the longest suffix that occurred before wins


def check_options(options: dict[str, Any], key: str = KEY) -> None:
    """`draft` is `ngram` or a model directory; `draft_tokens` is at least 1 and needs a draft."""
    draft, k = options.get("draft"), options.get("draft_tokens")
    if k is not None and k < 1:
        raise ConfigError(f"key '{key}.draft_tokens': expected an int >= 1, got {k!r}")
    if k is not None and draft is None:
        raise ConfigError(f"key '{key}.draft_tokens': set only with a draft (draft: PATH or draft: ngram)")
    if draft is not None and draft != "ngram":
        path = Path(draft)
        if not path.is_dir():
            raise ConfigError(f"key '{key}.draft': {draft!r} is not 'ngram' nor a model directory (no such directory)")
        if not (path / "config.json").is_file():
            raise ConfigError(f"key '{key}.draft': {draft!r} is not a model directory (no config.json)")


def load_draft(spec: str, tokenizer: Any, dtype: str, trust_remote_code: bool, k: int, key: str = KEY) -> Any:
    """The draft a spec names, its tokenizer checked against the model's; says which draft is used."""
    from rsft.core.progress import notice
    from rsft.inputs.modeling import load_model, load_tokenizer

    check_options({"draft": spec, "draft_tokens": k}, key)
    if spec == "ngram":
        notice(f"sampling: speculative, prompt-lookup (ngram) draft, up to {k} draft tokens per step")
        return NgramDraft()
    theirs = load_tokenizer(spec, f"{key}.draft", trust_remote_code).get_vocab()
    ours = tokenizer.get_vocab()
    if theirs != ours:
        differ = sorted(set(theirs.items()) ^ set(ours.items()))[:1]
        raise ConfigError(f"key '{key}.draft': the draft's tokenizer ({len(theirs)} tokens) differs from the "
                          f"model's ({len(ours)} tokens), e.g. {differ[0] if differ else '?'}; a draft needs the "
                          "same vocabulary")
    model = load_model(spec, dtype, f"{key}.draft", trust_remote_code).eval()
    size = sum(p.numel() for p in model.parameters()) / 1e6
    notice(f"sampling: speculative, draft model {spec} ({size:.1f}M parameters), {k} draft tokens per step")
    return ModelDraft(model)


# The acceptance rule: module functions so that a test can swap in a wrong one and see it caught.
def accept_prob(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """min(1, p/q) for the drafted tokens' probabilities under the model (p) and the draft (q); 0 where q = 0."""
    return torch.where(q > 0, (p / q.clamp_min(1e-30)).clamp(max=1.0), torch.zeros_like(p))


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """What to draw from after a rejection, unnormalised: max(0, p - q) over the vocabulary [b, V]."""
    return (p - q).clamp(min=0)


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution plain sampling draws from [..., V]: filtered softmax, or one-hot argmax when greedy."""
    if params.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    shape = logits.shape
    return filter_logits(logits.reshape(-1, shape[-1]), params).softmax(-1).reshape(shape)


class ModelDraft:
    """A small causal LM with its own KV cache, laid out like the model's: the same prompt columns and
    k+1 columns per step (it also reads its last proposal, so its cache holds the whole context)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None

    def begin(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, n: int,
              contexts: list[list[int]]) -> None:
        self.cache = prefill(self.model, input_ids, mask, positions, n)

    def propose(self, pending: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, k_row: torch.Tensor,
                u: torch.Tensor, params: SamplingParams, rows: list[int], contexts: list[list[int]], vocab: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(proposals [b, kk], which are valid [b, kk], q of each step [b, kk, V]), kk = max(k_row)."""
        kk, b = max(int(k_row.max()), 0), pending.numel()
        tokens, dists, feed = [], [], pending
        for j in range(kk + 1):
            out = self.model(input_ids=feed.unsqueeze(-1), attention_mask=torch.cat([mask, mask.new_ones(b, j + 1)], -1),
                             position_ids=(pos + j).unsqueeze(-1), past_key_values=self.cache, use_cache=True)
            if j == kk:  # the last proposal is read only to keep the cache whole
                break
            logits = out.logits[:, -1, :].float()  # [b, V']
            if logits.shape[-1] != vocab:  # padded embeddings: q is 0 beyond the model's vocabulary
                logits = torch.nn.functional.pad(logits[:, :vocab], (0, max(vocab - logits.shape[-1], 0)),
                                                 value=float("-inf"))
            q = sampling_probs(logits, params)  # [b, V]
            feed = draw(q, u[:, j])  # [b]
            tokens.append(feed)
            dists.append(q)
        valid = torch.arange(kk).unsqueeze(0) < k_row.unsqueeze(-1)  # [b, kk]
        if not kk:
            return pending.new_zeros(b, 0), valid, None
        return torch.stack(tokens, 1), valid, torch.stack(dists, 1)

    def select(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)

    def end(self) -> None:
        self.cache = None


class NgramDraft:
    """Prompt-lookup decoding: per row, a map from each n-gram to where it last ended, kept up to date as
    the row grows; a proposal is what followed the last earlier occurrence of the row's final n-gram."""

    def __init__(self) -> None:
        self.index: dict[int, tuple[list[dict[tuple[int, ...], int]], list[int]]] = {}

    def begin(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, n: int,
              contexts: list[list[int]]) -> None:
        self.index = {}

    def guess(self, row: int, ctx: list[int], k: int) -> list[int]:
        grams, done = self.index.setdefault(row, ([{} for _ in NGRAM_SIZES], [0]))
        for end in range(done[0], len(ctx) - 1):  # index the n-grams ending before the last token
            for table, size in zip(grams, NGRAM_SIZES):
                if end + 1 >= size:
                    table[tuple(ctx[end + 1 - size: end + 1])] = end
        done[0] = max(done[0], len(ctx) - 1)
        for table, size in zip(grams, NGRAM_SIZES):
            end = table.get(tuple(ctx[-size:])) if len(ctx) >= size else None
            if end is not None:
                return ctx[end + 1: end + 1 + k]
        return []

    def propose(self, pending: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, k_row: torch.Tensor,
                u: torch.Tensor, params: SamplingParams, rows: list[int], contexts: list[list[int]], vocab: int
                ) -> tuple[torch.Tensor, torch.Tensor, None]:
        guesses = [self.guess(r, contexts[r], k) if k > 0 else [] for r, k in zip(rows, k_row.tolist())]
        kk = max((len(g) for g in guesses), default=0)
        tokens = torch.zeros(len(guesses), kk, dtype=torch.long)  # [b, kk]
        valid = torch.zeros(len(guesses), kk, dtype=torch.bool)
        for i, g in enumerate(guesses):
            tokens[i, : len(g)] = torch.tensor(g, dtype=torch.long)
            valid[i, : len(g)] = True
        return tokens, valid, None  # q is a point mass on each guess

    def select(self, keep: torch.Tensor) -> None:
        pass

    def end(self) -> None:
        self.index = {}


def prefill(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, n: int) -> Any:
    """A cache of every prompt token but the last (which each row's first step reads), copied to n rows each."""
    cache = DynamicCache(config=model.config)
    if input_ids.shape[1] > 1:
        model(input_ids=input_ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
              past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(n)
    return cache


@dataclass(frozen=True)
class Target:
    """What speculative decoding needs of the engine it runs in, and nothing else: the model that
    verifies, its tokenizer (padding, and decoding for stop strings), the ids that end a row, the
    loaded draft, how many tokens it proposes per pass, and the counters it adds to (the engine's
    `speculative_stats`, read by the benchmark)."""

    model: Any
    tokenizer: Any
    eos: frozenset[int]
    draft: Any
    draft_tokens: int
    stats: dict[str, int]


def decode(target: Target, ids: list[list[int]], n: int, params: SamplingParams, prompt_ids: list[str]
           ) -> tuple[list[list[int]], torch.Tensor, torch.Tensor, list[str]]:
    """Speculative sampling of n rows per prompt (token ids `ids`, prompt ids for the seeds).
    Returns each row's tokens, summed raw logprob [rows], summed entropy [rows] and finish reason."""
    model, draft, k, tok, stats = target.model, target.draft, target.draft_tokens, target.tokenizer, target.stats
    enc = tok.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    mask = enc["attention_mask"]  # [B, P]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, P]
    rows = len(ids) * n
    contexts = [list(ids[r // n]) for r in range(rows)]  # each row's prompt and emitted tokens
    cache = prefill(model, enc["input_ids"], mask, positions, n)
    draft.begin(enc["input_ids"], mask, positions, n, contexts)
    pending = enc["input_ids"][:, -1].repeat_interleave(n)  # [b] the last token, not yet in the caches
    pos = positions[:, -1].repeat_interleave(n)  # [b] its position
    mask = mask[:, :-1].repeat_interleave(n, 0)  # [b, L] the cache columns
    generators = [torch.Generator().manual_seed(sample_seed(params.seed, params.round, pid, params.first_index + i))
                  for pid in prompt_ids for i in range(n)]
    out: list[list[int]] = [[] for _ in range(rows)]
    logprob = torch.zeros(rows, dtype=torch.float64)
    entropy_sum = torch.zeros(rows, dtype=torch.float64)
    reason = ["length"] * rows
    live = torch.arange(rows)  # [b] original row of each live row
    eos = target.eos
    vocab = model.get_output_embeddings().weight.shape[0]
    try:
        while live.numel():
            b, lv = live.numel(), live.tolist()
            k_row = torch.tensor([min(k, params.max_new_tokens - len(out[r]) - 1) for r in lv])  # [b]
            if params.greedy:
                u = torch.zeros(b, 2 * k + 1, dtype=torch.float64)
            else:
                u = torch.stack([torch.rand(2 * k + 1, generator=generators[r], dtype=torch.float64) for r in lv])
            proposed, valid, q = draft.propose(pending, pos, mask, k_row, u[:, :k], params, lv, contexts,
                                               vocab)  # [b, kk], [b, kk], [b, kk, V]
            kk = proposed.shape[1]
            logits = model(input_ids=torch.cat([pending.unsqueeze(-1), proposed], -1),
                           attention_mask=torch.cat([mask, mask.new_ones(b, kk + 1)], -1),
                           position_ids=pos.unsqueeze(-1) + torch.arange(kk + 1),
                           past_key_values=cache, use_cache=True).logits.float()  # [b, kk+1, V]
            p = sampling_probs(logits, params)  # [b, kk+1, V]
            at = torch.arange(b)
            accepted = torch.zeros(b, dtype=torch.long)  # [b] leading accepted proposals
            final = p[:, 0]  # [b, V] what the token after them is drawn from
            if kk:
                q_tok = valid.double() if q is None else q.gather(-1, proposed.unsqueeze(-1)).squeeze(-1).double()
                p_tok = p[:, :kk].gather(-1, proposed.unsqueeze(-1)).squeeze(-1).double()  # [b, kk]
                ok = valid & (u[:, k:k + kk] < accept_prob(p_tok, q_tok))  # [b, kk]
                accepted = ok.long().cumprod(-1).sum(-1)
                final = p[at, accepted]  # [b, V]
                stop_at = accepted.clamp(max=kk - 1)
                rejected = (accepted < kk) & valid[at, stop_at]  # [b]
                if rejected.any():
                    q_at = (torch.nn.functional.one_hot(proposed[at, stop_at], p.shape[-1]).to(p.dtype) if q is None
                            else q[at, stop_at])  # [b, V]
                    rest = residual(final, q_at)
                    use = rejected & (rest.sum(-1) > 0)  # p == q leaves nothing: then it was never rejected
                    final = torch.where(use.unsqueeze(-1), rest, final)
                stats["proposed"] += int(valid.sum())
                stats["tested"] += int((accepted + rejected.long()).sum())
                stats["accepted"] += int(accepted.sum())
            tokens = torch.cat([proposed, proposed.new_zeros(b, 1)], -1)  # [b, kk+1]
            tokens[at, accepted] = draw(final, u[:, 2 * k])
            lp = logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).double()  # [b, kk+1]
            dist = logits.softmax(-1) if params.greedy else p
            ent = -(dist * dist.clamp_min(1e-30).log()).sum(-1).double()  # [b, kk+1]
            stats["passes"] += 1
            stats["rows"] += b  # row-passes: tokens / rows is what one model pass gives a row
            finished = torch.zeros(b, dtype=torch.bool)
            for j, r in enumerate(lv):
                for i, t in enumerate(tokens[j, : int(accepted[j]) + 1].tolist()):
                    out[r].append(t)
                    contexts[r].append(t)
                    logprob[r] += lp[j, i]
                    entropy_sum[r] += ent[j, i]
                    stats["tokens"] += 1
                    if t in eos or (params.stop and cut_at_stop(tok.decode(out[r], skip_special_tokens=True),
                                                                params.stop)[1]):
                        reason[r] = "stop"
                    if reason[r] == "stop" or len(out[r]) >= params.max_new_tokens:
                        finished[j] = True
                        break
            mask = torch.cat([mask, (torch.arange(kk + 1).unsqueeze(0) <= accepted.unsqueeze(-1)).to(mask.dtype)], -1)
            pos, pending = pos + accepted + 1, tokens[at, accepted]
            keep = (~finished).nonzero().squeeze(-1)  # [b']
            if keep.numel() < b and keep.numel():
                cache.batch_select_indices(keep)
                draft.select(keep)
            live, mask, pos, pending = live[keep], mask[keep], pos[keep], pending[keep]
    finally:
        draft.end()
    return out, logprob, entropy_sum, reason
