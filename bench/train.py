"""rsft's SFT stage against TRL's `SFTTrainer` with its defaults: tokens/s and the loss, side by side.

    python bench/train.py [--shape 1m|25m|smollm2|all] [--repeats 3] [--steps N] [--variants]

Both contenders train the same freshly loaded model on the same rows, with the
same batch size, learning rate, number of steps and seed (the hyperparameters a
user picks), so they see the same batches in the same order. Everything else is
each one's own default:

- **TRL defaults**: `SFTConfig(output_dir, per_device_train_batch_size, learning_rate, max_steps, seed,
  use_cpu=True)` and nothing more (`use_cpu` because TRL's default bf16 refuses to start on a
  machine without a GPU otherwise; the rest: bf16 autocast, activation checkpointing, padding to the
  longest row, logging every 10 steps, ...).
- **rsft**: `rsft.learning.training.sft.make_sft_trainer`, the round's own trainer, with a `TrainConfig` of the
  same hyperparameters and rsft's defaults for the rest (its checkpointing every `save_steps`
  included); the progress bar is off in both.

Shapes:
- `1m`: the demo's model (hidden 128, 4 layers) on the demo's gold addition rows (~18 tokens each),
  batch 64, learning rate 1e-3, as a demo round trains.
- `25m`: the bench's 25M char-level Llama on synthetic rows of mixed lengths, prompt + completion
  50-400 tokens (GSM8K-like), batch 8, learning rate 1e-4.
- `smollm2`: the real SmolLM2-135M-Instruct (the float32 HF checkpoint `make model` converts from the
  GGUF file, where the tests find it: `$RSFT_CACHE/gguf/`, RSFT_CACHE defaulting to the project's
  `.cache/rsft` as under `make test`) on GSM8K train rows from `../shared/data/gsm8k/` (read in place),
  each a conversational prompt/completion row (the question as the user turn, the worked answer as the
  assistant's), which both trainers render through the model's chat template and mask to the completion
  (TRL's default `completion_only_loss` for prompt/completion rows; rsft sets it). 320 rows to train
  on, 32 held out; batch 8; two variants, each with its own ratio line: `smollm2 full` (full fine-tune,
  learning rate 5e-5) and `smollm2 lora` (LoRA r 16, alpha 32, all linear layers, learning rate 2e-4:
  `TrainConfig(lora=...)` for rsft, the same peft `LoraConfig` as `peft_config=` for TRL). 4 steps per
  run by default; on 2 idle CPU cores a step takes 7-18 s (`--steps 2 --repeats 1` about 4 minutes, the
  defaults about 15), so `all` leaves it out (`all` is `1m` and `25m`, as before, minutes in all): run it
  with `--shape smollm2`. Without the model it stops with one line
  saying to run `make model`.

Only `trainer.train()` is timed; tokens are the trainer's own count of the tokens it trained on
(TRL's `num_tokens`). rsft draws batches of similar length (`train.group_by_length`), so in the same
steps it trains on other rows than TRL's random order, and on a different number of tokens: tokens/s
is the measure, and the loss each trained model reaches is measured on the same 64 held-out rows
(32 for smollm2), computed by this script in fp32. Runs alternate (rsft, TRL, rsft, ...) after one warm-up each;
medians are printed, then one line per shape: `rsft SFT vs TRL defaults (SHAPE): N.NNx`.
`--variants` adds rsft with one of its defaults changed (fp32, random batches, TRL's padding_free).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALPHABET, build_model, machine, median  # noqa: E402

from rsft.core.config import LoraConfig, TinyModelConfig, TrainConfig  # noqa: E402
from rsft.core.progress import quiet_hf  # noqa: E402
from rsft.core.records import Prompt  # noqa: E402
from rsft.inputs.data.formats import sft_row  # noqa: E402
from rsft.inputs.modeling import load_model, load_tokenizer  # noqa: E402
from rsft.inputs.tasks.addition import make_task  # noqa: E402
from rsft.inputs.tasks.tiny_model import build_tiny  # noqa: E402
from rsft.learning.training.job import TrainJob  # noqa: E402
from rsft.learning.training.sft import make_sft_trainer  # noqa: E402

HELDOUT = {"1m": 64, "25m": 64, "smollm2": 32}  # rows kept out of training, on which each trained model's loss
# is measured
SETTINGS = {  # shape: (batch size, learning rate, default steps per run)
    "1m": (64, 1e-3, 100),
    "25m": (8, 1e-4, 8),
    "smollm2 full": (8, 5e-5, 4),
    "smollm2 lora": (8, 2e-4, 4),
}
SHAPES = {"1m": ["1m"], "25m": ["25m"], "smollm2": ["smollm2 full", "smollm2 lora"], "all": ["1m", "25m"]}
ROOT = Path(__file__).resolve().parents[1]
SMOL_GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # where `make model` puts it
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
# rsft's LoRA and the same adapter in peft's terms for TRL (peft's lora_dropout default is rsft's 0.0)
LORA = LoraConfig(r=16, alpha=32, target_modules="all-linear")


def demo_rows(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The demo's 1M model (untrained, as the demo builds it) and its 2,000 gold addition rows."""
    task = make_task(digits=3, n_train=2000, n_eval=500, n_gold=2000, seed=0)
    path = build_tiny(root / "model-1m", task.alphabet, TinyModelConfig(hidden_size=128, num_layers=4, num_heads=4))
    return path, [sft_row(p, c) for p, c in task.gold]


