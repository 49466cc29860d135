"""Sampling throughput of rsft's CPU engines against HF generate and CTranslate2 called directly.

Every contender samples the same prompts from the same model at T=1 with no top-k/top-p,
K samples per prompt, EOS allowed, and counts generated tokens up to and including EOS.
Prints the median tokens/s of each over interleaved runs, then the ratios.

A randomly initialised model rarely ends a sequence, which would hide what early stopping
is worth. So by default (`--eos-rate 0.05`) the EOS row of the tied embedding is scaled until
EOS gets ~5% of the probability per step on average (the scale is found by bisection on
sampled continuations); since the EOS logit varies from position to position, sequences end
at varied lengths. Every contender samples from this same saved model. `--eos-rate 0` skips it.

Contenders
  hf_generate             model.generate(num_return_sequences=K), as bench/sampling.py
  rsft_transformers       rsft's cached loop
  rsft_ct2_int8/float32   rsft's CTranslate2 engine, default settings (conversion not timed)
  ct2_direct_int8         Generator(compute_type="int8") with its default threads, one
                          generate_batch(num_hypotheses=K, include_prompt_in_result=False)
  ct2_direct_int8_repl    the same with each prompt repeated K times instead of num_hypotheses
  ct2_direct_int8_tuned   the best plain call found here: CTranslate2's own parallel batching with
                          inter_threads=cores, intra_threads=1, max_batch_size=prompts/cores (it sorts
                          by length). Tried and slower on 2 cores at 25M and 125M: one worker with 2
                          threads, max_batch_size=prompts/(2*cores), replicated rows, CT2_USE_MKL=1
  rsft_vllm               (--vllm) rsft's vllm engine: vLLM in-process (its CPU build here), float32
  rsft_openai_served      (--vllm) rsft's openai engine against `vllm serve` on the same model, started
                          by rsft (managed mode); HTTP and JSON included
  Engine start-up (vLLM load, server start, CTranslate2 conversion) is timed and printed apart.

    python bench/throughput.py [--shape 25m|125m|1m] [--prompts 16] [--k 8] [--new-tokens 32] [--repeats 5]
                               [--eos-rate 0.05] [--torch-threads N] [--vllm] [--only NAME,NAME]

`--only` keeps the named contenders (e.g. `--only rsft_ct2_int8,ct2_direct_int8_tuned` at 125M, where
the torch contenders take minutes a run). The rsft/direct-tuned ratio is printed twice: of the medians,
and as the median of per-round ratios (both ran back to back in each round, so a slow patch on a
shared machine hits both).

`--vllm` needs vLLM importable: run it with .venv-vllm/bin/python (make vllm-venv).

    python bench/throughput.py --speculative [options of bench/speculative.py]

runs speculative sampling's bench instead (rsft's transformers engine with a 1M draft and with
n-gram prompt lookup against plain sampling, on a trained 25M model; see bench/speculative.py).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import ctranslate2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALPHABET, SHAPES, interleaved, machine, make_prompts, median  # noqa: E402
from sampling import hf_generate  # noqa: E402

from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama  # noqa: E402
from rsft.parts.sampling.base import SamplingParams  # noqa: E402
from rsft.parts.sampling.ctranslate2_convert import resolve_compute_type  # noqa: E402
from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine  # noqa: E402
from rsft.parts.sampling.transformers_engine import TransformersEngine  # noqa: E402


def eos_logits(model, tok, texts: list[str], new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits [N, V] at the positions of sampled continuations of `texts` (up to their EOS),
    and the EOS logit per unit of EOS-row scale [N]: with a tied embedding it is linear in the scale."""
    enc = tok(texts, padding=True, padding_side="left", return_tensors="pt")
    eos = tok.eos_token_id
    with torch.no_grad():
        torch.manual_seed(0)
        seqs = model.generate(**enc, do_sample=True, max_new_tokens=new_tokens, num_return_sequences=4,
                              pad_token_id=tok.pad_token_id, top_k=None, top_p=None)
        start = enc.input_ids.shape[1] - 1
        logits = model(seqs).logits[:, start:-1]  # [B*4, T, V] predicting each generated token
    gen = seqs[:, start + 1:]  # [B*4, T]
    before_eos = (gen == eos).long().cumsum(1) - (gen == eos).long() == 0  # positions up to the first EOS
    logits = logits[before_eos]  # [N, V]
    return logits, logits[:, eos].clone()


def eos_rate(logits: torch.Tensor, unit: torch.Tensor, eos: int, scale: float) -> float:
    scaled = logits.clone()
    scaled[:, eos] = unit * scale
    return float(scaled.softmax(-1)[:, eos].mean())


