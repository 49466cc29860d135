"""The sections of the run configuration (`rsft.core.config.RunConfig` puts them together and loads them).

Each section is a pydantic model with help text on every field; validators that
need the registry (selection rules, monitor triggers, the training launcher)
build or check what a config names as it loads, so a typo is a one-line error
naming the key. They are imported from `rsft.core.config`, where every section is
also available.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rsft.core.registry import resolve


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: Any) -> Any:
        """pydantic reads YAML's true/false as 1/0 where a number is asked for (`decontaminate: true` would be
        1-gram decontamination): a yes/no is refused wherever a number is expected."""
        ann = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and {int, float} & set(typing.get_args(ann) or (ann,)):
            hint = "; an n-gram size such as 13, or null" if info.field_name == "decontaminate" else ""
            raise ValueError(f"expected a number, got {str(value).lower()} (a yes/no is not a number here{hint})")
        return value


class TinyModelConfig(Section):
    hidden_size: int = Field(128, description="Hidden size of the from-scratch Llama.", gt=0)
    num_layers: int = Field(4, description="Number of decoder layers.", gt=0)
    num_heads: int = Field(4, description="Attention heads (and key/value heads).", gt=0)
    intermediate_size: int | None = Field(None, description="MLP width; default 4 × hidden_size.")
    max_position_embeddings: int = Field(128, description="Longest sequence the model will see.", gt=0)


class ModelConfig(Section):
    path: str = Field(
        "tiny",
        description="HF model directory or hub id loaded with from_pretrained; 'tiny' builds a from-scratch "
        "character-level Llama for the task's alphabet (no download).",
    )
    tokenizer: str | None = Field(None, description="Tokenizer path if it differs from `path`.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained.")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="Shape of the 'tiny' model.")


class TaskConfig(Section):
    name: str = Field(
        "addition",
        description="A built-in task (addition, countdown, ctf: the agent task), 'dataset' for your own prompts from "
        "`train`/`eval`, or 'module:function'.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Options of the built-in task (e.g. digits).")
    train: str | None = Field(
        None, description="Train prompts: a .jsonl or .parquet file, or 'hf:NAME[:CONFIG]' for an HF dataset."
    )
    eval: str | None = Field(None, description="Held-out prompts, same forms as `train`.")
    train_split: str = Field("train", description="Split of an HF dataset used for `train`.")
    eval_split: str = Field("test", description="Split of an HF dataset used for `eval`.")
    prompt_column: str = Field(
        "prompt", description="Column holding the prompt: a string, or a list of chat messages."
    )
    id_column: str | None = Field(None, description="Column with a stable prompt id; default: the row number.")
    system_prompt: str | None = Field(
        None, description="Make chat prompts from a text prompt column, with this system turn (see prompt_template)."
    )
    prompt_template: str | None = Field(
        None, description="Make chat prompts from a text prompt column: the user turn, a format string over the row's "
        "columns, e.g. '{question} End with #### <number>.'; default: the prompt column as it is."
    )
    completion_column: str | None = Field(
        None, description="Column with a gold completion, used only by `warm_start`."
    )
    field_columns: list[str] | None = Field(
        None, description="Columns handed to the scorer as keyword arguments; default: every other column."
    )
    max_train_prompts: int | None = Field(None, description="Use only the first N train prompts.", gt=0)
    max_eval_prompts: int | None = Field(None, description="Use only the first N held-out prompts.", gt=0)


class SamplingConfig(Section):
    engine: str = Field(
        "auto", description="Sampling engine: auto (fastest installed for the device), transformers, ctranslate2, "
        "vllm, openai (an OpenAI-compatible server), fake (unit tests only), or 'module:factory'."
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="The engine's own settings, e.g. {compute_type: int8} for ctranslate2 or "
        "{max_batch_tokens: 32768}."
    )
    n: int = Field(8, description="Samples per prompt (K).", gt=0)
    temperature: float = Field(1.0, description="Sampling temperature; 0 means greedy.", ge=0)
    top_p: float = Field(1.0, description="Nucleus sampling mass.", gt=0, le=1)
    top_k: int = Field(0, description="Keep only the k most likely tokens; 0 disables.", ge=0)
    max_new_tokens: int = Field(64, description="Longest completion, in tokens.", gt=0)
    stop: list[str] = Field(default_factory=list, description="Stop strings; the completion ends before them.")
    batch_size: int = Field(64, description="Prompts per engine batch (each expands to n rows).", gt=0)
    allocation: str = Field(
        "uniform", description="Samples per prompt (rsft.parts.sampling.allocators): uniform (n each), early_stop (waves "
        "until target_accepted, at most n), carry (early_stop giving prompts kept in earlier rounds solved_samples; "
        "needs train.replay: all_rounds), gvm (GVM-RAFT's split of n's token budget), or 'module:Class'."
    )
    allocation_options: dict[str, Any] = Field(
        default_factory=dict, description="A 'module:Class' allocation's own settings (Class(**options)); the "
        "built-ins read the keys below."
    )
    wave: int = Field(4, description="early_stop, carry: samples per prompt per wave.", gt=0)
    target_accepted: int = Field(
        2, description="early_stop, carry: stop a prompt at this many distinct accepted.", gt=0
    )
    give_up_after: int | None = Field(
        None, description="early_stop, carry: also stop a prompt with nothing accepted after this many samples.", gt=0
    )
    solved_samples: int = Field(
        0, description="carry: most samples this round for a prompt kept in an earlier round (replay trains on its "
        "best row again); 0 skips it.", ge=0
    )
    presample: int = Field(4, description="gvm: samples per prompt before allocating the rest (n0).", gt=0)
    token_budget: int | None = Field(
        None, description="gvm: generated tokens for the round; default: what n per prompt would cost.", gt=0
    )
    max_per_prompt: int | None = Field(None, description="gvm: cap per prompt; default 4 × n.", gt=0)
    model: str | None = Field(
        None, description="Teacher: sample from this model (HF directory) instead of the policy being trained; "
        "verified teacher samples are distilled into the student (off-policy). See teacher_rounds."
    )
    teacher_rounds: Literal["first", "all"] = Field(
        "first", description="With sampling.model: the teacher samples round 0 only, or every round."
    )
    accept_min: float | None = Field(
        None, description="Score that counts as accepted (adaptive allocation, acceptance and coverage metrics); "
        "default: the selection's passes(min), or 1."
    )


class RolloutConfig(Section):
    env: str | None = Field(
        None, description="Agent environment for multi-turn trajectories: a built-in (ctf) or 'module:Class', "
        "called as Class(prompt, **env_options); default: the task's own (ctf has one), else single-turn."
    )
    env_options: dict[str, Any] = Field(default_factory=dict, description="The environment's own settings.")
    max_turns: int = Field(6, description="Actions per trajectory.", gt=0)
    max_tokens: int | None = Field(
        None, description="Generated tokens per trajectory; default max_turns × sampling.max_new_tokens.", gt=0
    )
    workers: int = Field(4, description="Environments stepped at once (tool calls run in parallel).", gt=0)


class ScoringConfig(Section):
    timeout: float | None = Field(
        None, description="Seconds a scorer may spend per sample; a sample over it is a scorer error.", gt=0
    )


RAY_ADDRESS = re.compile(r"local|auto|(ray://)?[A-Za-z0-9_.\-]+:[0-9]+")
_RAY_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory", "num_cpus", "num_gpus"}


class RayResources(Section):
    num_cpus: float = Field(1.0, description="CPUs each worker or task reserves.", ge=0)
    num_gpus: float | None = Field(
        None, description="GPUs each reserves (a fraction shares one); default: 1 per sampling worker when the "
        "cluster has GPUs (one engine per GPU), 0 per scoring task.", ge=0)
    memory: int | None = Field(None, description="Bytes of memory each reserves (Ray's logical memory).", gt=0)
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each reserves, e.g. {sampler_node: 1}.")

    @field_validator("custom")
    @classmethod
    def _custom_is_custom(cls, value: dict[str, float]) -> dict[str, float]:
        """CPUs, GPUs and memory have their own keys: under `custom` they would be a resource no node has."""
        for name, amount in value.items():
            if name in _RAY_BUILTIN_RESOURCES:
                raise ValueError(f"{name!r} is not a custom resource; use num_cpus, num_gpus or memory")
            if amount < 0:
                raise ValueError(f"{name}: {amount} is negative")
        return value


class RayConfig(Section):
    enabled: bool = Field(
        True, description="Run sampling and scoring on Ray; false keeps these settings and runs in this process "
        "(`rsft run --ray` sets it true).")
    address: str = Field(
        "local", description="local (start a Ray cluster on this machine), auto (the cluster this machine is part "
        "of), ray://HOST:PORT (Ray Client) or HOST:PORT (a head node's GCS).")
    num_workers: int = Field(
        1, description="Sampling actors, each holding one engine: on a GPU cluster one per GPU (or per "
        "tensor-parallel group).", ge=1)
    resources_per_worker: RayResources = Field(
        default_factory=RayResources, description="What each sampling actor reserves.")
    score_workers: int | None = Field(None, description="Scoring tasks at once; default num_workers.", ge=1)
    score_resources: RayResources = Field(
        default_factory=RayResources, description="What each scoring task reserves (a reward model on GPU: "
        "{num_gpus: 1}).")
    max_retries: int = Field(
        2, description="Times a batch is sent again after its actor or task died; a batch that loses more "
        "workers than this stops the stage.", ge=0)
    max_restarts: int = Field(
        3, description="Replacement actors per sampling worker; after that the others carry on without it.", ge=0)
    start_timeout: float = Field(
        900, description="Seconds for the cluster to place the workers and build their engines.", gt=0)
    connect_timeout: float = Field(10, description="Seconds a cluster's address may take to answer.", gt=0)
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env for the workers, e.g. {working_dir: ., pip: [...]}: "
        "on a remote cluster rsft and your module:function code must import there.")

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: str) -> str:
        if not RAY_ADDRESS.fullmatch(value):
            raise ValueError(f"{value!r} is not local, auto, ray://HOST:PORT or HOST:PORT")
        return value


class LoraConfig(Section):
    r: int = Field(16, description="LoRA rank.", gt=0)
    alpha: int = Field(32, description="LoRA alpha.", gt=0)
    dropout: float = Field(0.0, description="LoRA dropout.", ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt.")


class TrainConfig(Section):
    init: Literal["previous", "base"] = Field(
        "previous", description="Start each round from the previous round's model, or from the base (ReST-EM)."
    )
    replay: Literal["none", "all_rounds"] = Field(
        "none", description="Also train on the best sample per prompt from every earlier round (Llama 2)."
    )
    epochs: float = Field(
        1.0, description="Passes over the round's training rows; the steps they give are bounded by min_steps and "
        "step_cap (ignored when max_steps > 0).", gt=0)
    min_steps: int = Field(
        0, description="Floor on the optimizer steps `epochs` gives, so a round with few rows still learns "
        "(ignored when max_steps > 0).", ge=0)
    step_cap: int = Field(
        0, description="Cap on the optimizer steps `epochs` gives, so a round with many rows stays bounded "
        "(0: no cap; ignored when max_steps > 0).", ge=0)
    max_steps: int = Field(
        -1, description="Exactly this many optimizer steps per round, whatever the rows (TRL's max_steps); "
        "-1 uses `epochs`.")
    batch_size: int = Field(16, description="Per-device train batch size.", gt=0)
    grad_accum: int = Field(1, description="Gradient accumulation steps.", gt=0)
    learning_rate: float = Field(1e-5, description="Peak learning rate.", gt=0)
    lr_scheduler: str = Field("constant", description="transformers scheduler name.")
    warmup_ratio: float = Field(
        0.0, description="Fraction of the round's steps spent warming up (needs a scheduler with warmup).", ge=0, lt=1)
    weight_decay: float = Field(0.0, description="AdamW weight decay.", ge=0)
    max_length: int = Field(1024, description="Truncate prompt+completion to this many tokens.", gt=0)
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto", description="Autocast while training. auto: bf16 on a GPU that has it, and on a CPU with native bf16 "
        "instructions (AVX512_BF16, AMX) for a model at least 512 wide; else none (fp32). Emulated bf16 is "
        "several times slower, and on narrower models the casts cost more than they save.")
    group_by_length: bool = Field(
        True, description="Draw batches of similar length, in an order rsft works out from the seed (resume-exact), "
        "so rows of mixed lengths are not padded to the longest; false draws them uniformly at random.")
    save_steps: int = Field(200, description="Checkpoint every N steps so a killed round resumes.", gt=0)
    lora: LoraConfig | None = Field(None, description="Train a LoRA adapter with peft instead of all weights.")
    save_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the trained model is saved in. auto: the init checkpoint's own (a bfloat16 "
        "checkpoint trained in float32 on a CPU is saved back in bfloat16; updates smaller than bfloat16's "
        "resolution, ~0.4% of a weight, round away then: set float32 to keep them).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for TRL's SFTConfig (deepspeed, fsdp, "
        "fsdp_config, ... pass through).")
    processes: int = Field(
        1, description="Training processes (DDP: gloo on CPU, NCCL on GPU); the global batch is batch_size × "
        "grad_accum × processes. 1 trains in the rsft process itself.", ge=1)
    launcher: str = Field(
        "torchrun", description="What starts processes > 1: torchrun, accelerate, or 'module:function' "
        "returning the command line for (processes, module, args).")

    @field_validator("launcher")
    @classmethod
    def _known_launcher(cls, value: str, info: Any) -> str:
        """The launcher's one check, through the registry as the config loads: the name resolves and, with
        processes > 1, the command it builds runs a program that exists (a typo or a missing program is
        one line naming the key)."""
        resolve("launcher", value, key="train.launcher", processes=info.data.get("processes", 1))
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> TrainConfig:
        """min_steps and step_cap bound the steps `epochs` gives; like `epochs`, they do not apply when
        max_steps fixes the steps (as in transformers, where max_steps overrides num_train_epochs)."""
        if self.step_cap and self.min_steps > self.step_cap:
            raise ValueError(f"min_steps {self.min_steps} is above step_cap {self.step_cap}")
        return self

    @field_validator("warmup_ratio")
    @classmethod
    def _warmup_needs_a_schedule(cls, value: float, info: Any) -> float:
        """transformers' `constant` schedule has no warmup phase: the two together would silently not warm up."""
        if value > 0 and info.data.get("lr_scheduler") == "constant":
            raise ValueError(f"{value} never warms up under lr_scheduler 'constant'; use lr_scheduler: "
                             "constant_with_warmup (or linear, cosine)")
        return value