def mixed_rows(root: Path, n: int = 320, seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """The 25M model and `n` rows whose prompt + completion is 50-400 characters (= tokens) long,
    the completion 40-70% of it."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        total = rng.randint(50, 400)
        cut = int(total * rng.uniform(0.3, 0.6))
        text = "".join(rng.choice(ALPHABET) for _ in range(total - 2))  # BOS and EOS make up the rest
        rows.append({"prompt": text[:cut], "completion": text[cut:]})
    return build_model(root / "model-25m", "25m"), rows


def smol_model() -> Path:
    """The float32 HF checkpoint `make model` converted from the SmolLM2 GGUF file (as the tests' `smol_dir`
    finds it), or exit with one line saying how to get it; never converts here."""
    from rsft.inputs.gguf import FORMAT, RECORD, cache_root, file_sha256

    os.environ.setdefault("RSFT_CACHE", str(ROOT / ".cache" / "rsft"))  # the project's own, as `make test`
    path = cache_root() / f"{file_sha256(SMOL_GGUF)[:32]}-float32-v{FORMAT}" if SMOL_GGUF.is_file() else None
    if path is None or not (path / RECORD).is_file():
        sys.exit(f"bench/train.py --shape smollm2: the real model is not here ({path or SMOL_GGUF}); run `make model`")
    return path


def gsm8k_rows(n: int) -> list[dict[str, Any]]:
    """The first `n` GSM8K train rows as conversational prompt/completion rows: the question as the user
    turn, the worked answer (calculator annotations and `#### N` line as the dataset has them) as the
    assistant's."""
    if not GSM8K.is_file():
        sys.exit(f"bench/train.py --shape smollm2: no GSM8K data at {GSM8K}")
    with GSM8K.open(encoding="utf-8") as f:
        data = [json.loads(line) for line, _ in zip(f, range(n))]
    return [sft_row(Prompt(f"gsm8k-{i}", messages=({"role": "user", "content": d["question"]},)), d["answer"])
            for i, d in enumerate(data)]


def trl_defaults(model_path: Path, rows: list[dict[str, Any]], work: Path, batch: int, lr: float, steps: int,
                 seed: int, lora: LoraConfig | None = None) -> Any:
    """TRL's SFTTrainer as its docs start it: the hyperparameters (and the LoRA adapter, as peft's
    `LoraConfig`), nothing else."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(work), per_device_train_batch_size=batch, learning_rate=lr, max_steps=steps,
                     seed=seed, disable_tqdm=True, use_cpu=True)
    peft = None
    if lora is not None:
        from peft import LoraConfig as PeftLora

        peft = PeftLora(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(model=load_model(str(model_path)), args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=load_tokenizer(str(model_path)), peft_config=peft)


def rsft_stage(model_path: Path, rows: list[dict[str, Any]], work: Path, batch: int, lr: float, steps: int,
               seed: int, padding_free: bool = False, max_length: int | None = 1024, **changes: Any) -> Any:
    """The round's trainer with TRL's schedule (linear decay), so the two loss curves are comparable;
    `changes` are TrainConfig fields, `padding_free` and `max_length` TRL's."""
    extra = {"padding_free": True, "max_length": None} if padding_free else {}
    cfg = TrainConfig(batch_size=batch, learning_rate=lr, max_steps=steps, lr_scheduler="linear", extra=extra,
                      **changes)
    return make_sft_trainer(rows, TrainJob(str(model_path), work / "model", cfg, seed=seed, label=None))


def split_ids(tokenizer: Any, row: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of a row. Text: the prompt with its BOS, then the completion and EOS.
    Conversational: as TRL tokenizes it, the prompt through the chat template with the generation prompt,
    the completion the rest of the whole conversation's ids (from where the two first differ)."""
    if isinstance(row["prompt"], str):
        return (tokenizer(row["prompt"])["input_ids"],
                tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    p = tokenizer.apply_chat_template(row["prompt"], tokenize=True, return_dict=True,
                                      add_generation_prompt=True)["input_ids"]
    full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=True)["input_ids"]
    cut = next((i for i, (a, b) in enumerate(zip(p, full)) if a != b), min(len(p), len(full)))
    return full[:cut], full[cut:]


def heldout_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Mean cross-entropy per completion token on `rows`, in fp32, computed here (not by either trainer),
    on the tokens each trainer counts in its loss (`split_ids`)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            p, c = split_ids(tokenizer, r)
            ids = torch.tensor([p + c])  # [1, L]
            logits = model(input_ids=ids).logits.float()[0, len(p) - 1:-1]  # [len(c), V]: predicts c
            total += torch.nn.functional.cross_entropy(logits, torch.tensor(c), reduction="sum").item()
            count += len(c)
    return total / count


def one_run(make: Any, root: Path, heldout: list[dict[str, Any]]) -> tuple[float, int, float]:
    """(seconds in train(), tokens trained on, held-out loss after training) of a fresh trainer."""
    work = Path(tempfile.mkdtemp(dir=root))
    trainer = make(work)
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    tokens = int(getattr(trainer, "_total_train_tokens", 0)) or int(
        next(e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e))
    loss = heldout_loss(trainer.model, trainer.processing_class, heldout)
    shutil.rmtree(work, ignore_errors=True)
    return secs, tokens, loss


def shape_data(shape: str, root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The model and all rows of a shape (its held-out rows last)."""
    if shape == "1m":
        return demo_rows(root)
    if shape == "25m":
        return mixed_rows(root)
    return smol_model(), gsm8k_rows(320 + HELDOUT["smollm2"])


def bench_shape(shape: str, root: Path, repeats: int, steps: int | None, variants: bool) -> float:
    batch, lr, default_steps = SETTINGS[shape]
    steps = steps or default_steps
    base = shape.split()[0]
    model_path, rows = shape_data(base, root)
    rows, heldout = rows[:-HELDOUT[base]], rows[-HELDOUT[base]:]
    lora = LORA if shape.endswith("lora") else None
    contenders = {
        "rsft": lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0, lora=lora),
        "trl_defaults": lambda w: trl_defaults(model_path, rows, w, batch, lr, steps, 0, lora=lora),
    }
    if variants:  # rsft with one of its defaults changed, for information
        contenders["rsft fp32"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0, lora=lora,
                                                      mixed_precision="no")
        contenders["rsft random batches"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0,
                                                                lora=lora, group_by_length=False)
        contenders["rsft padding_free"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0,
                                                              lora=lora, padding_free=True, max_length=None)
    print(f"\n== {shape}: {len(rows)} rows, batch {batch}, lr {lr}, {steps} steps per run, {repeats} runs each "
          f"after a warm-up ({machine()})")
    for make in contenders.values():
        one_run(make, root, heldout[:1])
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, make in contenders.items():
            runs[name].append(one_run(make, root, heldout))
    rate = {}
    for name, rs in runs.items():
        rate[name] = median([t / s for s, t, _ in rs])
        print(f"{name:22s} median {rate[name]:9.0f} tok/s   runs: "
              + ", ".join(f"{t / s:.0f}" for s, t, _ in rs)
              + f"   tokens/run {rs[0][1]:,}   held-out loss: " + ", ".join(f"{loss:.4f}" for _, _, loss in rs))
    ratio = rate["rsft"] / rate["trl_defaults"]
    print(f"rsft SFT vs TRL defaults ({shape}): {ratio:.2f}x")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=list(SHAPES), default="all", help="all: 1m and 25m (not smollm2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per run (default: 100 at 1m, 8 at 25m, 4 at smollm2)")
    ap.add_argument("--variants", action="store_true", help="also rsft with padding_free / group_by_length")
    args = ap.parse_args()
    quiet_hf()
    shapes = SHAPES[args.shape]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ratios = {s: bench_shape(s, Path(tmp), args.repeats, args.steps, args.variants) for s in shapes}
    print()
    for s, r in ratios.items():
        print(f"rsft SFT vs TRL defaults ({s}): {r:.2f}x")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
