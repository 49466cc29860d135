"""The run configuration: nested pydantic models with help text on every field.

The sections live in `rsft.core.config_sections`; this module puts them together
(`RunConfig`) and loads them: from YAML, with ``a.b=c`` overrides from the command
line, validated before anything runs. An unknown key or a wrong type is a one-line
`ConfigError` naming the dotted key. Selection rules, the allocation strategy, the
trackers and a named executor are built through the registry as the config loads
(cheap: none of them loads a model or imports torch), so a typo in their names or
options is reported here. The other named extensions (task, scorer, engine) are
checked when a run opens (preflight), since building them reads files and imports code.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from rsft.core.config_sections import (  # noqa: F401 - every section is importable from rsft.core.config too
    RAY_ADDRESS,
    EvalConfig,
    LoraConfig,
    ModelConfig,
    MonitorConfig,
    RayConfig,
    RayResources,
    RolloutConfig,
    SamplingConfig,
    ScoringConfig,
    Section,
    TaskConfig,
    TinyModelConfig,
    TrainConfig,
    WarmStartConfig,
)
from rsft.core.config_selection import RationalizeConfig, SelectionConfig  # noqa: F401
from rsft.core.errors import ConfigError
from rsft.core.registry import resolve


class RunConfig(Section):
    # what the user wrote (file and overrides), before defaults: a resumed run keeps its own values for the rest
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    name: str = Field("run", description="Run name; the run directory is output_dir/name.")
    output_dir: str = Field("runs", description="Parent directory of run directories.")
    seed: int = Field(0, description="Root seed; per-sample seeds derive from (seed, round, prompt id, index).")
    rounds: int = Field(3, description="Rejection-sampling rounds.", ge=0)
    model: ModelConfig = Field(default_factory=ModelConfig, description="The policy.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Where prompts come from.")
    scorer: Any = Field(
        None, description="Scorer: a name, 'module:function', {name, kwargs}, or a combination "
        "{combine: sum|max|min|gate, ...}; default: the task's own."
    )
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="How scorers are run.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How samples are drawn.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Multi-turn agent trajectories.")
    ray: RayConfig | None = Field(
        None, description="Sample and score on a Ray cluster (pip install 'rsft[ray]'); the files are the same as "
        "without it. null: in this process.")
    executor: str | None = Field(
        None, description="Where the sample and score stages' batches run (rsft.stages.executors): local, ray, or "
        "'module:Class'; default: ray when the ray section is enabled, else local.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Which samples are kept.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning on the kept samples.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Held-out evaluation.")
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig, description="Optional gold SFT first.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Triggers checked after each round.")
    report: bool = Field(True, description="Write RUN/report.html after every round (needs matplotlib: rsft[report]).")
    report_to: list[str] = Field(
        default_factory=list, description="Experiment trackers for round metrics and the SFT loss curve: "
        "tensorboard, wandb, trackio, mlflow, or 'module:Class' (round metrics only)."
    )

    @model_validator(mode="after")
    def _allocation_fits(self) -> RunConfig:
        """The allocation strategy is built (a name or 'module:Class' that does not resolve fails here) and
        checks what it needs of the rest (carry: train.replay: all_rounds). The registry imports it by name."""
        resolve("allocation", self.sampling.allocation, sampling=self.sampling).check(self)
        for i, name in enumerate(self.report_to):
            resolve("tracker", name, key=f"report_to.{i}")  # a name or 'module:Class' that does not build fails here
        if self.executor is not None:
            resolve("executor", self.executor)  # a name or 'module:Class' that does not build fails here
        if self.executor == "ray" and not self.uses_ray:
            raise ConfigError("key 'executor': ray needs an enabled ray section (ray: {address: ...})")
        return self

    @model_validator(mode="after")
    def _reward_hacking_needs_a_judge(self) -> RunConfig:
        """reward_hacking compares the rounds' scorer with a second one, eval.scorer: without it there is no
        judge whose verdict could part ways with the selection score, and the trigger would sit there unused."""
        for i, t in enumerate(self.monitor.triggers):
            if t.trigger == "reward_hacking" and self.eval.scorer is None:
                raise ValueError(f"monitor.triggers.{i}: reward_hacking compares the selection score with a judge, "
                                 "and eval.scorer is not set, so it can never fire; set eval.scorer to a verifier "
                                 "(a scorer other than `scorer`), or drop the trigger")
        return self

    @model_validator(mode="after")
    def _teacher_rounds_need_a_teacher(self) -> RunConfig:
        """teacher_rounds says which rounds the teacher samples; with no teacher it would silently do nothing.
        (A written-out config.yaml holds both keys, with model: null: that is not a user's setting.)"""
        s = self.sampling
        given = "teacher_rounds" in s.model_fields_set and "model" not in s.model_fields_set
        if s.model is None and (s.teacher_rounds == "all" or given):
            raise ValueError(f"sampling.teacher_rounds: {s.teacher_rounds!r} is set, but there is no teacher to "
                             "sample from; set sampling.model to the teacher model, or drop teacher_rounds")
        return self

    @model_validator(mode="after")
    def _warm_start_checks_before_it_ends(self) -> RunConfig:
        """The warm start checks its target every check_every steps: past max_steps it never checks, and runs
        to max_steps whatever the model has learnt."""
        ws = self.warm_start
        if ws.enabled and ws.check_every > ws.max_steps:
            raise ValueError(f"warm_start.check_every: {ws.check_every} is more than warm_start.max_steps "
                             f"({ws.max_steps}), so target_pass1 would never be checked; set check_every to at "
                             "most max_steps")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def judge_samples(self) -> bool:
        """Whether round samples are also scored by eval.scorer (see monitor.judge_samples)."""
        if self.monitor.judge_samples is not None:
            return self.monitor.judge_samples and self.eval.scorer is not None
        return self.eval.scorer is not None and self.eval.scorer != self.scorer and any(
            t.trigger == "reward_hacking" for t in self.monitor.triggers)

    @property
    def uses_ray(self) -> bool:
        """Whether sampling and scoring run on Ray (a `ray` section, not switched off)."""
        return self.ray is not None and self.ray.enabled

    @property
    def executor_name(self) -> str:
        """The executor the stages use: `executor` as given, else ray with an enabled ray section, else local."""
        return self.executor or ("ray" if self.uses_ray else "local")

    @property
    def accept_min(self) -> float:
        """The one threshold of "accepted": sampling.accept_min, else the passes rule's min, else 1."""
        if self.sampling.accept_min is not None:
            return self.sampling.accept_min
        passes = self.selection.passes_min
        return 1.0 if passes is None else passes


_NAMED = re.compile(r"([a-z_]+(?:\.[a-z_0-9]+)+): (.*)", re.S)


def _error_loc(e: dict[str, Any]) -> tuple[str, str]:
    """(the dotted key, the message) of one pydantic error; a section's own check may name a key inside
    the section at the start of its message ("sampling.teacher_rounds: ..."), which is then the key."""
    loc = ".".join(str(p) for p in e["loc"])
    text = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]
    named = _NAMED.match(text) if e["type"] == "value_error" else None
    if named and named.group(1).startswith(f"{loc}." if loc else ""):
        return named.group(1), named.group(2)
    return loc, text


