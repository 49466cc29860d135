"""Everything about a run that can be checked before any work, checked: when a run starts and when it resumes.

A mistake found after sampling a whole round (or after warm-starting the base)
costs the user that time; found here, it costs nothing and leaves nothing
behind. `check_run` builds what the stages will build and stops at the first
problem, with one line naming the key, file or path:

- the output directory can hold the run;
- the model (and a separate tokenizer) exist, their safetensors headers read,
  and a hub id resolves in the local cache;
- the task builds, has train prompts, and no prompt (plus `max_new_tokens`)
  exceeds the model's context (named by its file and line);
- the scorer and the judge build, are callable, and the dataset columns their
  signatures (and a judge's rubric) require are there;
- the engine name and its options (and `eval.engine`'s) fit the factory, and a
  running server it names answers;
- a teacher (`sampling.model`) exists and shares the student's tokenizer, an
  agent environment class has `reset` and `step` and takes the prompt first;
- `monitor.grpo` names only fields of TRL's GRPOConfig;
- TRL's SFTConfig accepts the train settings (`train.extra`, scheduler), the
  LoRA target modules exist in the model (on a weightless copy). (With
  `train.processes` > 1 the launcher's program was checked as the config loaded.)

It does not run a model or a scorer: a scorer that fails on real samples is
an error on those samples, and a round whose samples all fail stops.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.progress import notice
from rsft.core.rundir.files import check_output
from rsft.core.rundir.layout import is_done
from rsft.inputs.data.locate import check_prompt_lengths as check_prompt_lengths_of
from rsft.inputs.data.locate import prompt_source
from rsft.inputs.modeling import check_model_path, context_length, load_tokenizer, read_config
from rsft.learning.monitoring.trackers import check_trackers
from rsft.parts.decontamination import shared_prompts
from rsft.parts.distributed import check_ray
from rsft.parts.sampling.engines import check_engine_options
from rsft.parts.sampling.env_check import check_env
from rsft.parts.sampling.teacher import check_teacher
from rsft.parts.scoring.spec import check_scorer
from rsft.stages.run import Run


def check_run(run: Run) -> None:
    cfg = run.cfg
    check_output_dir(cfg.run_dir)
    if cfg.uses_ray:
        check_ray(cfg.ray)  # installed, and the cluster's address answers (nothing is started here)
    check_engine_options(cfg.sampling.engine, cfg.sampling.engine_options)
    if cfg.eval.engine is not None:
        check_engine_options(cfg.eval.engine, cfg.eval.engine_options, "eval.engine_options", "eval.engine")
    check_servers(cfg)
    check_grpo(cfg.monitor.grpo)
    task = run.task
    if cfg.rounds > 0 and not task.train:
        raise ConfigError(f"key 'task': task {cfg.task.name!r} has no train prompts"
                          + (f" ({cfg.task.train} is empty)" if cfg.task.train else ""))
    said = []  # notices wait until every check has passed: a mistake stays a one-line error
    if cfg.eval.enabled and not task.eval:
        if cfg.task.eval:
            raise ConfigError(f"key 'task.eval': {cfg.task.eval} has no prompts (set eval.enabled: false to run "
                              "without held-out evaluation)")
        said.append(f"task {cfg.task.name!r} has no held-out prompts: evaluation is skipped (give task.eval)")
    shared = shared_prompts(task.train, task.eval) if task.eval else 0
    if shared:
        said.append(f"{shared} of the {len(task.train)} train prompts are also held-out prompts: their samples are "
                    "never trained on (selection.decontaminate), but the held-out numbers are not clean")
    columns = {k for p in [*task.train[:1], *task.eval[:1]] for k in p.fields}
    check_scorer(run.scorer, columns, "scorer")
    if cfg.eval.enabled:
        check_scorer(run.eval_scorer, columns, "eval.scorer")
    if cfg.warm_start.enabled:
        check_warm_start(run)
    check_sft_settings(cfg)
    check_trackers(cfg.report_to)
    tokenizer, model_config = model_parts(run)
    if cfg.sampling.model is not None:
        check_teacher(cfg.sampling.model, tokenizer, cfg.model.trust_remote_code)
    check_agent(run, tokenizer)
    check_prompt_lengths(run, tokenizer, model_config)
    if cfg.train.lora is not None:
        check_lora(run, model_config)
    for line in said:
        notice(line)


def check_agent(run: Run, tokenizer: Any) -> None:
    """A multi-turn task: its environment resolves, and the model's tokenizer has a chat template to render
    the conversation with."""
    check_env(run.cfg.rollout.env, run.cfg.rollout.env_options, run.task.env)  # before build_env's own checks
    if run.env is None:
        return
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("key 'rollout.env': agent trajectories are rendered through the tokenizer's chat "
                          "template, and the model's tokenizer has none; use a chat model or set a template")
    # what the rollout renders and what TRL's assistant_only_loss needs, tried on a tiny conversation
    conversation = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                    {"role": "tool", "content": "t"}, {"role": "assistant", "content": "b"}]
    try:
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers

        template = None
        if not has_generation_markers(tokenizer.chat_template):
            template = get_training_chat_template(tokenizer)
        tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
    except Exception as e:  # noqa: BLE001 - jinja, TRL and tokenizer errors alike
        raise ConfigError(f"key 'rollout.env': the model's chat template cannot render an agent conversation "
                          f"(user, assistant, tool) with assistant-only masks ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); give a template with tool messages "
                          "and {% generation %} markers") from None


def check_servers(cfg: Any) -> None:
    """A running OpenAI-compatible server the engine (or eval.engine) names answers now: found before the
    base model is built, not when the engine loads after it (its options were checked with the engine's)."""
    from rsft.inputs.serving.client import check_reachable

    for name, options, key in ((cfg.sampling.engine, cfg.sampling.engine_options, "sampling.engine_options"),
                               (cfg.eval.engine, cfg.eval.engine_options, "eval.engine_options")):
        if name == "openai" and options.get("base_url"):
            check_reachable(key, options["base_url"], options.get("api_key_env"))


def check_grpo(settings: dict[str, Any]) -> None:
    """monitor.grpo goes into RUN/graduate/grpo_config.json for `rsft graduate`, which builds TRL's GRPOConfig
    from it: a name GRPOConfig does not have would be found only then, after every round ran."""
    if not settings:
        return
    import dataclasses
    import difflib

    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    for name in settings:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            raise ConfigError(f"key 'monitor.grpo.{name}': not a setting of TRL's GRPOConfig"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))


