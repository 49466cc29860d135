"""Sampling throughput: rsft's transformers engine vs HF generate(num_return_sequences=K).

Both sample the same prompts from the same model at T=1 with no top-k/top-p,
EOS allowed, and count generated tokens up to and including EOS. Prints the
median tokens/s of each and their ratio, measured interleaved in one run.

    python bench/sampling.py [--shape 25m] [--prompts 16] [--k 8] [--new-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_model, interleaved, machine, make_prompts, median  # noqa: E402

from rsft.parts.sampling.base import SamplingParams  # noqa: E402
from rsft.parts.sampling.transformers_engine import TransformersEngine  # noqa: E402


def hf_generate(engine: TransformersEngine, texts: list[str], k: int, new_tokens: int) -> int:
    tok, model = engine.tokenizer, engine.model
    enc = tok(texts, padding=True, padding_side="left", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=True, num_return_sequences=k, max_new_tokens=new_tokens,
                             top_k=None, top_p=None, temperature=1.0, pad_token_id=tok.pad_token_id)
    gen = out[:, enc["input_ids"].shape[1]:]  # [B*K, T]
    is_eos = gen == tok.eos_token_id
    # tokens up to and including the first EOS (rows without EOS count all T)
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full((gen.shape[0],), gen.shape[1]))
    return int(first.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="25m", choices=["1m", "25m"])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = TransformersEngine.from_path(str(build_model(Path(tmp) / "m", args.shape)))
    prompts = make_prompts(args.prompts)
    texts = [p.text for p in prompts]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.new_tokens, seed=0)

    def rsft_engine() -> int:
        return sum(s.num_tokens for g in engine.generate(prompts, args.k, params) for s in g)

    rates = interleaved({
        "hf_generate": lambda: hf_generate(engine, texts, args.k, args.new_tokens),
        "rsft_transformers": rsft_engine,
    }, args.repeats)
    print(f"machine: {machine()}")
    print(f"setup: {args.prompts} prompts x K={args.k}, {args.new_tokens} new tokens, T=1, EOS allowed, "
          f"median of {args.repeats}")
    for name, xs in rates.items():
        print(f"{name:20s} {median(xs):10.0f} tok/s   runs: {', '.join(f'{x:.0f}' for x in xs)}")
    print(f"rsft transformers engine vs HF generate: {median(rates['rsft_transformers']) / median(rates['hf_generate']):.2f}x")


if __name__ == "__main__":
    main()
