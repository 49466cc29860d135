"""rsft's SFT stage against TRL's `SFTTrainer` with its defaults: tokens/s and the loss, side by side.

    python bench/train.py [--shape 1m|25m|all] [--repeats 3] [--steps N] [--variants]

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

Only `trainer.train()` is timed; tokens are the trainer's own count of the tokens it trained on
(TRL's `num_tokens`). rsft draws batches of similar length (`train.group_by_length`), so in the same
steps it trains on other rows than TRL's random order, and on a different number of tokens: tokens/s
is the measure, and the loss each trained model reaches is measured on the same 64 held-out rows,
computed by this script in fp32. Runs alternate (rsft, TRL, rsft, ...) after one warm-up each;
medians are printed, then one line per shape: `rsft SFT vs TRL defaults (SHAPE): N.NNx`.
`--variants` adds rsft with one of its defaults changed (fp32, random batches, TRL's padding_free).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALPHABET, build_model, machine, median  # noqa: E402

from rsft.core.config import TinyModelConfig, TrainConfig  # noqa: E402
from rsft.core.progress import quiet_hf  # noqa: E402
from rsft.inputs.data.formats import sft_row  # noqa: E402
from rsft.inputs.modeling import load_model, load_tokenizer  # noqa: E402
from rsft.inputs.tasks.addition import make_task  # noqa: E402
from rsft.inputs.tasks.tiny_model import build_tiny  # noqa: E402
from rsft.learning.training.job import TrainJob  # noqa: E402
from rsft.learning.training.sft import make_sft_trainer  # noqa: E402

HELDOUT = 64  # rows kept out of training, on which each trained model's loss is measured
SETTINGS = {  # shape: (batch size, learning rate, default steps per run)
    "1m": (64, 1e-3, 100),
    "25m": (8, 1e-4, 8),
}


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


def trl_defaults(model_path: Path, rows: list[dict[str, Any]], work: Path, batch: int, lr: float, steps: int,
                 seed: int) -> Any:
    """TRL's SFTTrainer as its docs start it: the hyperparameters, nothing else."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(work), per_device_train_batch_size=batch, learning_rate=lr, max_steps=steps,
                     seed=seed, disable_tqdm=True, use_cpu=True)
    return SFTTrainer(model=load_model(str(model_path)), args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=load_tokenizer(str(model_path)))


def rsft_stage(model_path: Path, rows: list[dict[str, Any]], work: Path, batch: int, lr: float, steps: int,
               seed: int, padding_free: bool = False, max_length: int | None = 1024, **changes: Any) -> Any:
    """The round's trainer with TRL's schedule (linear decay), so the two loss curves are comparable;
    `changes` are TrainConfig fields, `padding_free` and `max_length` TRL's."""
    extra = {"padding_free": True, "max_length": None} if padding_free else {}
    cfg = TrainConfig(batch_size=batch, learning_rate=lr, max_steps=steps, lr_scheduler="linear", extra=extra,
                      **changes)
    return make_sft_trainer(rows, TrainJob(str(model_path), work / "model", cfg, seed=seed, label=None))


def heldout_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Mean cross-entropy per completion token on `rows`, in fp32, computed here (not by either trainer):
    the prompt with its BOS, then the completion and EOS; the loss counts completion and EOS tokens."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            p = tokenizer(r["prompt"])["input_ids"]
            c = tokenizer(r["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
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


def bench_shape(shape: str, root: Path, repeats: int, steps: int | None, variants: bool) -> float:
    batch, lr, default_steps = SETTINGS[shape]
    steps = steps or default_steps
    model_path, rows = demo_rows(root) if shape == "1m" else mixed_rows(root)
    rows, heldout = rows[:-HELDOUT], rows[-HELDOUT:]
    contenders = {
        "rsft": lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0),
        "trl_defaults": lambda w: trl_defaults(model_path, rows, w, batch, lr, steps, 0),
    }
    if variants:  # rsft with one of its defaults changed, for information
        contenders["rsft fp32"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0,
                                                      mixed_precision="no")
        contenders["rsft random batches"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0,
                                                                group_by_length=False)
        contenders["rsft padding_free"] = lambda w: rsft_stage(model_path, rows, w, batch, lr, steps, 0,
                                                              padding_free=True, max_length=None)
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
    ap.add_argument("--shape", choices=["1m", "25m", "all"], default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: 100 at 1m, 8 at 25m)")
    ap.add_argument("--variants", action="store_true", help="also rsft with padding_free / group_by_length")
    args = ap.parse_args()
    quiet_hf()
    shapes = ["1m", "25m"] if args.shape == "all" else [args.shape]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ratios = {s: bench_shape(s, Path(tmp), args.repeats, args.steps, args.variants) for s in shapes}
    print()
    for s, r in ratios.items():
        print(f"rsft SFT vs TRL defaults ({s}): {r:.2f}x")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
