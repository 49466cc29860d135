"""The precision a round trains in: what `train.mixed_precision` means on this machine.

bf16 autocast pays only where the hardware computes bf16 natively and the
matrices are big enough for the casts to be worth it; elsewhere it is slower
than fp32 (TRL's own default, bf16 everywhere, is several times slower on a CPU
that only emulates bf16). This module decides and says so; it does not build
the trainer (`rsft.training.sft`).
"""

from __future__ import annotations

import functools

from rsft.config import TrainConfig
from rsft.progress import notice


def cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def precision_for(cfg: TrainConfig, width: int | None) -> str:
    """`train.mixed_precision` resolved, unless `train.extra` sets bf16 or fp16 itself: then extra decides
    and rsft adds neither flag."""
    if {"bf16", "fp16"} & cfg.extra.keys():
        return "no"
    cpu = bool(cfg.extra.get("use_cpu", cpu_only()))
    return autocast(cfg.mixed_precision, width, cpu)


BF16_MIN_WIDTH = 512  # hidden size from which bf16 autocast pays on a CPU (bench/train.py, BENCHMARKS.md)


def autocast(setting: str, width: int | None = None, cpu: bool | None = None) -> str:
    """What `train.mixed_precision` means on this machine for a model of hidden size `width`: bf16, fp16
    or no (fp32).

    `auto` takes bf16 where the hardware computes it natively: a GPU with bf16 support, or a CPU with
    AVX512_BF16 or AMX instructions for a model at least BF16_MIN_WIDTH wide. bench/train.py measured
    on such a CPU: 1.8x fp32's tokens/s at 25M (hidden 512), but 0.86x at 1M (hidden 128), where the
    casts cost more than the small matrix products save. TRL's own default, bf16 everywhere, is
    several times slower than fp32 on a CPU that only emulates bf16. `auto` never picks fp16, which
    needs loss scaling to be safe."""
    if setting != "auto":
        return setting
    import torch

    if not (cpu_only() if cpu is None else cpu):
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    wide = width is None or width >= BF16_MIN_WIDTH
    return "bf16" if wide and cpu_has_native_bf16() else "no"


@functools.cache
def say_precision(precision: str) -> None:
    """Once per process: the precision `auto` chose, when it is not plain fp32."""
    if precision != "no":
        notice(f"train: {precision} autocast (train.mixed_precision: auto; this hardware computes {precision} "
               "natively); set train.mixed_precision: no for fp32")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """The CPU advertises bf16 arithmetic (avx512_bf16 or amx_bf16 in /proc/cpuinfo; False elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