class EvalConfig(Section):
    enabled: bool = Field(True, description="Evaluate on the held-out prompts after each round.")
    scorer: Any = Field(
        None, description="Judge for held-out metrics, same forms as `scorer`; default: the run's scorer. Set it to "
        "a verifier when the rounds are scored by a reward model, to see whether the two diverge."
    )
    n: int = Field(8, description="Sampled completions per held-out prompt for pass@k and maj@k.", ge=0)
    k: list[int] = Field(default_factory=lambda: [1, 8], description="k values for pass@k and maj@k (k <= n).")
    temperature: float = Field(1.0, description="Temperature of the sampled evaluation.", gt=0)

    @model_validator(mode="after")
    def _k_within_n(self) -> EvalConfig:
        """An explicit k beyond n is an error; the default k = [1, 8] follows a smaller n (k = [1, n])."""
        if self.n <= 0:
            return self
        if "k" in self.model_fields_set:
            if any(x < 1 or x > self.n for x in self.k):
                raise ValueError(f"every eval.k must be between 1 and eval.n = {self.n}")
        elif any(x > self.n for x in self.k):
            object.__setattr__(self, "k", sorted({x for x in self.k if x <= self.n} | {self.n}))
        return self

    pass_threshold: float = Field(1.0, description="A held-out sample passes if its score is at least this.")
    max_new_tokens: int | None = Field(None, description="Default: sampling.max_new_tokens.", gt=0)
    engine: str | None = Field(
        None, description="Engine for evaluation; default: the sampling engine, in the checkpoint's own precision "
        "(CTranslate2 in float32 even when sampling runs int8)."
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of `eval.engine` (only with eval.engine set), e.g. "
        "{compute_type: int8} to evaluate the quantized model on purpose."
    )

    @field_validator("engine_options")
    @classmethod
    def _options_need_an_engine(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        if value and info.data.get("engine") is None:
            raise ValueError("eval.engine_options apply to eval.engine, which is not set (set both, e.g. "
                             "eval.engine: ctranslate2)")
        return value


def _default_triggers() -> list[Any]:
    return [{"trigger": "entropy_collapse"}, {"trigger": "stalled_gain"}, {"trigger": "uniform_groups"}]


class MonitorConfig(Section):
    action: Literal["warn", "stop", "graduate", "revert"] = Field(
        "warn", description="What a trigger that names no action does: warn (one line), stop the run, graduate "
        "(write RUN/graduate/ for GRPO and stop), or revert (the next round starts from the best round's model)."
    )
    triggers: list[Any] = Field(
        default_factory=_default_triggers, validate_default=True,
        description="Triggers checked after every round: {trigger: NAME, action?, option: value}, NAME a built-in "
        "(entropy_collapse, stalled_gain, uniform_groups, reward_hacking) or 'module:function'; [] turns it off.",
    )
    judge_samples: bool | None = Field(
        None, description="Score every round sample with eval.scorer too (parts.judge), for the reward-hacking "
        "metrics; default: when a reward_hacking trigger is set and eval.scorer differs from scorer."
    )
    grpo: dict[str, Any] = Field(
        default_factory=dict, description="GRPOConfig settings for `rsft graduate` (learning_rate, max_steps, "
        "beta, ...), over rsft's defaults."
    )

    @field_validator("triggers", mode="after")
    @classmethod
    def _build_triggers(cls, triggers: list[Any]) -> list[Any]:
        return [resolve("monitor", item, key=f"monitor.triggers.{i}") for i, item in enumerate(triggers)]


class WarmStartConfig(Section):
    enabled: bool = Field(False, description="SFT the base on gold completions before round 0.")
    examples: int = Field(700, description="Gold examples to train on.", gt=0)
    max_steps: int = Field(2000, description="Upper bound on warm-start steps.", gt=0)
    target_pass1: float = Field(
        0.1, description="Stop once held-out greedy pass@1 reaches this (a low, non-zero start).", ge=0, le=1
    )
    check_every: int = Field(50, description="Evaluate greedy pass@1 every N steps.", gt=0)
    batch_size: int = Field(64, description="Batch size.", gt=0)
    learning_rate: float = Field(1e-3, description="Learning rate.", gt=0)
    eval_prompts: int = Field(
        200, description="Dev prompts for the stopping check: gold prompts it does not train on, then train "
        "prompts (never the held-out eval prompts).", gt=0)
