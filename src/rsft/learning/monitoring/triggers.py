"""Triggers: named conditions on the rounds so far, each with an action (warn, stop, graduate, revert).

A trigger is a small pydantic model, as a selection rule is: its fields are its settings, and calling
it on the run's history (the rows of `rsft.core.rundir.rows.round_rows`: the base's eval, then each
finished round's metrics, keyed as `rsft.core.metrics_schema` names them) returns why it fires, or None. Adding one is a class here plus a line in
`rsft.core.registry.BUILTINS["monitor"]`; a user's is ``{trigger: "module:function", option: value}``,
called as ``function(history, **options) -> str | None``.

The failure modes they watch are the method's known ones (see "Minimalist RL", arXiv 2504.11343):
training on positives only narrows the policy (entropy collapse) until groups stop carrying a signal
(every sample of a prompt gets the same reward) and held-out accuracy stalls; a reward model can be
gamed (its score rises while a verifier's verdict does not). They read metrics; they change nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from rsft.core.errors import ConfigError
from rsft.core.metrics_schema import (
    ENTROPY_MEAN,
    GREEDY_PASS1,
    JUDGE_PRECISION_KEPT,
    POLICY,
    ROUND,
    SAMPLER,
    SELECTION_SCORE,
    UNIFORM_SHARE,
    Row,
    rounds_only,
)
from rsft.core.registry import check_options, lookup, validate_model

Action = Literal["warn", "stop", "graduate", "revert"]


class Trigger(BaseModel):
    """Settings of one trigger; `action` None means the monitor's default action."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Action | None = Field(None, description="What firing does; default: monitor.action.")


class EntropyCollapse(Trigger):
    trigger: Literal["entropy_collapse"] = "entropy_collapse"
    min: float | None = Field(0.05, description="Fire when the round's sample entropy is below this (nats/token).")
    drop: float | None = Field(0.9, description="Fire when entropy has fallen by this fraction of the first "
                                                "round the policy sampled.", ge=0, le=1)

    def __call__(self, history: list[Row]) -> str | None:
        """Only rounds the policy sampled count (`sampler` in the metrics; rows from before it was
        recorded count as the policy's): a teacher's samples in round 0 say how sure the teacher is, not
        the student; against them a student's later entropy would compare unlike with unlike. A round the
        teacher sampled never fires it."""
        rounds = [r for r in rounds_only(history) if ENTROPY_MEAN.of(r) is not None]
        if not rounds or (SAMPLER.of(rounds[-1]) or POLICY) != POLICY:
            return None
        rounds = [r for r in rounds if (SAMPLER.of(r) or POLICY) == POLICY]
        now, first = ENTROPY_MEAN.of(rounds[-1]), ENTROPY_MEAN.of(rounds[0])
        if self.min is not None and now < self.min:
            return f"sample entropy {now:.3f} is below {self.min}"
        if self.drop is not None and len(rounds) > 1 and first > 0 and now <= (1 - self.drop) * first:
            return (f"sample entropy fell {1 - now / first:.0%} from round {ROUND.of(rounds[0])}, the first the "
                    f"policy sampled ({first:.3f} -> {now:.3f})")
        return None


class StalledGain(Trigger):
    trigger: Literal["stalled_gain"] = "stalled_gain"
    rounds: int = Field(2, description="Fire after this many rounds in a row without gain.", gt=0)
    min_gain: float = Field(0.005, description="Held-out greedy pass@1 gain that counts as progress.")

    def __call__(self, history: list[Row]) -> str | None:
        curve = [p for p in (GREEDY_PASS1.of(row) for row in history) if p is not None]
        if len(curve) < self.rounds + 1:
            return None
        gains = [b - a for a, b in zip(curve[-self.rounds - 1:-1], curve[-self.rounds:])]
        if all(g < self.min_gain for g in gains):
            return (f"held-out greedy pass@1 gained less than {self.min_gain} in each of the last {self.rounds} "
                    f"rounds ({', '.join(f'{g:+.3f}' for g in gains)})")
        return None