def check_output_dir(run_dir: Path) -> None:
    """The run directory can be created and written: no file in its place, no read-only parent."""
    check_output(run_dir, "key 'output_dir':", is_dir=True)


def check_warm_start(run: Run) -> None:
    """The warm start has gold completions to train on and prompts left for its dev check (the check
    `warm_start` itself runs)."""
    from rsft.learning.training.warm_start import check_warm_start as check
    from rsft.learning.training.warm_start import dev_prompts

    ws, task = run.cfg.warm_start, run.task
    check(task.gold, dev_prompts(task.gold, task.train, ws.examples, ws.eval_prompts), task.name,
          column_hint=run.cfg.task.name == "dataset")


def check_sft_settings(cfg: Any) -> None:
    """TRL's own SFTConfig is built from the train settings, as the train stage will build it."""
    from transformers.trainer_utils import SchedulerType

    from rsft.learning.training.sft import sft_config

    names = [s.value for s in SchedulerType]
    if cfg.train.lr_scheduler not in names:
        raise ConfigError(f"key 'train.lr_scheduler': unknown scheduler {cfg.train.lr_scheduler!r}, expected one "
                          f"of {', '.join(names)}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sft_config(cfg.train, Path(tmp) / "check", cfg.seed)
        except (TypeError, ValueError, ImportError) as e:  # ImportError: deepspeed settings without deepspeed
            unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if unknown:
                raise ConfigError(f"key 'train.extra.{unknown.group(1)}': not a setting of TRL's SFTConfig") from None
            raise ConfigError(f"key '{_culprit(cfg, Path(tmp))}': TRL's SFTConfig refuses it ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    check_scheduler(cfg.train)  # the launcher was checked as the config loaded (rsft.learning.training.launchers)


def _culprit(cfg: Any, tmp: Path) -> str:
    """The train.extra key that makes SFTConfig fail on its own, else 'train'."""
    from rsft.learning.training.sft import sft_config

    for key, value in cfg.train.extra.items():
        try:
            sft_config(cfg.train.model_copy(update={"extra": {key: value}}), tmp / "one", cfg.seed)
        except (TypeError, ValueError, ImportError):
            return f"train.extra.{key}"
    return "train"


def check_scheduler(train: Any) -> None:
    """Build the learning-rate schedule on a one-parameter optimizer, as the Trainer will: a scheduler that
    needs settings (cosine_with_min_lr needs min_lr in train.extra.lr_scheduler_kwargs) fails here."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train.learning_rate)
    try:
        get_scheduler(train.lr_scheduler, optimizer, num_warmup_steps=int(train.warmup_ratio * 100),
                      num_training_steps=100, scheduler_specific_kwargs=train.extra.get("lr_scheduler_kwargs"))
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"key 'train.lr_scheduler': {train.lr_scheduler!r} cannot be built with these settings "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); its options go in "
                          "train.extra.lr_scheduler_kwargs") from None


def model_parts(run: Run) -> tuple[Any, Any]:
    """The tokenizer and model config the next round starts from (the base once it is built), no weights."""
    m = run.cfg.model
    if m.path == "tiny" and not is_done(run.dir, "base"):
        from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_alphabet, tiny_config

        tokenizer = char_tokenizer(tiny_alphabet(run.task), run.task.chat_template)
        return tokenizer, tiny_config(tokenizer, m.tiny)
    built = is_done(run.dir, "base") and Path(run.base_model).is_dir()
    path, what = (run.base_model, "base model") if built else (run.model_path, "model.path")
    if m.tokenizer is not None and not built:
        check_model_path(m.tokenizer, "model.tokenizer", need_config=False)
    check_safetensors(Path(path))
    config = read_config(path, what, m.trust_remote_code)
    tok_path, tok_key = (m.tokenizer, "model.tokenizer") if m.tokenizer and not built else (path, what)
    return load_tokenizer(tok_path, what=tok_key, trust_remote_code=m.trust_remote_code), config


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
    """No prompt, plus the most new tokens sampled or evaluated, is longer than the model's context."""
    new = max(run.cfg.sampling.max_new_tokens, run.cfg.eval.max_new_tokens or 0)
    limit = context_length(model_config)
    for which, prompts in (("train", run.task.train), ("eval", run.task.eval)):
        check_prompt_lengths_of(prompts, tokenizer, limit, new, f"task.{which}",
                                lambda i, which=which: prompt_source(run.cfg.task, which, i))


def check_lora(run: Run, model_config: Any) -> None:
    """peft finds the target modules in a weightless copy of the model."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rsft.learning.training.sft import peft_config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=run.cfg.model.trust_remote_code)
    try:
        get_peft_model(model, peft_config(run.cfg.train))
    except ValueError as e:
        raise ConfigError(f"key 'train.lora.target_modules': {str(e).splitlines()[0]}") from None
