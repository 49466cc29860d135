"""Reward-model training with the soft-label Bradley-Terry loss.

With P(i ≻ j) = σ(r_i − r_j) and hp the labelled probability that `chosen` is
preferred, the loss of one pair is

    L = −hp · log σ(Δ − m) − (1 − hp) · log σ(m − Δ),   Δ = r_chosen − r_rejected

where m is the pair's optional margin (TRL's RewardTrainer margin). hp = 1
gives the usual −log σ(r_w − r_l − m); hp = 0.5 pulls Δ towards m (0 without a
margin): the model learns that it cannot tell the two apart.

A soft label and a margin are two ways of saying how much better `chosen` is:
together they count it twice (m = 1 with hp = σ(1/0.5) = 0.881 has its
optimum at Δ = 3, where σ(Δ) = 0.953). So a pair carries one of them; a file
whose rows carry both is refused unless `use_margin` says to fit
σ(Δ − m) = hp on purpose. Accuracy and calibration are reported on what the
loss fits, σ(Δ − m) (σ(Δ) when there is no margin). TRL's
RewardTrainer has no soft labels, so this is a small `transformers.Trainer`
with its own loss and collator; the text of each (prompt, completion) is
rendered exactly as the reward-model scorer renders it, so the trained
directory loads straight into `scorer: {name: reward_model}`.

With ``processes`` > 1 the training runs as that many DDP ranks under a
launcher, as SFT does (`rsft.learning.training.launch`): rank 0 evaluates and writes the
model. Unlike SFT it does not checkpoint, so a killed reward-model training
starts again.

It does not do pairwise data collection (see `rsft export pairs`) or RLHF.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rsft.core.errors import DataError
from rsft.core.records import PreferencePair
from rsft.core.rundir.files import (
    atomic_write_json,
    atomic_write_jsonl,
    check_output,
    read_jsonl,
    read_jsonl_numbered,
    replace_dir,
)
from rsft.core.rundir.layout import work_dir
from rsft.parts.scoring.reward_model import adds_special_tokens, render


def soft_bt_loss(delta: torch.Tensor, hp: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Mean soft-label Bradley-Terry loss over pairs; all inputs are [B]."""
    shifted = delta - margin  # [B]
    return -(hp * F.logsigmoid(shifted) + (1 - hp) * F.logsigmoid(-shifted)).mean()


def _number(row: dict[str, Any], key: str, default: float, where: str) -> float:
    value = row.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def load_pairs(path: str | Path, use_margin: bool | None = None) -> list[PreferencePair]:
    """Pairs from JSONL rows {prompt, chosen, rejected, p?, margin?}; errors name file:line.

    `use_margin`: None uses a row's margin only when it has no soft label, and refuses a row with
    both; True uses both (fits σ(Δ − m) = p); False ignores margins.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a pairs .jsonl file")
    pairs = []
    for line, row in read_jsonl_numbered(path):
        where = f"{path}:{line}"
        for col in ("prompt", "chosen", "rejected"):
            if col not in row:
                raise DataError(f"{where}: missing column {col!r}; a pair needs prompt, chosen, rejected")
        p = _number(row, "p", 1.0, where)
        if not 0.0 <= p <= 1.0:
            raise DataError(f"{where}: 'p' must be a probability in [0, 1], got {p!r}")
        margin = _number(row, "margin", 0.0, where)
        if use_margin is None and margin and "p" in row:
            raise DataError(f"{where}: the pair has both a soft label 'p' and a 'margin', which count the same "
                            "preference twice; drop one, or pass --use-margin to fit sigma(delta - margin) = p")
        pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"], p,
                                    margin if use_margin is not False else 0.0))
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


def split_pairs(pairs: list[PreferencePair], eval_fraction: float, seed: int) -> tuple[list, list]:
    """Held-out split by prompt (hashing), so no prompt is on both sides."""
    def held(pair: PreferencePair) -> bool:
        key = json.dumps(pair.prompt, sort_keys=True)
        h = int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "big")
        return h / 2**64 < eval_fraction

    evals = [p for p in pairs if held(p)]
    return [p for p in pairs if not held(p)], evals


class PairCollator:
    """Tokenizes pairs and stacks chosen then rejected: input_ids [2B, T], hp [B], margin [B]."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length
        self.special = adds_special_tokens(tokenizer)
        # cut long texts from the left, as the reward-model scorer does: the completion is what is judged
        self.tokenizer.truncation_side = "left"

    def __call__(self, pairs: list[PreferencePair]) -> dict[str, torch.Tensor]:
        texts = [render(self.tokenizer, p.prompt, p.chosen) for p in pairs] + \
                [render(self.tokenizer, p.prompt, p.rejected) for p in pairs]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             add_special_tokens=self.special, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "hp": torch.tensor([p.p for p in pairs]), "margin": torch.tensor([p.margin for p in pairs])}


