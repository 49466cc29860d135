"""Warm start: SFT on gold completions until held-out greedy pass@1 reaches a target.

STaR found that a model starting near 0% cannot bootstrap: with no accepted
samples there is nothing to train on. Learning on small arithmetic models is
also sharp (0% to 100% within a few hundred steps), so a fixed step count
either leaves the model at zero or finishes the task. The warm start
therefore checks greedy pass@1 every `check_every` steps and stops at the
first check at or above `target_pass1`, leaving a model that is low but not
zero: room for the rounds to show what they do.

The check runs on a dev split, never on the held-out eval prompts (the base
row would otherwise be tuned on the test set): gold prompts beyond the ones it
trains on, topped up with train prompts. It is judged by the run's judge
(`eval.scorer`, else the run's scorer), with the rounds' stop strings.

`check_warm_start` is the one check that there is something to warm-start on
and to check with: preflight runs it before any work, `warm_start` again on
what it is handed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from rsft.core.config import EvalConfig, TrainConfig, WarmStartConfig
from rsft.core.errors import ConfigError
from rsft.core.metrics_schema import GREEDY_PASS1
from rsft.core.records import Prompt
from rsft.inputs.data.formats import sft_row
from rsft.learning.evaluation import evaluate
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.transformers_engine import TransformersEngine


class StopAtPass1(TrainerCallback):
    """Evaluates greedy pass@1 every N steps and stops training at the target."""

    def __init__(self, prompts: list[Prompt], scorer: Any, tokenizer: Any, cfg: WarmStartConfig,
                 params: SamplingParams, agent: Callable[[Any], Any] | None = None) -> None:
        self.prompts, self.scorer, self.tokenizer, self.cfg = prompts, scorer, tokenizer, cfg
        self.params, self.agent = params, agent  # agent: wraps the engine to draw trajectories (agent tasks)
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.cfg.check_every:
            return
        was_training = model.training
        engine = TransformersEngine(model, self.tokenizer)
        if self.agent is not None:
            engine = self.agent(engine)
        metrics = evaluate(engine, self.prompts, self.scorer, EvalConfig(n=0), self.params)
        model.train(was_training)
        self.history.append((state.global_step, metrics[GREEDY_PASS1]))
        if metrics[GREEDY_PASS1] >= self.cfg.target_pass1:
            control.should_training_stop = True


def dev_prompts(gold: list[tuple[Prompt, Any]], train: list[Prompt], trained: int, n: int) -> list[Prompt]:
    """Up to n prompts for the stopping check: gold prompts past the first `trained`, then train prompts,
    none of them among the gold prompts it trains on."""
    seen = {p.id for p, _ in gold[:trained]}
    out: list[Prompt] = []
    for p in itertools.chain((p for p, _ in gold[trained:]), train):
        if len(out) >= n:
            break
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


def check_warm_start(gold: list[tuple[Prompt, Any]], dev: list[Prompt], task: str | None = None,
                     column_hint: bool = True) -> None:
    """The warm start has gold completions to train on (`task`: the task's name, for the message;
    `column_hint`: name task.completion_column, which only a dataset task has) and `dev` prompts left
    for its check; else a one-line ConfigError naming the key."""
    if not gold:
        raise ConfigError(f"key 'warm_start.enabled': {f'task {task!r}' if task else 'the task'} has no gold "
                          "completions to warm-start on" + (" (set task.completion_column)" if column_hint else ""))
    if not dev:
        raise ConfigError("key 'warm_start.examples': no gold or train prompts are left for the warm start's dev "
                          "check; lower warm_start.examples or add prompts")


def warm_start(init_path: str, out_dir: Any, gold: list[tuple[Prompt, Any]], dev: list[Prompt],
               judge: Any, cfg: WarmStartConfig, params: SamplingParams, seed: int = 0,
               agent: Callable[[Any, str], Any] | None = None, rounds: TrainConfig | None = None) -> dict[str, Any]:
    """SFT `init_path` on gold pairs into `out_dir`, checking greedy pass@1 on `dev` with `judge`
    (through `agent`, which wraps an engine to draw trajectories, for an agent task); it trains with the
    rounds' precision and batching settings (`rounds`: the run's train section). Returns the pass@1
    history of the checks."""
    from rsft.inputs.modeling import load_tokenizer
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import train_sft

    check_warm_start(gold, dev)
    rows = [sft_row(p, c) for p, c in gold[: cfg.examples]]
    train = TrainConfig(
        max_steps=cfg.max_steps, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        lr_scheduler="constant", save_steps=max(cfg.check_every, 100),
        mixed_precision=rounds.mixed_precision if rounds else "auto",
        group_by_length=rounds.group_by_length if rounds else True,
    )
    wrap = (lambda engine: agent(engine, init_path)) if agent is not None else None  # init_path: its tokenizer, context
    stopper = StopAtPass1(dev, judge, load_tokenizer(init_path), cfg, params, wrap)
    result = train_sft(TrainJob(init_path, out_dir, train, seed=seed, label="warm start"), rows, callbacks=[stopper])
    return {"steps": result.steps, "loss": result.loss, "checks": stopper.history, "dev_prompts": len(dev),
            "reached_target": bool(stopper.history and stopper.history[-1][1] >= cfg.target_pass1),
            "plan": result.plan.to_json() if result.plan is not None else None}
