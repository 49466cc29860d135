"""The built-in `addition` task: multi-digit addition written least-significant digit first.

Reversed digits let a tiny model emit each answer digit right after the
digits it depends on (and the carry), which makes the task learnable from
scratch on a CPU; see Lee et al. 2025, "Self-Improving Transformers". All
numbers are zero-padded to a fixed width, so the format is rigid:

    prompt      "321+654="      (123 + 456, digits reversed)
    completion  "9750"          (579 -> "0579" -> reversed)

The verifier holds that format: the completion must be exactly digits + 1
digits (the width the prompt's operands give, from the last ``A+B=`` in the
prompt), so "975", "9750" and "97500" are not the same answer; anything else
is a format failure, kept apart from a wrong sum in the score's parts. When the
prompt shows no operands (a bare call), the width is the sum's own digits or
one more (one padding zero), never more.
"""

from __future__ import annotations

import random
import re
from typing import Any

from rsft.core.records import Prompt, Score
from rsft.inputs.data.formats import completion_text
from rsft.inputs.tasks.base import Task

ALPHABET = "0123456789+="
_DIGITS = re.compile(r"^[0-9]+$")
_PROMPT = re.compile(r"([0-9]+)\+([0-9]+)=\s*$")


def encode(n: int, width: int) -> str:
    return str(n).zfill(width)[::-1]


def make_prompt(a: int, b: int, digits: int, pid: str) -> Prompt:
    text = f"{encode(a, digits)}+{encode(b, digits)}="
    return Prompt(id=pid, text=text, fields={"answer": a + b})


def gold_completion(a: int, b: int, digits: int) -> str:
    return encode(a + b, digits + 1)


def answer_width(prompt: Any) -> int | None:
    """Digits the answer must have: the operand width + 1 (the carry), from a prompt like '321+654='."""
    m = _PROMPT.search(completion_text(prompt) if not isinstance(prompt, str) else prompt)
    return len(m.group(1)) + 1 if m else None


def addition_scorer(prompts: list[Any], completions: list[Any], answer: list[int], **_: Any) -> list[Score]:
    """1.0 for the right sum, 0.0 for a wrong one; a completion that is not exactly the answer's digits
    (digits only, the prompt's width + 1) is a format failure.

    Has TRL GRPO's reward signature, so it also works as a `reward_funcs` entry.
    """
    out = []
    for prompt, completion, target in zip(prompts, completions, answer, strict=True):
        text = completion_text(completion).strip()
        width = answer_width(prompt)
        widths = {width} if width is not None else {len(str(int(target))), len(str(int(target))) + 1}
        if not _DIGITS.match(text) or len(text) not in widths:
            out.append(Score(0.0, {"format": 0.0, "correct": 0.0}))
            continue
        value = int(text[::-1])
        correct = float(value == int(target))
        out.append(Score(correct, {"format": 1.0, "correct": correct}, answer=str(value)))
    return out


def scorer() -> Any:
    """The registry's factory for the `addition` scorer (it has no options)."""
    return addition_scorer


def make_task(
    digits: int = 3,
    n_train: int = 2000,
    n_eval: int = 500,
    n_gold: int = 2000,
    seed: int = 0,
) -> Task:
    """Disjoint seeded splits of operand pairs: train prompts, held-out prompts, and gold examples."""
    if digits < 1:
        raise ValueError("digits must be >= 1")
    rng = random.Random(f"addition:{digits}:{seed}")
    hi = 10**digits
    total = n_train + n_eval + n_gold
    if total > hi * hi:
        raise ValueError(f"only {hi * hi} distinct {digits}-digit problems, {total} requested")
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < total:
        p = (rng.randrange(hi), rng.randrange(hi))
        if p not in seen:
            seen.add(p)
            pairs.append(p)
    train = [make_prompt(a, b, digits, f"train-{i}") for i, (a, b) in enumerate(pairs[:n_train])]
    held = [make_prompt(a, b, digits, f"eval-{i}") for i, (a, b) in enumerate(pairs[n_train : n_train + n_eval])]
    gold = [
        (make_prompt(a, b, digits, f"gold-{i}"), gold_completion(a, b, digits))
        for i, (a, b) in enumerate(pairs[n_train + n_eval :])
    ]
    return Task("addition", train, held, addition_scorer, gold, ALPHABET)
