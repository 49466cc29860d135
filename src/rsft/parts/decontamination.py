"""Keeping the held-out prompts out of training: what the select stage drops, and a warning for overlapping files.

A kept sample (or a replayed row, or a preference pair's sample) is dropped when its prompt is one of
the held-out prompts (after case and whitespace normalisation: always), or when its prompt or
completion shares a token n-gram of size `n` with a held-out prompt (GPT-3's 13-gram test; `n` None
turns the n-gram test off). A prompt shorter than `n` tokens is compared whole.

What is compared is what differs between prompts, not what they share:
- a chat prompt's **user turns** only: the system prompt (a chat template's default one, or the
  dataset's) is not the question;
- an n-gram found in **two or more distinct held-out prompts**, or in two or more distinct train prompts
  (the first `TEMPLATE_SAMPLE` of them, enough to see what every prompt carries), is template: an
  instruction sentence every prompt carries ("Answer with #### <number>."), not any one prompt's content,
  so it is not evidence of contamination. Its tokens are masked before the n-grams are taken, so an n-gram
  that straddles the end of a question and the start of the instruction is not evidence either; the
  prompts' own n-grams (within what the template leaves) still are. (A held-out question that two
  different train prompts both quote is missed by the n-gram test; an exact copy is still caught.)
- tokens are runs of letters and digits, and each character of a script written without spaces (Chinese,
  Japanese, Korean) is a token of its own, so text without spaces (CJK, code such as ``a+b==c``) is
  compared by n-grams too, not as one giant "word"; punctuation is not a token.
It compares text; it does not find paraphrases or translations.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rsft.core.records import Group, Prompt
from rsft.inputs.data.formats import completion_text
from rsft.parts.selection import normalize

# a character of a script written without spaces: CJK ideographs (and extensions, compatibility), kana, hangul
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f"
TEMPLATE_SAMPLE = 2000  # train prompts read for the template n-grams (memory stays bounded on any train set)
_TOKEN = re.compile(rf"[{_UNSPACED}]|(?:(?![{_UNSPACED}])[^\W_])+")


def _content(messages: Any) -> str:
    turns = [m for m in messages if isinstance(m, dict)]
    users = [m for m in turns if m.get("role") == "user"]
    return "\n".join(str(m.get("content", "")) for m in (users or [m for m in turns if m.get("role") != "system"]))


def prompt_text(prompt: Prompt | Any) -> str:
    """What a prompt asks, as one string: its text, or its user turns' contents (the system prompt left out;
    a conversation without a user turn: every turn but the system's)."""
    if isinstance(prompt, Prompt):
        return prompt.text if prompt.text is not None else _content(prompt.messages)
    if isinstance(prompt, list):
        return _content(prompt)
    return str(prompt)


def tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits, and single characters of unspaced scripts (see above)."""
    return _TOKEN.findall(text.lower())


def _ngrams(text: str, n: int, template: set[tuple[str, ...]] | None = None) -> set[tuple[str, ...]]:
    """The token n-grams of `text`; with `template`, only those lying wholly outside the template's spans
    (every token a template n-gram covers is masked first)."""
    words = tokens(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not template:
        return set(grams)
    covered = [False] * len(words)
    for i, g in enumerate(grams):
        if g in template:
            covered[i:i + n] = [True] * n
    return {g for i, g in enumerate(grams) if not any(covered[i:i + n])}


class Contamination:
    """The held-out prompts, indexed for the two tests; `template` holds the n-grams they share (ignored)."""

    def __init__(self, held_out: list[Prompt], n: int | None, train: Iterable[Prompt] = ()) -> None:
        self.n = n
        texts = {normalize(prompt_text(p)) for p in held_out}  # distinct: a duplicated prompt is not template
        self.exact = texts
        self.grams: set[tuple[str, ...]] = set()
        self.template: set[tuple[str, ...]] = set()
        if n is not None:
            counts = Counter(g for t in texts for g in _ngrams(t, n))
            seen = {normalize(prompt_text(p)) for p in itertools.islice(train, TEMPLATE_SAMPLE)} - texts
            in_train = Counter(g for t in seen for g in _ngrams(t, n))
            self.template = {g for g, c in counts.items() if c > 1 or in_train[g] > 1}
            self.grams = {g for t in texts for g in _ngrams(t, n, self.template)}

    def hits(self, prompt: Any, completion: str = "") -> bool:
        text = normalize(prompt_text(prompt))
        if text in self.exact:
            return True
        if self.n is None or not self.grams:
            return False
        return any(_ngrams(t, self.n, self.template) & self.grams for t in (text, completion) if t)

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
    """How many train prompts ask what a held-out prompt asks (normalised user text)."""
    exact = {normalize(prompt_text(p)) for p in held_out}
    return sum(normalize(prompt_text(p)) in exact for p in train)
