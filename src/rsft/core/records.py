"""Typed records that flow between the stages of a round.

What one stage hands the next is one of these records (or a list of them),
never a dict of lists. Completions travel grouped with their prompt (`Group`),
so no stage ever does index arithmetic such as ``i % K`` to find which prompt a
sample belongs to.

The records are frozen so a stage cannot mutate what an earlier stage wrote;
selection returns new `Group`s instead of editing old ones. Each record
round-trips through JSON (`to_json` / `from_json`) because the run directory,
not memory, is the state between stages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    """One prompt, as plain text or as chat messages.

    `fields` holds the dataset's other columns (answer, tests, ...). Scorers
    receive them as keyword arguments, the way TRL's GRPOTrainer hands dataset
    columns to its reward functions.
    """

    id: str
    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.messages is None):
            raise ValueError(f"prompt {self.id!r}: exactly one of text or messages must be set")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.messages is not None:
            out["messages"] = list(self.messages)
        else:
            out["text"] = self.text
        if self.fields:
            out["fields"] = self.fields
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prompt:
        msgs = d.get("messages")
        return cls(
            id=str(d["id"]),
            text=d.get("text"),
            messages=tuple(msgs) if msgs is not None else None,
            fields=dict(d.get("fields") or {}),
        )


@dataclass(frozen=True)
class Turn:
    """One message of an agent trajectory after the prompt: the model's action or the environment's reply.

    An ``assistant`` turn is what the engine generated (its `token_ids` and summed `logprob`); a
    ``tool`` turn is the environment's observation of that action (no tokens: it is never trained
    on); a leading ``user`` turn is the environment's opening observation, when it gives one.
    `info` holds what the environment reported with the observation (exit code, tool error...).
    """

    role: str  # "assistant" | "tool" | "user"
    text: str
    token_ids: tuple[int, ...] = ()
    logprob: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.token_ids:
            d["token_ids"] = list(self.token_ids)
        if self.logprob is not None:
            d["logprob"] = self.logprob
        if self.info:
            d["info"] = self.info
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Turn:
        return cls(d["role"], d["text"], tuple(d.get("token_ids", ())), d.get("logprob"), dict(d.get("info") or {}))


@dataclass(frozen=True)
class Sample:
    """One completion drawn for a prompt.

    `logprob` is the summed log-probability of the sampled tokens under the
    model's own distribution (raw logits, temperature 1), as vLLM reports it by
    default. `entropy` is the mean, over completion tokens, of the entropy of the
    distribution actually sampled from (after temperature, top-k and top-p):
    that is the quantity that collapses when positives-only training
    overconcentrates the policy. It is None when the engine did not measure it,
    never a 0.0 that would read as a collapsed policy; `logprob` likewise is None
    when a server did not report it.

    `error` is set when the sample could not be drawn (a server request that
    failed after its retries): the sample is kept, with empty text, so it is
    counted and never silently dropped; scoring turns it into a scorer error.

    An agent trajectory (`rsft.parts.sampling.rollout`) is a Sample too: `turns` holds
    every message after the prompt, `text` is the last action (what a scorer
    judges), `token_ids`/`logprob`/`entropy` cover all assistant turns, and `end`
    says why the episode ended (``done``, ``max_turns``, ``max_tokens``, ``length``, ``context``);
    finish_reason is "stop" only when the environment ended it.
    """

    prompt_id: str
    index: int
    text: str
    token_ids: tuple[int, ...] = ()
    logprob: float | None = 0.0
    entropy: float | None = None
    finish_reason: str = "stop"  # "stop" (EOS or stop string) | "length" | "error"
    error: str | None = None
    turns: tuple[Turn, ...] = ()
    end: str | None = None

    @property
    def actions(self) -> tuple[str, ...]:
        """The assistant turns' texts (a single-turn sample: its text): what dedup compares."""
        return tuple(t.text for t in self.turns if t.role == "assistant") if self.turns else (self.text,)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["token_ids"] = list(self.token_ids)
        for key in ("error", "end"):
            if d[key] is None:
                del d[key]
        if self.turns:
            d["turns"] = [t.to_json() for t in self.turns]
        else:
            del d["turns"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Sample:
        entropy = d.get("entropy")
        if entropy is not None and not math.isfinite(entropy):  # files of older versions wrote NaN
            entropy = None
        turns = tuple(Turn.from_json(t) for t in d.get("turns", ()))
        return cls(**{**d, "token_ids": tuple(d.get("token_ids", ())), "entropy": entropy, "turns": turns})


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one sample.

    `error` is set when the scorer failed on this sample (exception, timeout or
    a `None` return); `value` is then None and the sample can never be selected.
    One failing sample never stops a run.

    `parts` carries named components (``format``, ``correct``, ...) so that a
    format failure stays distinguishable from a wrong answer. `answer` is the
    extracted final answer when the scorer knows one; maj@k votes over it.
    """

    value: float | None
    parts: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    answer: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None

    def passes(self, threshold: float) -> bool:
        """Scored without error and at least `threshold`: what "accepted" means everywhere in rsft."""
        return self.ok and self.value >= threshold

    def __float__(self) -> float:
        """The value, NaN on error: lets a list of Scores be a TRL reward list (TRL ignores NaN rewards)."""
        return float(self.value) if self.ok else float("nan")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value}
        if self.parts:
            d["parts"] = self.parts
        if self.error is not None:
            d["error"] = self.error
        if self.answer is not None:
            d["answer"] = self.answer
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Score:
        return cls(value=d.get("value"), parts=dict(d.get("parts") or {}), error=d.get("error"), answer=d.get("answer"))


@dataclass(frozen=True)
class Group:
    """A prompt with its samples and (once scored) one score per sample.

    The unit that scoring, selection and evaluation work on. `scores` is empty
    before scoring and otherwise has exactly one entry per sample, in order.
    """

    prompt: Prompt
    samples: tuple[Sample, ...]
    scores: tuple[Score, ...] = ()

    def __post_init__(self) -> None:
        if self.scores and len(self.scores) != len(self.samples):
            raise ValueError(f"group {self.prompt.id!r}: {len(self.scores)} scores for {len(self.samples)} samples")

    @property
    def scored(self) -> list[tuple[Sample, Score]]:
        return list(zip(self.samples, self.scores, strict=True))

    def with_scores(self, scores: list[Score]) -> Group:
        return Group(self.prompt, self.samples, tuple(scores))

    def keep(self, pairs: list[tuple[Sample, Score]]) -> Group:
        """A new group holding only `pairs` (a subset of this group's scored samples)."""
        return Group(self.prompt, tuple(s for s, _ in pairs), tuple(c for _, c in pairs))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"prompt": self.prompt.to_json(), "samples": [s.to_json() for s in self.samples]}
        if self.scores:
            d["scores"] = [s.to_json() for s in self.scores]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Group:
        return cls(
            prompt=Prompt.from_json(d["prompt"]),
            samples=tuple(Sample.from_json(s) for s in d["samples"]),
            scores=tuple(Score.from_json(s) for s in d.get("scores", ())),
        )


@dataclass(frozen=True)
class PreferencePair:
    """A preference pair for reward-model training or DPO.

    `prompt`, `chosen` and `rejected` are in TRL's format: strings, or message
    lists for chat prompts. `p` is the soft label, the probability that
    `chosen` is preferred (1.0 for a hard label); `margin` is the reward gap
    that TRL's RewardTrainer subtracts inside the sigmoid. Both say how much
    better `chosen` is, so a pair normally carries one of them: the loss uses
    whatever the pair sets (see `rsft.learning.training.preference`).
    """

    prompt: Any
    chosen: Any
    rejected: Any
    p: float = 1.0
    margin: float = 0.0
