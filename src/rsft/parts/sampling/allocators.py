"""Allocation strategies: the objects the sample, score and select stages ask about a round's samples.

An allocation decides how many samples each prompt gets (`rsft.parts.sampling.allocation`
holds the algorithms). The stages do not branch on its name; they ask it:

- `passes`: the resumable passes over the train prompts, in order (``"draw"``
  writes samples.jsonl; GVM first runs ``"presample"`` into presample.jsonl);
- `lines(ctx, pass_name)`: what one pass draws for a batch of prompts;
- `after(ctx, pass_name)`: what it records once a pass is whole (GVM's plan,
  carry's count, both in allocation.json);
- `scores_while_sampling`: its samples come back scored, so the score stage
  keeps those scores, and a scorer that failed on everything means the samples
  themselves must be drawn again;
- `may_keep_none`: a round may keep no new sample and still train (carry: every
  prompt was solved before and replay trains on its row);
- `check(cfg)`: what it needs of the rest of the config, at load.

A user's strategy is ``sampling.allocation: "package.module:Class"``, built as
``Class(**sampling.allocation_options)`` (options checked against its signature);
the built-ins read their settings from the flat ``sampling`` keys they always had.
What ``sampling.n`` means is each strategy's own (`n_means`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rsft.core.errors import ConfigError
from rsft.core.records import Group, Prompt
from rsft.core.registry import check_options, lookup
from rsft.core.rundir.files import atomic_write_json, iter_groups, read_groups
from rsft.core.rundir.layout import RoundDir
from rsft.parts.sampling import allocation
from rsft.parts.sampling.base import Engine, SamplingParams

if TYPE_CHECKING:
    from rsft.core.config import RunConfig, SamplingConfig

Drawer = Callable[[list[Prompt]], list[Group]]  # a batch of prompts -> their groups, in order


@dataclass(frozen=True)
class DrawContext:
    """What a strategy may use to draw one round: built by the sample stage, in the driver or a Ray worker.

    `engine` is a callable so that a pass that needs no model (none today) loads none; `earlier` are
    the earlier rounds' directories, whose finished kept.jsonl files are carry's state."""

    engine: Callable[[], Engine]
    scorer: Callable[..., Any]
    params: SamplingParams
    accept_min: float
    timeout: float | None
    round: RoundDir
    earlier: tuple[RoundDir, ...]


class Allocation:
    """The base strategy: `n` samples per prompt in one pass, scored later by the score stage."""

    name: ClassVar[str] = "uniform"
    n_means: ClassVar[str] = "samples per prompt"
    passes: ClassVar[tuple[str, ...]] = ("draw",)
    scores_while_sampling: ClassVar[bool] = False
    may_keep_none: ClassVar[bool] = False

    def __init__(self, n: int) -> None:
        self.n = n

    @classmethod
    def from_config(cls, s: SamplingConfig) -> Allocation:
        return cls(s.n)

    def check(self, cfg: RunConfig) -> None:
        """Raise ValueError naming the config key when the rest of the config cannot work with this strategy."""

    def drawer(self, ctx: DrawContext, pass_name: str) -> Drawer:
        engine = ctx.engine()
        return lambda batch: [Group(p, tuple(g)) for p, g in
                              zip(batch, engine.generate(batch, self.n, ctx.params), strict=True)]

    def lines(self, ctx: DrawContext, pass_name: str) -> Callable[[list[Prompt]], list[dict[str, Any]]]:
        """One pass's JSONL lines for a batch of prompts (what the resumable map writes)."""
        draw = self.drawer(ctx, pass_name)
        return lambda batch: [g.to_json() for g in draw(batch)]

    def after(self, ctx: DrawContext, pass_name: str) -> None:
        """Called once a pass's file is whole; the base records nothing."""


class Uniform(Allocation):
    """n samples per prompt, every prompt alike."""


class EarlyStop(Allocation):
    """Waves of `wave` per prompt until `target_accepted` distinct accepted samples, at most `n` per prompt."""

    name = "early_stop"
    n_means = "most samples per prompt (waves stop earlier)"
    scores_while_sampling = True

    def __init__(self, n: int, wave: int = 4, target_accepted: int = 2, give_up_after: int | None = None) -> None:
        super().__init__(n)
        self.wave, self.target, self.give_up_after = wave, target_accepted, give_up_after

    @classmethod
    def from_config(cls, s: SamplingConfig) -> Allocation:
        return cls(s.n, s.wave, s.target_accepted, s.give_up_after)

    def limits(self, ctx: DrawContext, batch: list[Prompt]) -> dict[str, int] | None:
        """Per-prompt maxima replacing `n` (carry); None: `n` for every prompt."""
        return None

    def drawer(self, ctx: DrawContext, pass_name: str) -> Drawer:
        engine = ctx.engine()
        return lambda batch: allocation.early_stop(engine, ctx.scorer, batch, ctx.params, self.wave, self.n,
                                                   self.target, ctx.accept_min, ctx.timeout, self.give_up_after,
                                                   self.limits(ctx, batch))