def pair_rewards(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]  # [2B]
    chosen, rejected = rewards.float().chunk(2)  # [B], [B]
    return chosen, rejected


def _trainer_class() -> Any:
    from transformers import Trainer

    class SoftBTTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            chosen, rejected = pair_rewards(model, inputs)
            loss = soft_bt_loss(chosen - rejected, inputs["hp"], inputs["margin"])
            return (loss, {"chosen": chosen, "rejected": rejected}) if return_outputs else loss

    return SoftBTTrainer


@torch.inference_mode()
def evaluate_pairs(model: Any, collator: PairCollator, pairs: list[PreferencePair], bins: int = 5,
                   batch_size: int = 64) -> dict[str, Any]:
    """Held-out pair accuracy and calibration against hp of what the loss fits, σ(Δ − m), in bins."""
    model.eval()
    deltas, hps = [], []
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        chosen, rejected = pair_rewards(model, {k: v.to(device) for k, v in collator(batch).items()})
        deltas.extend((chosen - rejected).tolist())
        hps.extend(p.p for p in batch)
    probs = [1 / (1 + math.exp(-(d - p.margin))) for d, p in zip(deltas, pairs)]
    decided = [(pr, hp) for pr, hp in zip(probs, hps) if hp != 0.5]
    accuracy = sum((pr > 0.5) == (hp > 0.5) for pr, hp in decided) / len(decided) if decided else None
    table = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(pr, hp) for pr, hp in zip(probs, hps) if lo <= pr < hi or (b == bins - 1 and pr == 1.0)]
        if members:
            table.append({"bin": f"[{lo:.1f}, {hi:.1f})", "pairs": len(members),
                          "mean_predicted": sum(m[0] for m in members) / len(members),
                          "mean_label": sum(m[1] for m in members) / len(members)})
    ece = sum(row["pairs"] * abs(row["mean_predicted"] - row["mean_label"]) for row in table) / max(len(probs), 1)
    return {"pairs": len(pairs), "accuracy": accuracy, "mean_abs_gap": sum(abs(d) for d in deltas) / max(len(deltas), 1),
            "mean_predicted": sum(probs) / max(len(probs), 1), "mean_label": sum(hps) / max(len(hps), 1),
            "ece": ece, "calibration": table}


@dataclass(frozen=True)
class RewardModelTraining:
    init: str
    learning_rate: float = 1e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16  # per process: the global batch is batch_size × processes
    max_length: int = 512
    eval_fraction: float = 0.1
    seed: int = 0
    bins: int = 5
    dtype: str = "float32"
    use_margin: bool | None = None  # see load_pairs: None = a margin only where there is no soft label
    processes: int = 1
    launcher: str = "torchrun"  # what starts processes > 1 (rsft.learning.training.launchers)

    def __post_init__(self) -> None:
        checks = {"learning_rate": self.learning_rate > 0, "epochs": self.epochs > 0, "batch_size": self.batch_size >= 1,
                  "max_length": self.max_length >= 1, "eval_fraction": 0 <= self.eval_fraction < 1,
                  "max_steps": self.max_steps == -1 or self.max_steps >= 1, "processes": self.processes >= 1}
        bad = next((k for k, ok in checks.items() if not ok), None)
        if bad is not None:
            raise DataError(f"reward model training: {bad} = {getattr(self, bad)!r} is out of range")
        from rsft.learning.training.launchers import build_launcher

        build_launcher(self.launcher, "launcher", self.processes)  # the one launcher check


