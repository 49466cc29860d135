"""Warm start: SFT on gold completions until held-out greedy pass@1 reaches a target.

STaR found that a model starting near 0% cannot bootstrap: with no accepted
samples there is nothing to train on. Learning on small arithmetic models is
also sharp (0% to 100% within a few hundred steps), so a fixed step count
either leaves the model at zero or finishes the task. The warm start
therefore checks greedy pass@1 every `check_every` steps and stops at the
first check at or above `target_pass1`, leaving a model that is low but not
zero: room for the rounds to show what they do.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from rsft.config import EvalConfig, TrainConfig, WarmStartConfig
from rsft.data.formats import sft_row
from rsft.errors import RsftError
from rsft.evaluation import evaluate
from rsft.records import Prompt
from rsft.sampling.transformers_engine import TransformersEngine


class StopAtPass1(TrainerCallback):
    """Evaluates greedy pass@1 every N steps and stops training at the target."""

    def __init__(self, prompts: list[Prompt], scorer: Any, tokenizer: Any, cfg: WarmStartConfig,
                 max_new_tokens: int) -> None:
        self.prompts, self.scorer, self.tokenizer, self.cfg = prompts, scorer, tokenizer, cfg
        self.max_new_tokens = max_new_tokens
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.cfg.check_every:
            return
        was_training = model.training
        engine = TransformersEngine(model, self.tokenizer)
        metrics = evaluate(engine, self.prompts, self.scorer, EvalConfig(n=0), self.max_new_tokens)
        model.train(was_training)
        self.history.append((state.global_step, metrics["greedy_pass@1"]))
        if metrics["greedy_pass@1"] >= self.cfg.target_pass1:
            control.should_training_stop = True


def warm_start(init_path: str, out_dir: Any, gold: list[tuple[Prompt, str]], eval_prompts: list[Prompt],
               scorer: Any, cfg: WarmStartConfig, max_new_tokens: int, seed: int = 0) -> dict[str, Any]:
    """SFT `init_path` on gold pairs into `out_dir`; returns the pass@1 history of the checks."""
    from rsft.modeling import load_tokenizer
    from rsft.training.sft import train_sft

    if not gold:
        raise RsftError("warm_start.enabled: this task has no gold completions (set task.completion_column)")
    rows = [sft_row(p, c) for p, c in gold[: cfg.examples]]
    train = TrainConfig(
        max_steps=cfg.max_steps, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        lr_scheduler="constant", save_steps=max(cfg.check_every, 100),
    )
    stopper = StopAtPass1(eval_prompts[: cfg.eval_prompts], scorer, load_tokenizer(init_path), cfg, max_new_tokens)
    result = train_sft(rows, init_path, out_dir, train, seed=seed, label="warm start", callbacks=[stopper])
    return {"steps": result.steps, "loss": result.loss, "checks": stopper.history,
            "reached_target": bool(stopper.history and stopper.history[-1][1] >= cfg.target_pass1)}
