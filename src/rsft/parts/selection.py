"""Selection: a chain of small rules applied to each group, as lm-eval chains its filters.

A rule is a small pydantic model: its fields are its options (with help text),
and calling it on a scored `Group` returns a group holding the samples it
keeps. The chain is read from the config, e.g.
``passes(min=1) → dedup → cap(10) → top_k(1)``. Adding a rule is one class
here plus one line in `rsft.core.registry.BUILTINS`; a user's rule is
``{rule: "module:function", option: value}``, called as
``function(group, **options)`` with the options checked against its signature.

Samples a scorer failed on never reach the rules: `select` drops them first,
whatever the chain, so an errored sample can never be trained on. A sample cut
off at `max_new_tokens` would be trained with EOS appended (TRL appends it to
every completion), teaching the model to stop mid-answer; `drop_truncated`
removes those, and is in the default chain (for an agent trajectory, "length" means
it ran out of turns or tokens before the environment ended it). Ordering among equals
is by trajectory length, then sample index, so selection is deterministic. Rules do not look across groups;
cross-round replay is the select stage's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from rsft.core.errors import ConfigError
from rsft.core.records import Group, Sample, Score
from rsft.core.registry import check_options, lookup, validate_model

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form of a completion, for dedup and distinct counts."""
    return _WS.sub(" ", text).strip().lower()


def rank_key(pair: tuple[Sample, Score]) -> tuple[float, int, int]:
    """Best score first (a failed score last); among equals, the shorter trajectory (fewer actions, for
    agent samples; single-turn samples all count as one), then the lowest sample index."""
    sample, score = pair
    value = score.value if score.ok else float("-inf")
    return (-value, len(sample.actions), sample.index)


class Rule(BaseModel):
    """Options of one rule (its `rule` name and fields); each rule class is callable on a Group."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PassesRule(Rule):
    rule: Literal["passes"] = "passes"
    min: float = Field(1.0, description="Keep samples whose score is at least this.")

    def __call__(self, group: Group) -> Group:
        return group.keep([(s, c) for s, c in group.scored if c.passes(self.min)])


def dedup_key(sample: Sample, score: Score, key: str) -> str:
    """What makes two samples the same; trajectories compare their action sequences (joined by newlines)."""
    if sample.turns:
        actions = "\n".join(sample.actions)
        return actions if key == "exact" else normalize(actions)
    if key == "exact":
        return sample.text
    if key == "answer" and score.answer is not None:
        return score.answer
    return normalize(sample.text)


class DedupRule(Rule):
    rule: Literal["dedup"] = "dedup"
    key: Literal["normalized", "exact", "answer"] = Field(
        "normalized", description="What makes two samples the same: whitespace/case-normalized text, exact text, "
        "or the scorer's extracted answer."
    )

    def __call__(self, group: Group) -> Group:
        """Keep the best-scoring sample of each equivalence class, in original order."""
        best: dict[str, tuple[Sample, Score]] = {}
        for pair in sorted(group.scored, key=rank_key):
            best.setdefault(dedup_key(*pair, self.key), pair)
        kept = {id(p[0]) for p in best.values()}
        return group.keep([p for p in group.scored if id(p[0]) in kept])


class CapRule(Rule):
    rule: Literal["cap"] = "cap"
    n: int = Field(10, description="Keep at most n samples per prompt (ReST-EM keeps 10).", gt=0)

    def __call__(self, group: Group) -> Group:
        keep = {p[0].index for p in sorted(group.scored, key=rank_key)[: self.n]}
        return group.keep([p for p in group.scored if p[0].index in keep])


class TopKRule(Rule):
    rule: Literal["top_k"] = "top_k"
    k: int = Field(1, description="Keep the k best-scoring samples per prompt (k=1 is best-of-N).", gt=0)

    def __call__(self, group: Group) -> Group:
        return group.keep(sorted(group.scored, key=rank_key)[: self.k])


class DropUniformRule(Rule):
    rule: Literal["drop_uniform"] = "drop_uniform"
    tol: float = Field(0.0, description="Drop groups whose scores all lie within this distance of each other.")

    def __call__(self, group: Group) -> Group:
        """Drop a group whose scores are all equal (or that has none): it carries no signal about what is better."""
        values = [c.value for c in group.scores if c.ok]
        if not values or max(values) - min(values) <= self.tol:
            return group.keep([])
        return group


class DropTruncatedRule(Rule):
    rule: Literal["drop_truncated"] = "drop_truncated"

    def __call__(self, group: Group) -> Group:
        """Drop samples that ended at max_new_tokens rather than at EOS or a stop string."""
        return group.keep([(s, c) for s, c in group.scored if s.finish_reason != "length"])


class FunctionRule(Rule):
    """A user's rule, ``function(group, **options) -> Group``, named as 'module:function'."""

    model_config = ConfigDict(extra="allow", frozen=True)
    rule: str
    _fn: Any = PrivateAttr(default=None)

    def __call__(self, group: Group) -> Group:
        if self._fn is None:
            self._fn = lookup("rule", self.rule, "selection.rules")
        out = self._fn(group, **(self.model_extra or {}))
        if not isinstance(out, Group):
            raise TypeError(f"rule {self.rule!r} returned {type(out).__name__}, expected a Group")
        return out


def build_rule(spec: Any, key: str = "selection.rules") -> Rule:
    """The rule a config item names: {rule: NAME, option: value, ...}, or a Rule already built."""
    if isinstance(spec, Rule):
        return spec
    if not isinstance(spec, dict) or "rule" not in spec:
        raise ConfigError(f"key '{key}': each rule needs a 'rule' key, a built-in name or 'module:function'")
    target = lookup("rule", spec["rule"], f"{key}.rule")
    if isinstance(target, type) and issubclass(target, Rule):
        return validate_model(target, spec, key, f"rule {spec['rule']!r}")
    if not callable(target):
        raise ConfigError(f"key '{key}.rule': {spec['rule']!r} is not callable")
    options = check_options(target, {k: v for k, v in spec.items() if k != "rule"}, key, skip=1,
                            what=f"rule {spec['rule']!r}")
    rule = FunctionRule(rule=spec["rule"], **options)
    rule._fn = target
    return rule


@dataclass(frozen=True)
class Selection:
    """The kept groups (empty ones included) and how many samples survived each rule."""

    groups: list[Group]
    survivors: list[tuple[str, int]]  # (rule name, samples left after it), in chain order


def select(groups: list[Group], rules: list[Rule]) -> Selection:
    """Each group through the chain, after dropping the samples whose score is an error."""
    current, survivors = [], [0] * len(rules)
    for g in groups:
        kept, left = select_group(g, rules)
        current.append(kept)
        survivors = [a + b for a, b in zip(survivors, left, strict=True)]
    return Selection(current, [(rule.rule, n) for rule, n in zip(rules, survivors, strict=True)])


def select_group(group: Group, rules: list[Rule]) -> tuple[Group, list[int]]:
    """One group through the chain (errored samples dropped first): what is left, and how many samples
    were left after each rule. Rules never look across groups, so a round can be selected group by group."""
    current = group.keep([(s, c) for s, c in group.scored if c.ok])
    left = []
    for rule in rules:
        current = rule(current)
        left.append(len(current.samples))
    return current, left


def best_sample(group: Group) -> tuple[Sample, Score] | None:
    """The top-ranked scored sample of a group, or None when it is empty."""
    return min(group.scored, key=rank_key) if group.samples else None