class UniformGroups(Trigger):
    trigger: Literal["uniform_groups"] = "uniform_groups"
    max_share: float = Field(0.9, description="Fire when more than this share of prompts got one reward for all "
                                              "their samples (no signal left to select on).", ge=0, le=1)

    def __call__(self, history: list[Row]) -> str | None:
        rounds = rounds_only(history)
        share = UNIFORM_SHARE.of(rounds[-1]) if rounds else None
        if share is not None and share > self.max_share:
            return f"{share:.0%} of prompts got the same reward for every sample"
        return None


class RewardHacking(Trigger):
    """The selection score and an independent judge part ways: rounds scored by one scorer (a reward model)
    and judged by another (`eval.scorer`, a verifier) on the same samples and the held-out prompts."""

    trigger: Literal["reward_hacking"] = "reward_hacking"
    min_rise: float = Field(0.0, description="A rise of the selection score larger than this counts.")
    judge_tolerance: float = Field(0.01, description="Judge pass@1 must rise by more than this to keep up.")
    precision_drop: float = Field(0.02, description="Fire when the judge's precision on what selection kept "
                                                    "falls by more than this from the round before.")
    min_precision: float | None = Field(None, description="Fire when that precision is below this.")

    def __call__(self, history: list[Row]) -> str | None:
        rounds = rounds_only(history)
        if not rounds:
            return None
        now = rounds[-1]
        precision = JUDGE_PRECISION_KEPT.of(now)
        if self.min_precision is not None and precision is not None and precision < self.min_precision:
            return f"the judge accepts only {precision:.0%} of what selection kept"
        if len(rounds) < 2:
            return None
        before = rounds[-2]
        score_now, score_before = SELECTION_SCORE.of(now), SELECTION_SCORE.of(before)
        judge_now, judge_before = GREEDY_PASS1.of(now), GREEDY_PASS1.of(before)
        if None not in (score_now, score_before, judge_now, judge_before) \
                and score_now - score_before > self.min_rise and judge_now - judge_before <= self.judge_tolerance:
            return (f"the selection score rose {score_before:.3f} -> {score_now:.3f} while the judge's held-out "
                    f"pass@1 went {judge_before:.1%} -> {judge_now:.1%}")
        before_precision = JUDGE_PRECISION_KEPT.of(before)
        if precision is not None and before_precision is not None and before_precision - precision > self.precision_drop:
            return f"the judge's precision on kept samples fell {before_precision:.1%} -> {precision:.1%}"
        return None


class FunctionTrigger(Trigger):
    """A user's trigger, ``function(history, **options) -> str | None``, named as 'module:function'."""

    model_config = ConfigDict(extra="allow", frozen=True)
    trigger: str
    _fn: Any = PrivateAttr(default=None)

    def __call__(self, history: list[Row]) -> str | None:
        if self._fn is None:
            self._fn = lookup("monitor", self.trigger, "monitor.triggers")
        options = {k: v for k, v in (self.model_extra or {}).items()}
        return self._fn(history, **options)


def build_trigger(spec: Any, key: str = "monitor.triggers") -> Trigger:
    """The trigger a config item names: {trigger: NAME, action?, option: value, ...}."""
    if isinstance(spec, Trigger):
        return spec
    if not isinstance(spec, dict) or "trigger" not in spec:
        raise ConfigError(f"key '{key}': each trigger needs a 'trigger' key, a built-in name or 'module:function'")
    target = lookup("monitor", spec["trigger"], f"{key}.trigger")
    if isinstance(target, type) and issubclass(target, Trigger):
        return validate_model(target, spec, key, f"trigger {spec['trigger']!r}")
    if not callable(target):
        raise ConfigError(f"key '{key}.trigger': {spec['trigger']!r} is not callable")
    options = {k: v for k, v in spec.items() if k not in ("trigger", "action")}
    check_options(target, options, key, skip=1, what=f"trigger {spec['trigger']!r}")
    trigger = FunctionTrigger(trigger=spec["trigger"], action=spec.get("action"), **options)
    trigger._fn = target
    return trigger
