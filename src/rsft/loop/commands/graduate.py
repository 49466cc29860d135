"""`rsft graduate RUN`: the GRPO hand-off that a monitor trigger prepared (`rsft.learning.monitoring.graduate`).

It runs TRL's own `GRPOTrainer` from the graduation's model on its prompts (those whose samples still got
different rewards), with the run's scorer as `reward_funcs` (through `rsft.learning.monitoring.reward_func.as_reward_func`),
and saves the model to ``RUN/graduate/model`` and the training log to ``grpo.json``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from rsft.core.errors import RsftError
from rsft.core.rundir.files import atomic_write_json, read_json, read_jsonl, replace_dir


def graduate(run_dir: str | Path, max_steps: int | None = None) -> Path:
    """Run TRL's GRPOTrainer as ``RUN/graduate/`` describes; returns the saved model's directory."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from rsft.core.progress import console, quiet_hf, rich_train_callback
    from rsft.inputs.modeling import load_model, load_tokenizer
    from rsft.learning.monitoring.reward_func import as_reward_func
    from rsft.stages.run import Run

    quiet_hf()
    run = Run.open(run_dir)
    grad = run.layout.graduate
    out = grad.path
    if not grad.graduation.is_file():
        raise RsftError(f"{out}: no graduation here (a monitor trigger with action: graduate writes it)")
    if run.env is not None:
        raise RsftError(f"{run.dir}: graduation to GRPO is single-turn, and this run samples agent trajectories "
                        "(its prompts alone would train without the environment's tools)")
    info = read_json(grad.graduation)
    rows = list(read_jsonl(grad.prompts))
    if not rows:
        raise RsftError(f"{grad.prompts}: no prompt with mixed rewards is left for GRPO")
    settings = read_json(grad.grpo_config)
    if max_steps is not None:
        settings["max_steps"] = max_steps
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    flag = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    settings.setdefault(flag, False)
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise RsftError(f"{grad.grpo_config}: {unknown[0]!r} is not a GRPOConfig setting")
    stop = tuple(run.cfg.sampling.stop)
    if stop:
        console.print(f"note: GRPO's generation cannot stop on strings; completions are cut at sampling.stop "
                      f"{list(stop)} before scoring, and the tokens after the stop still count in GRPO's loss")
    work = grad.grpo_work
    args = GRPOConfig(output_dir=str(work), use_cpu=not torch.cuda.is_available(), disable_tqdm=True, **settings)
    reward = as_reward_func(run.scorer, stop, run.cfg.scoring.timeout)
    trainer = GRPOTrainer(model=load_model(info["model"]), reward_funcs=[reward], args=args,
                          train_dataset=Dataset.from_list([{k: v for k, v in r.items() if k != "prompt_id"}
                                                           for r in rows]),
                          processing_class=load_tokenizer(info["model"]),
                          callbacks=[rich_train_callback("graduate (GRPO)")])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if trainer.state.global_step == 0:
        raise RsftError(f"{out}: GRPO took no step ({len(rows)} prompts for per_device_train_batch_size "
                        f"{args.per_device_train_batch_size} / num_generations {args.num_generations}); nothing "
                        "was saved; lower per_device_train_batch_size in monitor.grpo")
    final = work / "final"
    trainer.model.save_pretrained(final)
    trainer.processing_class.save_pretrained(final)
    replace_dir(final, grad.model)
    atomic_write_json(grad.grpo_log, {"steps": int(trainer.state.global_step), "log": trainer.state.log_history})
    shutil.rmtree(work, ignore_errors=True)
    return grad.model
