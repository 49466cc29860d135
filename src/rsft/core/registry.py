"""The one registry: every extension kind is resolved here, from one name → factory table.

Kinds: ``engine``, ``scorer``, ``task``, ``rule``, ``monitor`` (triggers), ``env`` (agent environments),
``launcher`` (what starts N training processes), ``allocation`` (how many samples each prompt gets),
``executor`` (where a stage's batches run: this process or Ray), ``tracker`` (experiment trackers). For each kind a name means either a built-in listed in `BUILTINS`,
or a user's ``"package.module:function"``. `resolve(kind, spec, ...)` turns a
config spec into the built object by handing it to the kind's builder (listed
in `BUILDERS`), which lives beside the kind's implementations and calls
`lookup` for the name and `check_options` for the options.

The tables hold import strings, not objects: nothing here imports an engine, a
scorer or a task, so heavy or optional dependencies (CTranslate2, math-verify,
a reward model) load only when chosen, and this module sits at the bottom of
the import graph. There is no decorator-based registration and no subclass
discovery: what a name means is written down here, or in the module the user
names.

Options are checked against the factory's own signature (`check_options`):
an unknown option or a value of the wrong type is a one-line `ConfigError`
naming the key, before anything runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from rsft.core.errors import ConfigError

BUILTINS: dict[str, dict[str, str]] = {
    "engine": {
        "transformers": "rsft.parts.sampling.transformers_engine:FACTORY",
        "ctranslate2": "rsft.parts.sampling.ctranslate2_engine:FACTORY",
        "vllm": "rsft.parts.sampling.vllm_engine:FACTORY",
        "openai": "rsft.parts.sampling.openai_engine:FACTORY",
        "fake": "rsft.parts.sampling.fake:fake_engine",
    },
    "scorer": {
        "addition": "rsft.inputs.tasks.addition:scorer",
        "countdown": "rsft.inputs.tasks.countdown:countdown_scorer",
        "numeric": "rsft.parts.scoring.verifiers:numeric",
        "math": "rsft.parts.scoring.verifiers:math_equiv",
        "match": "rsft.parts.scoring.verifiers:match",
        "regex": "rsft.parts.scoring.verifiers:regex",
        "flag": "rsft.parts.scoring.verifiers:flag",
        "json": "rsft.parts.scoring.verifiers:json_schema",
        "reward_model": "rsft.parts.scoring.reward_model:reward_model",
        "prm": "rsft.parts.scoring.prm:prm",
        "code": "rsft.parts.scoring.code:code_scorer",
        "judge": "rsft.parts.scoring.judge:judge",
    },
    "task": {
        "addition": "rsft.inputs.tasks.addition:make_task",
        "countdown": "rsft.inputs.tasks.countdown:make_task",
        "dataset": "rsft.inputs.tasks.dataset:dataset_task",
        "ctf": "rsft.inputs.tasks.ctf:make_task",
        "reasoning_gym": "rsft.inputs.tasks.reasoning_gym:make_task",
        "humaneval": "rsft.inputs.tasks.humaneval:make_task",
    },
    "env": {
        "ctf": "rsft.inputs.tasks.ctf:CtfEnv",
    },
    "rule": {
        "passes": "rsft.parts.selection:PassesRule",
        "dedup": "rsft.parts.selection:DedupRule",
        "cap": "rsft.parts.selection:CapRule",
        "top_k": "rsft.parts.selection:TopKRule",
        "drop_uniform": "rsft.parts.selection:DropUniformRule",
        "drop_truncated": "rsft.parts.selection:DropTruncatedRule",
        "pass_rate": "rsft.parts.selection:PassRateRule",
        "diverse": "rsft.parts.selection:DiverseRule",
    },
    "monitor": {
        "entropy_collapse": "rsft.learning.monitoring.triggers:EntropyCollapse",
        "stalled_gain": "rsft.learning.monitoring.triggers:StalledGain",
        "uniform_groups": "rsft.learning.monitoring.triggers:UniformGroups",
        "reward_hacking": "rsft.learning.monitoring.triggers:RewardHacking",
    },
    "launcher": {
        "torchrun": "rsft.learning.training.launchers:torchrun",
        "accelerate": "rsft.learning.training.launchers:accelerate",
    },
    "allocation": {
        "uniform": "rsft.parts.sampling.allocators:Uniform",
        "early_stop": "rsft.parts.sampling.allocators:EarlyStop",
        "carry": "rsft.parts.sampling.allocators:Carry",
        "gvm": "rsft.parts.sampling.allocators:Gvm",
    },
    "executor": {
        "local": "rsft.stages.executors:LocalExecutor",
        "ray": "rsft.stages.executors:RayExecutor",
    },
    "tracker": {
        "tensorboard": "rsft.learning.monitoring.trackers:TensorBoard",
        "wandb": "rsft.learning.monitoring.trackers:Wandb",
        "trackio": "rsft.learning.monitoring.trackers:Trackio",
        "mlflow": "rsft.learning.monitoring.trackers:Mlflow",
    },
}

# the kinds whose user form is a class (the others take a factory function)
CLASS_KINDS = frozenset({"rule", "monitor", "env", "allocation", "executor", "tracker"})

# what turns a config spec of each kind into the built object
BUILDERS: dict[str, str] = {
    "engine": "rsft.parts.sampling.engines:build_engine",
    "scorer": "rsft.parts.scoring.spec:build_scorer",
    "task": "rsft.inputs.tasks.base:build_task",
    "rule": "rsft.parts.selection:build_rule",
    "monitor": "rsft.learning.monitoring.triggers:build_trigger",
    "env": "rsft.parts.sampling.rollout:build_env",
    "launcher": "rsft.learning.training.launchers:build_launcher",
    "allocation": "rsft.parts.sampling.allocators:build_allocation",
    "executor": "rsft.stages.executors:build_executor",
    "tracker": "rsft.learning.monitoring.trackers:build_tracker",
}


def import_object(spec: str, key: str) -> Any:
    """Import ``module:attr`` (attr may be dotted); the working directory is importable, as for a user's script."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in [*module_name.split("."), *attr.split(".")]):
        raise ConfigError(f"key '{key}': {spec!r} is not of the form 'module:function'")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name) and not module_name.startswith("rsft."):
            raise ConfigError(f"key '{key}': cannot import module {module_name!r} (no module named {e.name!r})") from None
        raise ConfigError(f"key '{key}': {module_name!r} needs a package that is not installed: {e.name} "
                          "(see the README's extras)") from None
    except SyntaxError as e:
        raise ConfigError(f"key '{key}': {e.filename}:{e.lineno}: syntax error in module {module_name!r} "
                          f"({e.msg})") from None
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises at import
        raise ConfigError(f"key '{key}': importing {module_name!r} failed: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"key '{key}': module {module_name!r} has no attribute {attr!r}") from None
    return obj


def lookup(kind: str, name: Any, key: str) -> Any:
    """The factory (or class) a name means for one kind: a built-in, or a user's 'module:function'."""
    table = BUILTINS[kind]
    if isinstance(name, str) and name in table:
        return import_object(table[name], key)
    if isinstance(name, str) and ":" in name:
        return import_object(name, key)
    names = sorted(table) + (["auto"] if kind == "engine" else [])
    form = "'module:Class'" if kind in CLASS_KINDS else "'module:function'"
    raise ConfigError(f"key '{key}': unknown {kind} {name!r}, expected one of {names} or {form}")


def resolve(kind: str, spec: Any, **context: Any) -> Any:
    """The built object of one kind from its config spec; `context` goes to the kind's builder."""
    return import_object(BUILDERS[kind], f"registry.{kind}")(spec, **context)


def parameters(fn: Any, skip: int = 0) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a callable after its first `skip` (the ones a config may set)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    return {p.name: p for p in params[skip:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def accepts_any(fn: Any) -> bool:
    """True when the callable takes ``**kwargs``: then any option name is allowed."""
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True


def _hints(fn: Any) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is simply unchecked
        return {}


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_options(fn: Any, options: dict[str, Any], key: str, skip: int = 0, what: str = "",
                  given: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate `options` against `fn`'s keyword parameters (after `skip`, minus the `given` ones rsft
    passes itself); returns them coerced to the annotated types. An unknown option, a wrong type or a
    missing required option is a one-line ConfigError naming ``key.option``."""
    params = {k: p for k, p in parameters(fn, skip).items() if k not in given}
    owner = what or getattr(fn, "__qualname__", getattr(fn, "__name__", "this factory"))
    if not accepts_any(fn):
        for name in options:
            if name not in params:
                expected = ", ".join(sorted(params)) or "none"
                raise ConfigError(f"key '{key}.{name}': unexpected keyword argument {name!r}, not an option of "
                                  f"{owner}; expected one of: {expected}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in options]
    if missing:
        raise ConfigError(f"key '{key}': {owner} needs option {missing[0]!r}")
    hints = _hints(fn)
    fields = {k: (hints.get(k, Any), ... if p.default is inspect.Parameter.empty else p.default)
              for k, p in params.items() if k in options}
    # strict: "3", 3.0 or true are not an int, as a typo in YAML should not pass unnoticed
    model = create_model("Options", __config__=ConfigDict(arbitrary_types_allowed=True, strict=True),  # type: ignore[call-overload]
                         **fields)
    try:
        checked = model.model_validate({k: v for k, v in options.items() if k in fields})
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        want = _type_name(hints.get(name, Any))
        raise ConfigError(f"key '{key}.{name}': expected {want}, got {err.get('input')!r}") from None
    return {**options, **{k: getattr(checked, k) for k in fields}}


def validate_model(model: Any, spec: dict[str, Any], key: str, what: str) -> Any:
    """`model.model_validate(spec)` (a rule's or trigger's own pydantic class), a mistake as a one-line
    `ConfigError` naming the key: an unknown option, or a value of the wrong type."""
    try:
        return model.model_validate(spec)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"key '{key}.{where}': not an option of {what}") from None
        raise ConfigError(f"key '{key}.{where}': {err['msg'].lower()}, got {err.get('input')!r}") from None
