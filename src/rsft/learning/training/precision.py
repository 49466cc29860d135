"""The precision a training runs in: what `train.mixed_precision` and `model.dtype` mean on this machine.

bf16 autocast pays only where the hardware computes bf16 natively and the
matrices are big enough for the casts to be worth it; elsewhere it is slower
than fp32 (TRL's own default, bf16 everywhere, is several times slower on a CPU
that only emulates bf16). `decide_precision` is the one place that turns the
settings (the model dtype, `train.mixed_precision`, `train.extra`'s bf16/fp16
and use_cpu, `train.save_dtype`), the hardware (GPU bf16 support, the CPU's
flags) and the model's width into a `Precision` record. The driver decides it
before training, records it in ``train.json`` and hashes it into the
training's fingerprint, so the same config on a CPU with native bf16 and on
one without is two different trainings. This module does not build the
trainer (`rsft.learning.training.sft`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from rsft.core.config import TrainConfig
from rsft.core.errors import RsftError
from rsft.core.progress import notice
from rsft.inputs.modeling import adapter_base, checkpoint_dtype, read_config


@dataclass(frozen=True)
class Precision:
    """The dtypes of one training, decided."""

    dtype: str  # the weights' dtype while training (model.dtype)
    autocast: str  # bf16, fp16 or no (fp32): the Trainer's bf16/fp16 flags
    save_dtype: str  # the dtype the trained model is saved in
    decided_by: str  # train.mixed_precision, or train.extra when it sets bf16/fp16 itself


def cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def on_cpu(train: TrainConfig) -> bool:
    """The training runs on the CPU: `train.extra.use_cpu` when given, else when there is no GPU."""
    return bool(train.extra.get("use_cpu", cpu_only()))


def decide_precision(train: TrainConfig, dtype: str = "float32", init_path: str | None = None) -> Precision:
    """The precision of training the model at `init_path` (its width decides `auto` on a CPU; None: no
    model, as wide) loaded in `dtype`.

    `train.extra`'s bf16/fp16, when it sets either, decide the flags (rsft adds neither); else
    `train.mixed_precision` resolved by `autocast`. The saved dtype is `train.save_dtype`, whose `auto`
    is the init checkpoint's own dtype (a bfloat16 checkpoint trained in float32 on a CPU is saved back
    in bfloat16), else `dtype`."""
    extra = train.extra
    if {"bf16", "fp16"} & extra.keys():
        mode, by = "bf16" if extra.get("bf16") else "fp16" if extra.get("fp16") else "no", "train.extra"
    else:
        cpu = on_cpu(train)
        needs_width = train.mixed_precision == "auto" and cpu and init_path is not None
        mode, by = autocast(train.mixed_precision, model_width(init_path) if needs_width else None, cpu), \
            "train.mixed_precision"
    stored = train.save_dtype
    if stored == "auto":
        stored = (checkpoint_dtype(init_path) if init_path is not None else None) or dtype
    return Precision(dtype=dtype, autocast=mode, save_dtype=stored, decided_by=by)


def model_width(init_path: str) -> int | None:
    """The hidden size of the model at `init_path` (an adapter answers for its base), from its config
    alone; None when it cannot be read (loading the model then says why)."""
    base = adapter_base(Path(init_path)) or init_path
    try:
        config = read_config(str(base), "train init")
    except RsftError:
        return None
    return getattr(config.get_text_config(), "hidden_size", None)


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


def say_decided(precision: Precision, train: TrainConfig) -> None:
    """Say, once per process each, what was decided that the config does not show: the autocast `auto`
    chose (when not plain fp32), and a saved dtype other than the training one."""
    if train.mixed_precision == "auto" and precision.decided_by == "train.mixed_precision":
        say_precision(precision.autocast)
    if precision.save_dtype != precision.dtype:
        say_saved_dtype(precision.save_dtype, precision.dtype)


@functools.cache
def say_precision(precision: str) -> None:
    """Once per process: the precision `auto` chose, when it is not plain fp32."""
    if precision != "no":
        notice(f"train: {precision} autocast (train.mixed_precision: auto; this hardware computes {precision} "
               "natively); set train.mixed_precision: no for fp32")


@functools.cache
def say_saved_dtype(stored: str, dtype: str) -> None:
    notice(f"train: the model trains in {dtype} (model.dtype) and is saved in {stored}, the checkpoint's own dtype; "
           f"updates below {stored}'s resolution round away (train.save_dtype: {dtype} keeps them)")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """The CPU advertises bf16 arithmetic (avx512_bf16 or amx_bf16 in /proc/cpuinfo; False elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
