"""Everything about a run that can be checked before any work, checked: when a run starts and when it resumes.

A mistake found after sampling a whole round (or after warm-starting the base)
costs the user that time; found here, it costs nothing and leaves nothing
behind. `check_run` builds what the stages will build and stops at the first
problem, with one line naming the key, file or path:

- the output directory can hold the run;
- the model (and a separate tokenizer) exist, their safetensors headers read,
  and a hub id resolves in the local cache;
- the task builds, has train prompts, and no prompt (plus `max_new_tokens`)
  exceeds the model's context;
- the scorer and the judge build, are callable, and the dataset columns their
  signatures require are there;
- the engine name and its options (and `eval.engine`'s) fit the factory;
- TRL's SFTConfig accepts the train settings (`train.extra`, scheduler), and
  the LoRA target modules exist in the model (on a weightless copy).

It does not run a model or a scorer: a scorer that fails on real samples is
an error on those samples, and a round whose samples all fail stops.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from rsft.data.formats import prompt_ids
from rsft.errors import ConfigError
from rsft.modeling import check_model_path, load_tokenizer
from rsft.sampling.engines import check_engine_options
from rsft.scoring.spec import check_scorer
from rsft.stages.run import Run

def check_run(run: Run) -> None:
    cfg = run.cfg
    check_output_dir(cfg.run_dir)
    check_engine_options(cfg.sampling.engine, cfg.sampling.engine_options)
    if cfg.eval.engine is not None:
        check_engine_options(cfg.eval.engine, cfg.eval.engine_options, "eval.engine_options")
    task = run.task
    if cfg.rounds > 0 and not task.train:
        raise ConfigError(f"key 'task': task {cfg.task.name!r} has no train prompts"
                          + (f" ({cfg.task.train} is empty)" if cfg.task.train else ""))
    columns = {k for p in [*task.train[:1], *task.eval[:1]] for k in p.fields}
    check_scorer(run.scorer, columns, "scorer")
    if cfg.eval.enabled:
        check_scorer(run.eval_scorer, columns, "eval.scorer")
    if cfg.warm_start.enabled:
        check_warm_start(run)
    check_sft_settings(cfg)
    tokenizer, model_config = model_parts(run)
    check_prompt_lengths(run, tokenizer, model_config)
    if cfg.train.lora is not None:
        check_lora(run, model_config)


def check_output_dir(run_dir: Path) -> None:
    """The run directory can be created and written: no file in its place, no read-only parent."""
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"key 'output_dir': {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"key 'output_dir': {parent} is not writable")
            return


def check_warm_start(run: Run) -> None:
    """The warm start has gold completions to train on and prompts left for its dev check."""
    from rsft.training.warm_start import dev_prompts

    ws, task = run.cfg.warm_start, run.task
    if not task.gold:
        raise ConfigError(f"key 'warm_start.enabled': task {task.name!r} has no gold completions to warm-start on"
                          + (" (set task.completion_column)" if run.cfg.task.name == "dataset" else ""))
    if not dev_prompts(task.gold, task.train, ws.examples, ws.eval_prompts):
        raise ConfigError("key 'warm_start.examples': no gold or train prompts are left for the warm start's dev "
                          "check; lower warm_start.examples or add prompts")


def check_sft_settings(cfg: Any) -> None:
    """TRL's own SFTConfig is built from the train settings, as the train stage will build it."""
    from transformers.trainer_utils import SchedulerType

    from rsft.training.sft import sft_config

    names = [s.value for s in SchedulerType]
    if cfg.train.lr_scheduler not in names:
        raise ConfigError(f"key 'train.lr_scheduler': unknown scheduler {cfg.train.lr_scheduler!r}, expected one "
                          f"of {', '.join(names)}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sft_config(cfg.train, Path(tmp) / "check", cfg.seed)
        except TypeError as e:
            bad = str(e).split("'")[1] if "'" in str(e) else str(e)
            raise ConfigError(f"key 'train.extra.{bad}': not a setting of TRL's SFTConfig") from None
        except ValueError as e:
            raise ConfigError(f"key 'train': TRL's SFTConfig refuses these settings: "
                              f"{str(e).splitlines()[0]}") from None


def model_parts(run: Run) -> tuple[Any, Any]:
    """The tokenizer and model config round 0 starts from, without loading weights."""
    m = run.cfg.model
    if m.path == "tiny":
        from rsft.tasks.tiny_model import char_tokenizer, tiny_config

        if run.task.alphabet is None:
            raise ConfigError(f"key 'model.path': 'tiny' needs a task with a character alphabet, "
                              f"task {run.task.name!r} has none; give a model path")
        tokenizer = char_tokenizer(run.task.alphabet)
        return tokenizer, tiny_config(tokenizer, m.tiny)
    from transformers import AutoConfig

    check_model_path(m.path, "model.path")
    if m.tokenizer is not None:
        check_model_path(m.tokenizer, "model.tokenizer", need_config=False)
    check_safetensors(Path(m.path))
    try:
        config = AutoConfig.from_pretrained(m.path, trust_remote_code=m.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - hub and parsing errors come in many types
        where = "a local model directory" if Path(m.path).is_dir() else "in the local HF cache or on the hub"
        raise ConfigError(f"key 'model.path': {m.path!r}: cannot read its config as {where} "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    key = "model.tokenizer" if m.tokenizer else "model.path"
    return load_tokenizer(m.tokenizer or m.path, what=key, trust_remote_code=m.trust_remote_code), config


def check_safetensors(path: Path) -> None:
    """Each .safetensors file of a local model has a readable header (a truncated download fails here)."""
    if not path.is_dir():
        return
    for f in sorted(path.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                if size > f.stat().st_size:
                    raise ValueError("header longer than the file")
                header = json.loads(fh.read(size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            if 8 + size + end > f.stat().st_size:
                raise ValueError("file shorter than its tensors")
        except (struct.error, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"key 'model.path': {f}: not a readable safetensors file ({e})") from None


def check_prompt_lengths(run: Run, tokenizer: Any, model_config: Any) -> None:
    """No prompt, plus sampling.max_new_tokens, is longer than the model's context."""
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    if not limit:
        return
    new = max(run.cfg.sampling.max_new_tokens, run.cfg.eval.max_new_tokens or 0)
    for split, prompts in (("train", run.task.train), ("eval", run.task.eval)):
        for p in prompts:
            n = len(prompt_ids(p, tokenizer))
            if n + new > limit:
                raise ConfigError(f"task.{split} prompt {p.id!r}: {n} tokens + sampling.max_new_tokens {new} exceed "
                                  f"the model's context of {limit} tokens; shorten it, drop it, or lower "
                                  "max_new_tokens")


def check_lora(run: Run, model_config: Any) -> None:
    """peft finds the target modules in a weightless copy of the model."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rsft.training.sft import peft_config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=run.cfg.model.trust_remote_code)
    try:
        get_peft_model(model, peft_config(run.cfg.train))
    except ValueError as e:
        raise ConfigError(f"key 'train.lora.target_modules': {str(e).splitlines()[0]}") from None
