"""The `selection` section: which samples a round keeps, and the two things around the rules that change
what there is to keep: a matched random control (`control`) and STaR rationalization (`rationalize`).

The rules are built through the registry as the config loads, so a typo in a rule's name or option is one
line naming the key; the order check (`pass_rate` before a rule that keeps by score) is here for the same
reason. What the control and rationalization do is in `rsft.stages.select` and `rsft.stages.rationalize`.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator

from rsft.core.config_sections import Section
from rsft.core.errors import ConfigError
from rsft.core.registry import resolve

KEEPS_BY_SCORE = ("passes", "top_k", "cap", "diverse")  # after one of these a pass rate would be 1 for every group

DEFAULT_HINT = ("{prompt}\n\nHint: the correct final answer is {answer}. Work the problem out step by step "
                "as if you had not been told; do not mention the hint.")


def _default_rules() -> list[Any]:
    return [{"rule": "passes"}, {"rule": "drop_truncated"}, {"rule": "dedup"}, {"rule": "cap"}]


class RationalizeConfig(Section):
    """STaR's rationalization: prompts with no accepted sample are sampled again with the gold answer as a hint;
    what passes is trained on with the hint removed from the prompt."""

    field: str = Field(description="The prompt field holding the gold answer given as the hint (e.g. 'answer').")
    template: str = Field(DEFAULT_HINT, description="The hinted user turn: {prompt} is the prompt's (last user "
                          "turn's) text, {answer} the gold field.")
    n: int = Field(4, description="Samples per unsolved prompt, drawn with the hint.", gt=0)

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        if not {"prompt", "answer"} <= names or names - {"prompt", "answer"}:
            raise ValueError(f"expected a template with {{prompt}} and {{answer}} and no other placeholder, "
                             f"got {sorted(names)}")
        return template


class SelectionConfig(Section):
    decontaminate: int | None = Field(
        13, description="Drop kept and replayed samples whose prompt or completion shares a word n-gram of this "
        "size with a held-out prompt (an exact prompt match is always dropped); null: exact matches only.", gt=0)
    rules: list[Any] = Field(
        default_factory=_default_rules, validate_default=True,
        description="Rules applied in order to each group: {rule: NAME, option: value}, NAME a built-in "
        "(passes, drop_truncated, dedup, cap, top_k, drop_uniform, pass_rate, diverse) or 'module:function'.",
    )
    control: Literal["random"] | None = Field(
        None, description="random: this run is a matched control: per prompt it keeps as many samples as the "
        "rules kept, drawn at random (seeded) from all of the prompt's samples. `rsft run --control random` "
        "runs one beside a run.")
    rationalize: RationalizeConfig | None = Field(
        None, description="STaR rationalization of prompts with no accepted sample: {field, template, n}; off "
        "when null.")

    @field_validator("rules", mode="after")
    @classmethod
    def _build_rules(cls, rules: list[Any]) -> list[Any]:
        """Each item becomes its rule object, through the registry (a typo in a name or option is one line);
        a pass_rate rule must come before any rule that keeps by score."""
        built = [resolve("rule", item, key=f"selection.rules.{i}") for i, item in enumerate(rules)]
        names = [r.rule for r in built]
        for i, name in enumerate(names):
            earlier = [e for e in names[:i] if e in KEEPS_BY_SCORE]
            if name == "pass_rate" and earlier:
                raise ConfigError(f"key 'selection.rules.{i}': pass_rate after {earlier[0]} sees only what "
                                  f"{earlier[0]} kept (every pass rate 1); put pass_rate first")
        return built

    @property
    def passes_min(self) -> float | None:
        """The `passes` rule's threshold, when the chain has one."""
        return next((r.min for r in self.rules if r.rule == "passes"), None)
