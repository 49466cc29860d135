"""Shared pieces of the benchmarks: models built from config, prompts, timing.

Benchmarks compare alternatives side by side in one process and one run, and
report medians of repeated, interleaved measurements, because these machines
are noisy: an absolute tokens/s figure from another day means little.
"""

from __future__ import annotations

import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rsft.core.config import TinyModelConfig
from rsft.core.records import Prompt
from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama

ALPHABET = "0123456789+=-*/() abcdefghijklmnopqrstuvwxyz"
SHAPES = {
    "1m": TinyModelConfig(hidden_size=128, num_layers=4, num_heads=4, max_position_embeddings=256),
    "25m": TinyModelConfig(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1408,
                           max_position_embeddings=256),
    "125m": TinyModelConfig(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3456,
                            max_position_embeddings=256),
}


def build_model(path: Path, shape: str, seed: int = 0) -> Path:
    """A randomly initialised char-level Llama of the given shape, saved as an HF directory."""
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, SHAPES[shape], seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    print(f"model {shape}: {n / 1e6:.1f}M parameters, vocab {len(tok)}")
    return path


def make_prompts(n: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    return [Prompt(f"b{i}", text="".join(rng.choice(ALPHABET[:16]) for _ in range(rng.randint(8, 24))))
            for i in range(n)]


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - t0, tokens


def interleaved(contenders: dict[str, Callable[[], int]], repeats: int) -> dict[str, list[float]]:
    """tokens/s of each contender, measured round-robin `repeats` times (after one warm-up each)."""
    for fn in contenders.values():
        fn()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            secs, tokens = timed(fn)
            rates[name].append(tokens / secs)
    return rates


def demo_variant(out: Path, name: str, changes: dict) -> object:
    """The demo's config under another name and output dir, with dotted-key changes applied."""
    import json

    from rsft.core.config import build_config
    from rsft.loop.demo import DEMO

    data = json.loads(json.dumps(DEMO))
    data.update({"name": name, "output_dir": str(out)})
    for key, value in changes.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return build_config(data)


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)
