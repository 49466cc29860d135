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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

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


class PassRateRule(Rule):
    """Keep a prompt's samples only when its pass rate over the samples it has lies in [min, max]: a curriculum
    of prompts that are neither solved every time nor never (the band where a sample says most about what to
    learn). It keeps or drops whole groups and ranks nothing; the samples it keeps still need `passes` after
    it to drop the failures. The rate counts the samples the chain hands it, so it goes first (the config
    refuses it after a rule that keeps by score, where every rate would be 1); errored samples never reach
    the chain, so they count neither way."""

    rule: Literal["pass_rate"] = "pass_rate"
    min: float = Field(0.0, description="Lowest pass rate kept (inclusive).", ge=0, le=1)
    max: float = Field(1.0, description="Highest pass rate kept (inclusive).", ge=0, le=1)
    threshold: float = Field(1.0, description="A sample passes at a score of at least this.")

    @field_validator("max")
    @classmethod
    def _band(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and low > value:
            raise ValueError(f"expected max >= min ({low})")
        return value

    def __call__(self, group: Group) -> Group:
        scores = group.scores
        rate = sum(c.passes(self.threshold) for c in scores) / len(scores) if scores else 0.0
        return group if scores and self.min <= rate <= self.max else group.keep([])


class DiverseRule(Rule):
    """Keep at most n samples per prompt, the best first, and among samples with equal scores the ones that
    differ most from those already kept: the normalized edit distance (Levenshtein, rapidfuzz) of each
    candidate's key to its nearest kept sample, largest first, as the RFT paper kept distinct reasoning paths.

    It is `cap` with a different tie-break: it never keeps a worse-scored sample over a better one, and it
    drops nothing because it is similar (a copy of a kept sample is kept last; put `dedup` before it to drop
    copies). The key is the normalized text (trajectories: their actions), the scorer's extracted answer, or
    a user's ``module:function`` of (sample, score) returning a string."""

    rule: Literal["diverse"] = "diverse"
    n: int = Field(4, description="Keep at most n samples per prompt.", gt=0)
    key: str = Field("normalized", description="What the distance compares: 'normalized' or 'exact' text, 'answer', or "
                     "'module:function' of (sample, score) -> str.")
    _key_fn: Any = PrivateAttr(default=None)

    @field_validator("key")
    @classmethod
    def _key_name(cls, key: str) -> str:
        if key not in ("normalized", "exact", "answer") and ":" not in key:
            raise ValueError("expected 'normalized', 'exact', 'answer' or 'module:function'")
        return key

    def model_post_init(self, context: Any) -> None:
        if ":" in self.key:
            self._key_fn = lookup("rule", self.key, "selection.rules.key")  # a user's key function, imported now

    def text(self, sample: Sample, score: Score) -> str:
        if self._key_fn is not None:
            return str(self._key_fn(sample, score))
        return dedup_key(sample, score, self.key)

    def __call__(self, group: Group) -> Group:
        from rapidfuzz.distance import Levenshtein

        ranked = sorted(group.scored, key=rank_key)
        kept: list[tuple[Sample, Score]] = []
        kept_texts: list[str] = []
        i = 0
        while i < len(ranked) and len(kept) < self.n:
            tier = [p for p in ranked[i:] if rank_key(p)[0] == rank_key(ranked[i])[0]]  # equal scores, in rank order
            i += len(tier)
            while tier and len(kept) < self.n:
                def spread(pair: tuple[Sample, Score]) -> float:
                    t = self.text(*pair)
                    return min((Levenshtein.normalized_distance(t, k) for k in kept_texts), default=1.0)
                pick = max(tier, key=spread)  # max keeps the first (best-ranked) of equal spreads
                tier.remove(pick)
                kept.append(pick)
                kept_texts.append(self.text(*pick))
        chosen = {id(p[0]) for p in kept}
        return group.keep([p for p in group.scored if id(p[0]) in chosen])


def distinct_texts(group: Group) -> int:
    """How many different samples a group holds (normalized text; trajectories: their actions)."""
    return len({dedup_key(s, c, "normalized") for s, c in group.scored})


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