class Carry(EarlyStop):
    """early_stop whose per-prompt maximum carries across rounds: a prompt an earlier round kept gets
    `solved_samples` (0 skips it), since replay trains on its row again."""

    name = "carry"
    n_means = "most samples per prompt not kept in an earlier round"
    may_keep_none = True

    def __init__(self, n: int, wave: int = 4, target_accepted: int = 2, give_up_after: int | None = None,
                 solved_samples: int = 0) -> None:
        super().__init__(n, wave, target_accepted, give_up_after)
        self.solved_samples = solved_samples
        self._solved: dict[str, set[str]] = {}

    @classmethod
    def from_config(cls, s: SamplingConfig) -> Allocation:
        return cls(s.n, s.wave, s.target_accepted, s.give_up_after, s.solved_samples)

    def check(self, cfg: RunConfig) -> None:
        if cfg.train.replay != "all_rounds":
            raise ValueError("sampling.allocation: carry skips prompts kept in earlier rounds, so it needs "
                             f"train.replay: all_rounds (got {cfg.train.replay!r})")

    def solved_before(self, ctx: DrawContext) -> set[str]:
        """Ids of the prompts an earlier round kept (finished kept.jsonl files, so a resumed round sees the
        same). One id per solved prompt is held, not their groups."""
        key = str(ctx.round.path)
        if key not in self._solved:
            self._solved[key] = {g.prompt.id for rd in ctx.earlier if rd.kept.exists() for g in iter_groups(rd.kept)}
        return self._solved[key]

    def limits(self, ctx: DrawContext, batch: list[Prompt]) -> dict[str, int] | None:
        return allocation.carry_limits(batch, self.solved_before(ctx), self.n, self.solved_samples)

    def after(self, ctx: DrawContext, pass_name: str) -> None:
        if pass_name == "draw":
            atomic_write_json(ctx.round.allocation, {"solved_before": len(self.solved_before(ctx)),
                                                     "solved_samples": self.solved_samples, "n": self.n})


class Gvm(Allocation):
    """GVM-RAFT: pre-sample `presample` per prompt, then split the rest of a token budget by acceptance."""

    name = "gvm"
    n_means = "the uniform count that sets the default token budget (n × prompts × mean sample length)"
    passes = ("presample", "draw")
    scores_while_sampling = True

    def __init__(self, n: int, presample: int = 4, token_budget: int | None = None,
                 max_per_prompt: int | None = None) -> None:
        super().__init__(n)
        self.presample, self.token_budget = presample, token_budget
        self.max_per_prompt = max_per_prompt or 4 * n

    @classmethod
    def from_config(cls, s: SamplingConfig) -> Allocation:
        return cls(s.n, s.presample, s.token_budget, s.max_per_prompt)

    def plan(self, ctx: DrawContext) -> tuple[allocation.GvmPlan, dict[str, Group]]:
        """The split of the budget, recomputed from presample.jsonl (deterministic), and the presampled groups."""
        pre = read_groups(ctx.round.presample)
        plan = allocation.gvm_plan(pre, ctx.accept_min, self.token_budget, self.n, self.max_per_prompt)
        return plan, {g.prompt.id: g for g in pre}

    def drawer(self, ctx: DrawContext, pass_name: str) -> Drawer:
        engine = ctx.engine()
        if pass_name == "presample":
            return lambda batch: allocation.sample_scored(engine, ctx.scorer, batch, self.presample, ctx.params,
                                                          ctx.timeout)
        plan, presampled = self.plan(ctx)
        return lambda batch: allocation.gvm_extend(engine, ctx.scorer, [presampled[p.id] for p in batch],
                                                   plan.extra, ctx.params, ctx.timeout)

    def after(self, ctx: DrawContext, pass_name: str) -> None:
        if pass_name == "presample":
            plan, _ = self.plan(ctx)
            atomic_write_json(ctx.round.allocation, {
                "budget_tokens": plan.budget_tokens, "presample_tokens": plan.presample_tokens,
                "tokens_per_sample": plan.tokens_per_sample, "extra_samples": sum(plan.extra.values()),
                "extra": plan.extra, "acceptance": plan.acceptance})


def build_allocation(name: str, sampling: SamplingConfig, key: str = "sampling.allocation") -> Allocation:
    """The strategy `sampling.allocation` names: a built-in, or a user's 'module:Class' built from
    `sampling.allocation_options`."""
    cls = lookup("allocation", name, key)
    builtin = isinstance(cls, type) and issubclass(cls, Allocation) and cls.__module__ == __name__
    if builtin:
        if sampling.allocation_options:
            raise ConfigError("key 'sampling.allocation_options': the built-in allocations read the flat "
                              "sampling keys (wave, presample, ...); options are for 'module:Class' ones")
        return cls.from_config(sampling)
    options = check_options(cls, sampling.allocation_options, "sampling.allocation_options", what=name)
    made = cls(**options)
    missing = [a for a in ("passes", "lines", "after", "check", "scores_while_sampling", "may_keep_none")
               if not hasattr(made, a)]
    if missing:
        raise ConfigError(f"key '{key}': {name!r} is not an allocation (no {', '.join(missing)}); subclass "
                          "rsft.parts.sampling.allocators.Allocation")
    return made

