"""The order a round trains its rows in: every row once per epoch, batches of similar length.

Rows of mixed lengths padded to the longest of a random batch waste compute on
padding (a 50-400 token mix wastes ~40%). transformers' `group_by_length`
sampler fixes that, but it draws from the global torch RNG each epoch, so a
round resumed from a checkpoint would see other batches than an uninterrupted
one. This module instead works the whole order out in advance from the seed, and
the trainer draws its batches from it (`FixedOrder`, given to the Trainer as
its sampler): a resume skips exactly the batches already trained on, and the
order is the same in every process.

Within an epoch: a seeded permutation is cut into megabatches of 50 batches,
each sorted by length and cut into batches, and the batches of the epoch are
shuffled; a last, short batch goes last, topped up with other rows of the
epoch drawn again, so batches stay aligned with the trainer's. Lengths are the
tokenized rows' (what the trainer prepared, after any row it dropped).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

MEGABATCH = 50  # batches sorted together: as transformers' LengthGroupedSampler


def grouped_order(lengths: list[int], batch: int, total: int, seed: int) -> list[int]:
    """`total` row indices (whole epochs, then part of one) in batches of `batch` rows of similar length."""
    rng = random.Random(f"rsft-batches:{seed}")
    out: list[int] = []
    while len(out) < total:
        perm = list(range(len(lengths)))
        rng.shuffle(perm)
        size = batch * MEGABATCH
        batches: list[list[int]] = []
        for start in range(0, len(perm), size):
            mega = sorted(perm[start:start + size], key=lambda i: -lengths[i])
            for i in range(0, len(mega), batch):
                group = mega[i:i + batch]
                rng.shuffle(group)  # in DDP each rank takes a slice: not always the longer one to rank 0
                batches.append(group)
        short = batches.pop() if len(batches[-1]) < batch else None
        rng.shuffle(batches)
        if short is not None:  # topped up with rows drawn again, so the next epoch's batches stay aligned
            others = [i for i in perm if i not in set(short)]
            need = batch - len(short)
            short += rng.sample(others, need) if len(others) >= need else rng.choices(perm, k=need)
            batches.append(short)
        out.extend(i for b in batches for i in b)
    return out[:total]


class FixedOrder(torch.utils.data.Sampler[int]):
    """A sampler that yields a precomputed list of row indices, once (the whole training is one pass)."""

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)
