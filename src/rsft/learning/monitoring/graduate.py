"""Graduation: when positives-only training has done what it can, hand the prompts that still discriminate to GRPO.

`write_graduation` (the monitor stage's `graduate` action) writes ``RUN/graduate/``:
- ``prompts.jsonl``: the train prompts whose samples in the round got different rewards, with their
  dataset columns (prompts whose samples all scored the same give GRPO zero advantage: dropped);
- ``grpo_config.json``: TRL `GRPOConfig` settings (rsft's CPU-friendly defaults, then `monitor.grpo`);
- ``graduation.json``: the round, the model to start from (the best round by held-out greedy pass@1),
  the trigger, and how many prompts were kept and dropped.

`rsft graduate RUN` (`rsft.loop.commands.graduate`) runs TRL's own `GRPOTrainer` from that model on those
prompts, with the run's scorer as `reward_funcs` (through `rsft.learning.monitoring.reward_func`). rsft adds no
RL of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.core.config import RunConfig
from rsft.core.metrics_schema import GREEDY_PASS1, ROUND, Row, is_base
from rsft.core.rundir.files import atomic_write_json, atomic_write_jsonl, read_groups
from rsft.core.rundir.layout import RoundDir, RunDir
from rsft.inputs.data.formats import scorer_prompt


def best_round(history: list[Row]) -> int:
    """The round with the best held-out greedy pass@1 (the later on a tie); -1 for the base."""
    best, index = -1.0, -1
    for row in history:
        p = GREEDY_PASS1.of(row)
        if p is not None and p >= best:
            best, index = p, (-1 if is_base(row) else int(ROUND.of(row)))
    return index


def grpo_defaults(cfg: RunConfig, prompts: int = 4) -> dict[str, Any]:
    """Settings that run on a CPU and follow the run's own sampling (temperature, top_p, top_k, the
    completion length; the stop strings are cut by the reward function, `rsft.learning.monitoring.reward_func`,
    as GRPOConfig has no field for them); `monitor.grpo` overrides them.

    Four prompts per step (fewer when fewer are left; one prompt's group is often all-same-reward, a step with no signal), and a
    twentieth of the SFT learning rate: at the SFT rate GRPO's noisy steps wrecked a demo-task model
    (82% -> 0% held-out in bench/graduation.py)."""
    s, t = cfg.sampling, cfg.train
    generations = max(2, min(s.n, 8))
    return {"num_generations": generations, "per_device_train_batch_size": max(1, min(4, prompts)) * generations,
            "max_completion_length": s.max_new_tokens, "temperature": s.temperature or 1.0,
            "top_p": s.top_p, "top_k": s.top_k,
            "learning_rate": t.learning_rate / 20, "max_steps": 100, "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "bf16": False, "fp16": False, "dataloader_num_workers": 0, "seed": cfg.seed}


def write_graduation(cfg: RunConfig, run_dir: Path, r: int, trigger: str, history: list[Row],
                     model_of: Callable[[int], str]) -> Path:
    """Write ``RUN/graduate/`` for round r; `model_of(round)` is that round's saved model path (-1: the
    base model); GRPO starts from the best round by held-out greedy pass@1."""
    layout = RunDir(run_dir)
    out = layout.graduate
    groups = read_groups(RoundDir(run_dir, r).scored)
    mixed = [g for g in groups if len({c.value for c in g.scores if c.ok}) > 1]
    rows = [{"prompt": scorer_prompt(g.prompt), **g.prompt.fields, "prompt_id": g.prompt.id} for g in mixed]
    best = best_round(history)
    model = model_of(best)
    atomic_write_jsonl(out.prompts, rows)
    atomic_write_json(out.grpo_config, {**grpo_defaults(cfg, len(rows)), **cfg.monitor.grpo})
    atomic_write_json(out.graduation, {
        "round": r, "trigger": trigger, "model": model, "best_round": best, "prompts": len(rows),
        "dropped_uniform": len(groups) - len(rows), "command": f"rsft graduate {run_dir}",
    })
    return out.path
