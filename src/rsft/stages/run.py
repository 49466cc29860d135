"""`Run`: what every stage shares. The resolved config, where the run lives, and what both derive.

It holds no state that is not derivable from disk: the task, the scorers and
the engines are built from the config written in the run directory. Engines
are kept between stages (round r's eval and round r+1's sampling use the same
model, so an engine that takes long to load, like vLLM, loads once per round)
and released before training, which needs the memory, unless the engine can
switch to the next round's model without reloading (a LoRA adapter in vLLM).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rsft.core.config import RunConfig, load_config
from rsft.core.registry import resolve
from rsft.core.rundir.layout import RoundDir, RunDir
from rsft.inputs.modeling import resolve_path
from rsft.inputs.tasks.base import Task
from rsft.learning.monitoring.verdict import Verdict
from rsft.parts.sampling.allocators import Allocation, DrawContext
from rsft.parts.sampling.base import Engine, SamplingParams
from rsft.parts.sampling.engines import engine_factory, exact_options


@dataclass
class Run:
    """A run directory and the resolved config written in it."""

    cfg: RunConfig
    dir: Path
    _engines: dict[str, tuple[str, Engine]] = field(default_factory=dict, init=False, repr=False, compare=False)
    lock: Path | None = field(default=None, init=False, repr=False, compare=False)  # rsft.core.runlock, when held

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        layout = RunDir.existing(run_dir)
        return cls(load_config(layout.config), layout.path)

    @property
    def layout(self) -> RunDir:
        """Where each of the run's files lives (`rsft.core.rundir.layout`)."""
        return RunDir(self.dir)

    @cached_property
    def task(self) -> Task:
        return resolve("task", self.cfg.task, seed=self.cfg.seed)

    @cached_property
    def scorer(self) -> Callable[..., Any]:
        return resolve("scorer", self.cfg.scorer, default=self.task.scorer)

    @cached_property
    def eval_scorer(self) -> Callable[..., Any]:
        if self.cfg.eval.scorer is None:
            return self.scorer
        return resolve("scorer", self.cfg.eval.scorer, default=self.task.scorer, key="eval.scorer")

    @cached_property
    def env(self) -> Any:
        """The agent environment factory (`rollout.env`, else the task's), or None for single-turn tasks."""
        return resolve("env", self.cfg.rollout.env, options=self.cfg.rollout.env_options, default=self.task.env)

    def agent(self, engine: Engine, model_path: str) -> Engine:
        """`engine` itself for a single-turn task; for a multi-turn one, the engine that draws trajectories,
        which ends a trajectory whose next turn would not fit `model_path`'s context."""
        if self.env is None:
            return engine
        from rsft.inputs.data.formats import prompt_ids
        from rsft.inputs.modeling import context_length, load_tokenizer, read_config
        from rsft.parts.sampling.rollout import AgentEngine, RolloutLimits

        ro = self.cfg.rollout
        tokenizer = load_tokenizer(self.cfg.model.tokenizer if model_path == self.model_path and self.cfg.model.tokenizer
                                   else model_path, trust_remote_code=self.cfg.model.trust_remote_code)
        limits = RolloutLimits(ro.max_turns, ro.max_tokens, ro.workers, context_length(read_config(model_path, trust_remote_code=self.cfg.model.trust_remote_code)),
                               lambda p: len(prompt_ids(p, tokenizer)))
        return AgentEngine(engine, self.env, limits)

    @cached_property
    def allocation(self) -> Allocation:
        """How many samples each prompt gets (`sampling.allocation`); the stages ask it, never its name."""
        return resolve("allocation", self.cfg.sampling.allocation, sampling=self.cfg.sampling)

    def draw_context(self, r: int) -> DrawContext:
        """What round r's allocation draws with: the sampling model's engine (loaded when first asked), the
        scorer, the round's sampling parameters and directories."""
        return DrawContext(lambda: self.engine(self.sampler(r)), self.scorer, self.sampling_params(r),
                           self.cfg.accept_min, self.cfg.scoring.timeout, self.round(r),
                           tuple(self.round(q) for q in range(r)))

    def sampling_params(self, r: int) -> SamplingParams:
        """What round r samples with; evaluation starts from the same (stop strings, top-p, top-k)."""
        return SamplingParams.from_config(self.cfg.sampling, self.cfg.seed, r)

    def round(self, r: int) -> RoundDir:
        return RoundDir(self.dir, r)

    @cached_property
    def model_path(self) -> str:
        """`model.path` as the loaders read it: a GGUF file is its converted checkpoint (`rsft.inputs.gguf`, cached
        by the file's sha256 and said in one line); 'tiny' stays 'tiny'."""
        path = self.cfg.model.path
        return path if path == "tiny" else resolve_path(path, "model.path")

    @property
    def base_model(self) -> str:
        """The model round 0 samples from: the configured path, or the one rsft built/warm-started."""
        if self.cfg.model.path == "tiny" or self.cfg.warm_start.enabled:
            return str(self.layout.base_model)
        return self.model_path

    def policy(self, r: int) -> str:
        """The model that samples in round r: the previous round's, the base for round 0, or the round the
        previous round's monitor reverted to (its `Verdict`'s revert_to)."""
        if r == 0:
            return self.base_model
        back = Verdict.read(self.round(r - 1).monitor_file).revert_to
        if back is not None:
            return str(self.round(back).model) if back >= 0 else self.base_model
        return str(self.round(r - 1).model)

    def sampler(self, r: int) -> str:
        """The model that draws round r's samples: the teacher (`sampling.model`) for round 0, or every
        round with teacher_rounds: all; else the policy."""
        if self.teacher_samples(r):
            return resolve_path(self.cfg.sampling.model, "sampling.model")
        return self.policy(r)

    def teacher_samples(self, r: int) -> bool:
        """Whether round r's samples come from the teacher, not the policy (its metrics say `sampler`)."""
        s = self.cfg.sampling
        return s.model is not None and (r == 0 or s.teacher_rounds == "all")

    def engine(self, model_path: str, name: str | None = None, options: dict[str, Any] | None = None,
               key: str = "sampling.engine") -> Engine:
        """The sampling engine (or the one named, with its options) loaded on `model_path`, reused when held."""
        m = self.cfg.model
        name = name or self.cfg.sampling.engine
        options = dict(self.cfg.sampling.engine_options if options is None else options)
        if self.cfg.train.lora is not None and engine_factory(name)[1].serves_lora:
            options.setdefault("lora_rank", self.cfg.train.lora.r)  # an engine that can serve the adapters
        held = json.dumps([name, options], sort_keys=True, default=str)  # the cache key, not the config key
        if held in self._engines:
            path, engine = self._engines.pop(held)
            if path == model_path or (hasattr(engine, "switch") and engine.switch(model_path)):
                self._engines[held] = (model_path, engine)
                return self.agent(engine, model_path)
            _close(engine)
        engine = resolve("engine", name, model_path=model_path, tokenizer_path=m.tokenizer if model_path == self.model_path
                         else None, dtype=m.dtype, trust_remote_code=m.trust_remote_code, key=key, **options)
        self._engines[held] = (model_path, engine)
        return self.agent(engine, model_path)

    def release_engines(self, keep_switchable: bool = False) -> None:
        """Close the engines held (all, or those that cannot switch models without reloading)."""
        for key, (_, engine) in list(self._engines.items()):
            if keep_switchable and hasattr(engine, "switch"):
                continue
            del self._engines[key]
            _close(engine)

    def eval_engine(self, model_path: str) -> Engine:
        """`eval.engine` with its options, else the sampling engine in the checkpoint's own precision."""
        e = self.cfg.eval
        if e.engine is not None:
            return self.engine(model_path, e.engine, e.engine_options, key="eval.engine")
        return self.engine(model_path, options=exact_options(self.cfg.sampling.engine, self.cfg.sampling.engine_options))


def _close(engine: Engine) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()
