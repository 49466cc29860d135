"""How many optimizer steps a training runs: decided here, once, before it starts.

Six settings bear on it: `train.max_steps`, `train.epochs` with its floor
`train.min_steps` and cap `train.step_cap`, and `train.extra`'s own
`max_steps` and `num_train_epochs` (which pass through to TRL's SFTConfig and
then decide, as they did before rsft counted steps). `decide_steps` turns them,
the number of rows and the global batch into one `Steps` record: the driver
records it in ``train.json``, hashes it into the training's fingerprint, and
every rank trains exactly those steps.

It does not count what TRL counts itself: when `train.extra` gives
`num_train_epochs` (and nothing fixes the steps), ``max_steps`` stays -1 and
the Trainer works the steps out from its own dataloader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rsft.core.config import TrainConfig
from rsft.learning.training.precision import on_cpu


@dataclass(frozen=True)
class Steps:
    """The step count a training runs, and what decided it."""

    max_steps: int  # what TRL's max_steps gets; -1: TRL counts `num_train_epochs` passes itself
    num_train_epochs: float  # what TRL's num_train_epochs gets (it counts only when max_steps is -1)
    global_batch: int  # rows per optimizer step across every rank, as the steps were counted
    decided_by: str  # the config key that decided: train.max_steps, train.epochs, train.min_steps, ...


def global_batch(train: TrainConfig) -> int:
    """Rows per optimizer step across every rank, as the Trainer will draw them: the per-device batch ×
    the devices one process spreads it over × accumulation × processes.

    A single process on several GPUs runs transformers' DataParallel (its batch is per GPU); under a
    launcher, on a CPU, or with DeepSpeed/FSDP each rank has one device. `train.extra` may set the
    per-device batch and the accumulation itself; then its values count."""
    per_device = int(train.extra.get("per_device_train_batch_size", train.batch_size))
    accumulation = int(train.extra.get("gradient_accumulation_steps", train.grad_accum))
    one_device = on_cpu(train) or train.processes > 1 or any(k in train.extra for k in ("deepspeed", "fsdp"))
    devices = 1 if one_device else max(1, _cuda_devices())
    return per_device * devices * accumulation * train.processes


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count()


def decide_steps(train: TrainConfig, rows: int | None, batch: int | None = None) -> Steps:
    """The steps for `rows` training rows at `batch` rows a step (default: one process's batch_size ×
    grad_accum); `rows` None (a check before there are rows) leaves the count to TRL.

    In order: `train.extra.max_steps`, then `train.max_steps` > 0, then `train.extra.num_train_epochs`
    (TRL counts), then `epochs` passes over the rows, at least 1, raised to `min_steps`, cut to
    `step_cap`."""
    extra = train.extra
    epochs = float(extra.get("num_train_epochs", train.epochs))
    batch = batch or train.batch_size * train.grad_accum
    if "max_steps" in extra:
        return Steps(int(extra["max_steps"]), epochs, batch, "train.extra.max_steps")
    if train.max_steps > 0:
        return Steps(train.max_steps, epochs, batch, "train.max_steps")
    if "num_train_epochs" in extra:
        return Steps(-1, epochs, batch, "train.extra.num_train_epochs")
    if rows is None:
        return Steps(-1, epochs, batch, "train.epochs")
    steps, by = max(1, math.ceil(train.epochs * rows / batch - 1e-9)), "train.epochs"
    if steps < train.min_steps:
        steps, by = train.min_steps, "train.min_steps"
    if train.step_cap and steps > train.step_cap:
        steps, by = train.step_cap, "train.step_cap"
    return Steps(steps, epochs, batch, by)
