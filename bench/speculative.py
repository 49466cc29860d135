"""Speculative sampling against plain sampling in rsft's transformers engine, on a trained 25M model.

The models: the bench's 25M char-level Llama (bench/common.py SHAPES["25m"]) as the model sampled
from, and the 1M shape as its draft, both trained briefly from scratch on the same synthetic task
(rows of 2-4 addition facts, "12+7=19 40+3=43", then EOS) with the same data stream: a plain AdamW
loop, `--target-steps` and `--draft-steps` batches of 16 rows. A random model would make a useless
benchmark: its next-token distributions are near uniform, so any draft "agrees" with it by chance,
and it rarely ends a row. Trained, the model is sure of the format and the sums and unsure of the
operands, like real text, and it ends rows by EOS where the data does (so no EOS scaling here, unlike
bench/throughput.py). Trained models are kept in `--cache` (keyed by the step counts) and reused.

Contenders, all T=1 with no top-k/top-p, `--new-tokens` at most, prompts "a+b=" of held-out facts:
  plain            TransformersEngine on the 25M model
  draft            the same with engine_options {draft: <the 1M model>, draft_tokens: k}
  ngram            the same with {draft: ngram, draft_tokens: k} (prompt lookup)
in two regimes: `batch` (--prompts prompts x K=--k-samples in one call, as a round samples) and
`single` (the first --single-prompts prompts one at a time, K=1: one row per model pass, as an
interactive call). Tokens/s is
generated tokens over wall time, the median of --repeats interleaved runs after one warm-up; every
call draws with a new seed, so no contender is timed on one fixed draw of sample lengths.
Acceptance is accepted draft tokens / draft tokens tested (up to and including the first rejection),
summed over every run; tokens per pass is emitted tokens per row per pass of the 25M model.
Also timed: one pass of the 25M model over 1 and k+1 tokens per row, and one 1M draft pass, at each
regime's row count, which is what explains the speed-up: predicted = tokens per pass x plain pass /
(pass over k+1 tokens + (k+1) draft passes).

    python bench/speculative.py [--k 4] [--prompts 16] [--k-samples 8] [--new-tokens 32] [--repeats 5]
                                [--single-prompts 4] [--target-steps 300] [--draft-steps 300]
                                [--cache DIR] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALPHABET, SHAPES, interleaved, machine, median  # noqa: E402

from rsft.core.records import Prompt  # noqa: E402
from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama  # noqa: E402
from rsft.parts.sampling.base import SamplingParams  # noqa: E402
from rsft.parts.sampling.transformers_engine import TransformersEngine  # noqa: E402


def fact(rng: random.Random) -> str:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"{a}+{b}={a + b}"


def row(rng: random.Random) -> str:
    return " ".join(fact(rng) for _ in range(rng.randint(2, 4)))


def train(shape: str, steps: int, path: Path, batch: int = 16, seed: int = 0) -> float:
    """Train the shape from scratch on the synthetic rows (the same stream for every shape); save it; final loss."""
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, SHAPES[shape], seed=seed).train()
    lr = 1e-3 if shape == "25m" else 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / steps))
    rng = random.Random(seed)
    t0, loss = time.perf_counter(), torch.tensor(0.0)
    for _ in range(steps):
        seqs = [tok(row(rng))["input_ids"] + [tok.eos_token_id] for _ in range(batch)]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])  # [batch, T]
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    (path / "loss.txt").write_text(f"{loss.item():.4f}")
    n = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"trained {shape} ({n:.1f}M parameters): {steps} steps of {batch} rows, lr {lr}, final loss "
          f"{loss.item():.3f}, {time.perf_counter() - t0:.0f} s")
    return loss.item()


def trained(cache: Path, shape: str, steps: int) -> Path:
    path = cache / f"{shape}-{steps}"
    if (path / "loss.txt").is_file():
        print(f"reusing {path} (final training loss {(path / 'loss.txt').read_text()})")
    else:
        train(shape, steps, path)
    return path


def pass_ms(model, rows: int, tokens: int, context: int = 40, repeats: int = 10) -> float:
    """Median ms of one cached forward pass over `tokens` new tokens per row after `context` cached ones."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            cache = DynamicCache(config=model.config)
            model(input_ids=torch.full((rows, context), 5), past_key_values=cache, use_cache=True, logits_to_keep=1)
            t0 = time.perf_counter()
            model(input_ids=torch.full((rows, tokens), 5), past_key_values=cache, use_cache=True)
            times.append((time.perf_counter() - t0) * 1000)
    return median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4, help="draft tokens per step")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--k-samples", type=int, default=8, help="samples per prompt in the batch regime")
    ap.add_argument("--single-prompts", type=int, default=4, help="prompts sampled one at a time in the single regime")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target-steps", type=int, default=300)
    ap.add_argument("--draft-steps", type=int, default=300)
    ap.add_argument("--cache", default="/tmp/rsft-bench-speculative")
    ap.add_argument("--torch-threads", type=int, default=0)
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()[0]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    target = trained(cache, "25m", args.target_steps)
    draft = trained(cache, "1m", args.draft_steps)

    rng = random.Random(12345)  # held-out facts: another stream than training's
    prompts = [Prompt(f"s{i}", text=fact(rng).split("=")[0] + "=") for i in range(args.prompts)]
    runs = {"n": 0}

    def params() -> SamplingParams:  # a new seed every call: each run times its own draw of sample lengths
        runs["n"] += 1
        return SamplingParams(temperature=1.0, max_new_tokens=args.new_tokens, seed=runs["n"])
    k = args.k
    engines = {"plain": TransformersEngine.from_path(str(target)),
               "draft": TransformersEngine.from_path(str(target), draft=str(draft), draft_tokens=k),
               "ngram": TransformersEngine.from_path(str(target), draft="ngram", draft_tokens=k)}
    labels = {"draft": f"1M draft, k={k}", "ngram": f"ngram draft, k={k}"}
    lengths: dict[str, list[int]] = {}

    def batch(name):
        def run() -> int:
            out = engines[name].generate(prompts, args.k_samples, params())
            lengths.setdefault(f"batch/{name}", []).extend(s.num_tokens for g in out for s in g)
            return sum(s.num_tokens for g in out for s in g)
        return run

    def single(name):
        def run() -> int:
            out = [engines[name].generate([p], 1, params())[0][0] for p in prompts[: args.single_prompts]]
            lengths.setdefault(f"single/{name}", []).extend(s.num_tokens for s in out)
            return sum(s.num_tokens for s in out)
        return run

    regimes = {"batch": (batch, args.prompts * args.k_samples), "single": (single, 1)}
    results = {}
    for regime, (make, rows) in regimes.items():
        for e in engines.values():
            e.speculative_stats.update(dict.fromkeys(e.speculative_stats, 0))
        rates = interleaved({name: make(name) for name in engines}, args.repeats)
        stats = {name: dict(e.speculative_stats) for name, e in engines.items()}
        t1, tk = pass_ms(engines["plain"].model, rows, 1), pass_ms(engines["plain"].model, rows, k + 1)
        d1 = pass_ms(engines["draft"].draft.model, rows, 1)
        results[regime] = (rates, stats, t1, tk, d1, rows)

    print(f"machine: {machine()}, {os.cpu_count()} cores, load average {load_before:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    print(f"setup: 25M model, T=1, at most {args.new_tokens} new tokens, {args.prompts} prompts; batch regime: "
          f"K={args.k_samples} per prompt in one call ({args.prompts * args.k_samples} rows); single regime: "
          f"{args.single_prompts} prompts one at a time, K=1; median of {args.repeats} interleaved runs")
    for regime, (rates, stats, t1, tk, d1, rows) in results.items():
        print(f"[{regime}, {rows} rows per call] one 25M pass: {t1:.1f} ms over 1 token per row, {tk:.1f} ms "
              f"over {k + 1} ({tk / t1:.2f}x); one 1M draft pass: {d1:.1f} ms ({d1 / t1:.2f}x)")
        m = {name: median(xs) for name, xs in rates.items()}
        for name, xs in rates.items():
            ls = lengths[f"{regime}/{name}"]
            print(f"  {name:6s} {m[name]:8.0f} tok/s   mean length {sum(ls) / len(ls):5.1f}   "
                  f"runs: {', '.join(f'{x:.0f}' for x in xs)}")
        for name in ("draft", "ngram"):
            s = stats[name]
            acc = s["accepted"] / max(s["tested"], 1)
            per_pass = s["tokens"] / max(s["rows"], 1)
            drafting = (k + 1) * d1 if name == "draft" else 0.0
            predicted = per_pass * t1 / (tk + drafting)
            print(f"  speculative ({labels[name]}) vs plain [{regime}]: {m[name] / m['plain']:.2f}x, acceptance "
                  f"{100 * acc:.0f}%, {per_pass:.2f} tokens per pass, predicted from pass times {predicted:.2f}x"
                  + (" (k+1 tokens per pass assumed)" if name == "ngram" else ""))


if __name__ == "__main__":
    main()