def _format_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc, text = _error_loc(e)
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{loc}'"
    elif kind == "value_error":
        msg = f"key '{loc}': {text}"
    elif kind == "missing":
        msg = f"missing required key '{loc}'"
    else:
        msg = f"key '{loc}': {text.lower()}, got {e.get('input')!r}"
    return f"{source}: {msg}"


def parse_value(text: str) -> Any:
    """A command-line override value, read as YAML (so 3 is an int, [1,2] a list, 'x' a string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key=value, e.g. train.learning_rate=1e-4")
    key, _, raw = override.partition("=")
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(f"override {override!r}: the key before '=' is empty or has an empty part; "
                          "expected key=value, e.g. train.learning_rate=1e-4")
    node = data
    for p in parts[:-1]:
        if node.get(p) is None:  # an absent or null section (`ray: null`) is opened by a key inside it
            node[p] = {}
        nxt = node[p]
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {override!r}: '{p}' is not a section")
        node = nxt
    node[parts[-1]] = parse_value(raw)


def build_config(data: dict[str, Any], overrides: list[str] = (), source: str = "config") -> RunConfig:
    """Validate `data` with `overrides` applied; an error names the override when an override caused it."""
    data = copy.deepcopy(dict(data or {}))
    for o in overrides:
        apply_override(data, o)
    try:
        cfg = RunConfig.model_validate(data)
        cfg._given = data
        return cfg
    except ValidationError as e:
        raise ConfigError(_format_error(e, _source_of(e, source, overrides))) from None
    except ConfigError as e:  # from a validator that resolves names through the registry
        raise ConfigError(f"{source}: {e}") from None


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` written on top, section by section (a list or value in `over` replaces base's)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _source_of(err: ValidationError, source: str, overrides: list[str]) -> str:
    """The override that set the failing key, else the config's source."""
    loc = [p for p in _error_loc(err.errors()[0])[0].split(".") if p]
    for o in reversed(list(overrides)):
        key = o.partition("=")[0].strip().split(".")
        if loc[: len(key)] == key or key[: len(loc)] == loc:
            return f"override {o!r}"
    return source


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (or start from defaults when path is None) and apply overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            line = p.read_bytes()[: e.start].count(b"\n") + 1
            raise ConfigError(f"{p}:{line}: not UTF-8 text") from None
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{p}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of config keys at the top level")
    return build_config(data, overrides, source)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