def train_reward_model(pairs_path: str | Path, out_dir: str | Path, cfg: RewardModelTraining,
                       eval_path: str | Path | None = None) -> dict[str, Any]:
    """Train a scalar reward model on pairs; write it (and report.json) to out_dir; return the report.

    `cfg.init` is a causal LM or classifier directory: its backbone is kept and a
    one-output score head is added (initialising the reward model from the
    policy, as RLHF pipelines do).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir, "--output", is_dir=True)
    pairs = load_pairs(pairs_path, cfg.use_margin)
    train, held = ((pairs, load_pairs(eval_path, cfg.use_margin)) if eval_path
                   else split_pairs(pairs, cfg.eval_fraction, cfg.seed))
    if not train:
        raise DataError(f"{pairs_path}: no training pairs left after holding out {cfg.eval_fraction:.0%}")
    work = work_dir(out_dir)
    if cfg.processes == 1:
        fit_reward_model(train, held, str(work), cfg)
    else:
        from rsft.learning.training.launch import run_processes

        atomic_write_jsonl(work / "train-pairs.jsonl", [dataclasses.asdict(p) for p in train])
        atomic_write_jsonl(work / "held-pairs.jsonl", [dataclasses.asdict(p) for p in held])
        run_processes("rsft.learning.training.preference:reward_model_job", {
            "train_path": str(work / "train-pairs.jsonl"), "held_path": str(work / "held-pairs.jsonl"),
            "work": str(work), "cfg": dataclasses.asdict(cfg)}, work, cfg.processes, cfg.launcher, "reward model")
    final = work / "final"
    report = json.loads((final / "report.json").read_text(encoding="utf-8"))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(final / "report.json", report)
    replace_dir(final, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    return report


def fit_reward_model(train: list[PreferencePair], held: list[PreferencePair], work: str, cfg: RewardModelTraining,
                     progress: Path | None = None) -> dict[str, Any]:
    """Train in this process or as one DDP rank; the main process evaluates before and after and writes
    the model with report.json to ``work/final``. Returns the report."""
    from transformers import AutoModelForSequenceClassification, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    from rsft.core.progress import quiet_hf, rich_train_callback
    from rsft.inputs.modeling import DTYPES, load_tokenizer
    from rsft.learning.training.sft import distributed

    quiet_hf()
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(cfg.init, what="reward model init")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a causal LM has no score head yet; its "MISSING score.weight" is expected
    set_seed(cfg.seed)  # the new score head is initialised at random: the seed must fix it (on every rank alike)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(cfg.init, num_labels=1, dtype=DTYPES[cfg.dtype])
    finally:
        hf_logging.set_verbosity(level)
    model.config.pad_token_id = tokenizer.pad_token_id
    collator = PairCollator(tokenizer, cfg.max_length)
    cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=work, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, lr_scheduler_type="constant", report_to="none",
        save_strategy="no", logging_steps=10, remove_unused_columns=False, dataloader_num_workers=0,
        disable_tqdm=True, seed=cfg.seed, data_seed=cfg.seed, use_cpu=cpu, bf16=False, fp16=False,
        **({"ddp_backend": "gloo" if cpu else "nccl"} if distributed() else {}),
    )
    main = args.should_save
    before = evaluate_pairs(model, collator, held, cfg.bins) if held and main else None
    if progress is not None:
        from rsft.learning.training.launch import progress_file_callback

        shown = progress_file_callback(progress)
    else:
        shown = rich_train_callback("reward model")
    from rsft.learning.training.checkpoints import checkpoint_ledger

    # the ledger logs the last step, so the recorded loss is the mean over every rank (not rank 0's tail)
    trainer = _trainer_class()(model=model, args=args, train_dataset=train, data_collator=collator,
                               callbacks=[shown, checkpoint_ledger()])
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    if not main:
        return {}
    after = evaluate_pairs(trainer.model, collator, held, cfg.bins) if held else None
    final = Path(work) / "final"
    shutil.rmtree(final, ignore_errors=True)
    trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    report = {"train_pairs": len(train), "eval_pairs": len(held), "steps": int(result.global_step),
              "train_loss": float(result.training_loss), "eval_before": before, "eval": after,
              "seconds": round(time.perf_counter() - t0, 2), "init": cfg.init}
    atomic_write_json(final / "report.json", report)
    return report


def reward_model_job(train_path: str, held_path: str, work: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """One DDP rank of `train_reward_model` (run by `rsft.learning.training.worker`)."""
    from rsft.learning.training.launch import PROGRESS

    def pairs(path: str) -> list[PreferencePair]:
        return [PreferencePair(**row) for row in read_jsonl(Path(path))]

    report = fit_reward_model(pairs(train_path), pairs(held_path), work, RewardModelTraining(**cfg),
                              progress=Path(work) / PROGRESS)
    return {"steps": report.get("steps"), "train_loss": report.get("train_loss")}
