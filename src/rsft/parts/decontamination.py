"""Keeping the held-out prompts out of training: what the select stage drops, and a warning for overlapping files.

A kept sample (or a replayed row) is dropped when its prompt is one of the held-out prompts (after
case and whitespace normalisation: always), or when its prompt or completion shares a word n-gram of
size `n` with a held-out prompt (GPT-3's 13-gram test; `n` None turns the n-gram test off). A prompt
shorter than `n` words is compared whole. It compares text; it does not find paraphrases.
"""

from __future__ import annotations

from typing import Any

from rsft.core.records import Group, Prompt
from rsft.inputs.data.formats import completion_text
from rsft.parts.selection import normalize


def prompt_text(prompt: Prompt | Any) -> str:
    """A prompt as one string: its text, or its messages' contents joined."""
    if isinstance(prompt, Prompt):
        return prompt.text if prompt.text is not None else "\n".join(str(m.get("content", "")) for m in prompt.messages)
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt)
    return str(prompt)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class Contamination:
    """The held-out prompts, indexed for the two tests."""

    def __init__(self, held_out: list[Prompt], n: int | None) -> None:
        self.n = n
        self.exact = {normalize(prompt_text(p)) for p in held_out}
        self.grams: set[tuple[str, ...]] = set()
        if n is not None:
            for p in held_out:
                self.grams |= _ngrams(prompt_text(p), n)

    def hits(self, prompt: Any, completion: str = "") -> bool:
        text = normalize(prompt_text(prompt))
        if text in self.exact:
            return True
        if self.n is None or not self.grams:
            return False
        return any(_ngrams(t, self.n) & self.grams for t in (text, completion) if t)

    def groups(self, groups: list[Group]) -> tuple[list[Group], int]:
        """The groups without the samples that hit; and how many samples were dropped."""
        out, dropped = [], 0
        for g in groups:
            keep = [(s, c) for s, c in g.scored if not self.hits(g.prompt, s.text)]
            dropped += len(g.samples) - len(keep)
            if keep:
                out.append(g.keep(keep))
        return out, dropped

    def rows(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """SFT rows ({prompt, completion}) without those that hit; and how many were dropped."""
        keep = [r for r in rows if not self.hits(r["prompt"], completion_text(r["completion"]))]
        return keep, len(rows) - len(keep)


def shared_prompts(train: list[Prompt], held_out: list[Prompt]) -> int:
    """How many train prompts are also held-out prompts (normalised text)."""
    exact = {normalize(prompt_text(p)) for p in held_out}
    return sum(normalize(prompt_text(p)) in exact for p in train)