def build_biased_model(path: Path, shape: str, target: float, texts: list[str], new_tokens: int) -> Path:
    """The shape's random char-level Llama with its EOS embedding row scaled so that EOS gets `target`
    probability per step on average (bisection on the scale; P(EOS) grows with it)."""
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, SHAPES[shape], seed=0).eval()
    logits, unit = eos_logits(model, tok, texts, new_tokens)
    eos = tok.eos_token_id
    rate0 = eos_rate(logits, unit, eos, 1.0)
    scale, rate = 1.0, rate0
    if target > 0:
        lo, hi = 0.0, 64.0
        for _ in range(30):
            scale = (lo + hi) / 2
            rate = eos_rate(logits, unit, eos, scale)
            lo, hi = (scale, hi) if rate < target else (lo, scale)
        with torch.no_grad():
            model.get_input_embeddings().weight[eos] *= scale  # tied: also the EOS row of the LM head
    model.save_pretrained(path)
    tok.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    print(f"model {shape}: {n / 1e6:.1f}M parameters, vocab {len(tok)}; EOS row x{scale:.2f}: "
          f"mean P(EOS) per step {rate0:.3f} -> {rate:.3f}")
    return path


def main() -> None:
    if sys.argv[1:2] == ["--speculative"]:  # its own models and contenders: bench/speculative.py
        import speculative

        sys.argv = [f"{sys.argv[0]} --speculative", *sys.argv[2:]]
        speculative.main()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="25m", choices=sorted(SHAPES))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eos-rate", type=float, default=0.05,
                    help="target mean P(EOS) per step; 0 leaves the model as built")
    ap.add_argument("--vllm", action="store_true", help="add rsft's vllm and openai (vllm serve) engines")
    ap.add_argument("--only", default="", help="comma-separated contenders to run (default: all)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch threads for the torch contenders (0: torch's default). On a machine whose cores are "
                         "busy with other work, multi-threaded torch waits on descheduled threads at every op")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()[0]

    prompts = make_prompts(args.prompts)
    texts = [p.text for p in prompts]
    k, new = args.k, args.new_tokens
    params = SamplingParams(temperature=1.0, max_new_tokens=new, seed=0)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = str(build_biased_model(Path(tmp) / "m", args.shape, args.eos_rate, texts, new))
        hf = TransformersEngine.from_path(path)
        engines = {}
        only = set(filter(None, args.only.split(",")))
        for ct in ("int8", "float32") if not only or "rsft_ct2_float32" in only else ("int8",):
            t0 = time.perf_counter()
            engines[ct] = CTranslate2Engine.from_path(path, compute_type=ct, cache_dir=Path(tmp) / "ct2")
            print(f"conversion to ctranslate2 {ct}: {time.perf_counter() - t0:.1f} s")
        auto = resolve_compute_type("auto", sum(p.numel() for p in hf.model.parameters()))
        int8_dir = str(engines["int8"].model_dir)
        torch_threads = torch.get_num_threads()
        direct = ctranslate2.Generator(int8_dir, compute_type="int8")
        tuned = ctranslate2.Generator(int8_dir, compute_type="int8", inter_threads=cores, intra_threads=1)
        torch.set_num_threads(torch_threads)  # building a Generator sets the caller's OpenMP threads
        tok = hf.tokenizer
        start = [tok.convert_ids_to_tokens(tok(t)["input_ids"]) for t in texts]
        eos = tok.eos_token_id
        ct2_opts = dict(max_length=new, sampling_topk=0, include_prompt_in_result=False, return_end_token=True,
                        end_token=[eos])

        def count(results) -> int:
            return sum(len(s) for r in results for s in r.sequences_ids)

        def engine_fn(engine) -> Callable[[], int]:
            """A new seed each call: rsft's engines are reproducible, so a fixed seed would time one fixed draw
            of sample lengths every run (tok/s grows with them), while the direct calls draw afresh."""
            calls = itertools.count()
            return lambda: sum(s.num_tokens for g in engine.generate(prompts, k, replace(params, seed=next(calls)))
                               for s in g)

        contenders: dict[str, Callable[[], int]] = {
            "hf_generate": lambda: hf_generate(hf, texts, k, new),
            "rsft_transformers": engine_fn(hf),
            "rsft_ct2_int8": engine_fn(engines["int8"]),
            "ct2_direct_int8": lambda: count(direct.generate_batch(start, num_hypotheses=k, **ct2_opts)),
            "ct2_direct_int8_repl": lambda: count(direct.generate_batch([s for s in start for _ in range(k)],
                                                                        **ct2_opts)),
            "ct2_direct_int8_tuned": lambda: count(tuned.generate_batch(
                start, num_hypotheses=k, max_batch_size=math.ceil(len(start) / cores), **ct2_opts)),
        }
        if "float32" in engines:
            contenders["rsft_ct2_float32"] = engine_fn(engines["float32"])
        if only:
            unknown = only - set(contenders) - {"rsft_vllm", "rsft_openai_served"}
            if unknown:
                ap.error(f"--only: unknown contenders {sorted(unknown)}")
            contenders = {name: fn for name, fn in contenders.items() if name in only}
        tokens: dict[str, list[int]] = {}  # every run's, warm-up included

        def recording(name: str, fn: Callable[[], int]) -> Callable[[], int]:
            def run() -> int:
                tokens.setdefault(name, []).append(fn())
                return tokens[name][-1]
            return run

        closers = []
        if args.vllm:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
            from rsft.parts.sampling.openai_engine import OpenAIEngine
            from rsft.parts.sampling.vllm_engine import VLLMEngine

            t0 = time.perf_counter()
            vllm = VLLMEngine.from_path(path, enforce_eager=True, max_model_len=256)
            print(f"vllm in-process start-up (model load): {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            served = OpenAIEngine.from_path(path, serve=True, python=sys.executable,
                                            serve_args=["--enforce-eager", "--max-model-len", "256"],
                                            max_concurrency=len(prompts))
            print(f"vllm serve start-up (until /health answers): {time.perf_counter() - t0:.1f} s")
            closers += [vllm.close, served.close]
            contenders["rsft_vllm"] = engine_fn(vllm)
            contenders["rsft_openai_served"] = engine_fn(served)
        try:
            rates = interleaved({name: recording(name, fn) for name, fn in contenders.items()}, args.repeats)
        finally:
            for close in closers:
                close()

    e8 = engines["int8"]
    print(f"machine: {machine()}, {cores} cores, load average {load_before:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    print(f"setup: {args.prompts} prompts x K={k}, {new} new tokens, T=1, EOS allowed, median of {args.repeats} "
          f"interleaved runs; rsft ctranslate2: inter_threads={e8.inter_threads}, intra_threads={e8.intra_threads}")
    for name, xs in rates.items():
        length = sum(tokens[name]) / len(tokens[name]) / (args.prompts * k)
        print(f"{name:22s} {median(xs):8.0f} tok/s   mean length {length:5.1f}   "
              f"runs: {', '.join(f'{x:.0f}' for x in xs)}")
    m = {name: median(xs) for name, xs in rates.items()}
    for name in ("rsft_transformers", "rsft_ct2_int8", "rsft_ct2_float32"):
        if name in m and "hf_generate" in m:
            print(f"rsft {name.removeprefix('rsft_')} vs HF generate: {m[name] / m['hf_generate']:.2f}x")
    default = f"rsft_ct2_{auto}"
    if default in m and "hf_generate" in m:
        print(f"rsft default CPU engine (ctranslate2, compute_type auto = {auto}) vs HF generate: "
              f"{m[default] / m['hf_generate']:.2f}x")
    plain = [name for name in ("ct2_direct_int8", "ct2_direct_int8_repl") if name in m]
    if plain and "rsft_ct2_int8" in m:
        best_direct = max(plain, key=m.get)
        print(f"rsft ctranslate2 vs CTranslate2 direct: {m['rsft_ct2_int8'] / m[best_direct]:.2f}x "
              f"(int8, against the faster plain direct call, {best_direct})")
    if "rsft_ct2_int8" in m and "ct2_direct_int8_tuned" in m:
        paired = [a / b for a, b in zip(rates["rsft_ct2_int8"], rates["ct2_direct_int8_tuned"])]
        print(f"per-round ratios rsft/direct tuned: {', '.join(f'{x:.2f}' for x in paired)}")
        print(f"rsft ctranslate2 vs CTranslate2 direct tuned ({args.shape}): "
              f"{m['rsft_ct2_int8'] / m['ct2_direct_int8_tuned']:.2f}x (of the medians; median of the per-round "
              f"ratios {median(paired):.2f}x)")
    for name in ("rsft_vllm", "rsft_openai_served"):
        if name in m and {"hf_generate", "rsft_ct2_int8", "rsft_ct2_float32"} <= set(m):
            print(f"{name} vs HF generate: {m[name] / m['hf_generate']:.2f}x; vs rsft ctranslate2 int8: "
                  f"{m[name] / m['rsft_ct2_int8']:.2f}x; vs rsft ctranslate2 float32: "
                  f"{m[name] / m['rsft_ct2_float32']:.2f}x")


if __name__ == "__main__":
    main()
