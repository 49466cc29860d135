"""The rationalize stage (STaR): prompts with no accepted sample are sampled again with the gold answer as a
hint; the rationales that pass are kept under the prompt *without* the hint, for the select stage.

    scored.jsonl ─► unsolved groups ─► hinted prompt (selection.rationalize.template) ─► engine ─► scorer
                 ─► leak check ─► rationalized.jsonl (each group under its original prompt)

Why: plain rejection sampling never trains on a prompt the model cannot yet solve, so its hardest prompts
never move. STaR gives the model the answer and asks for the reasoning; trained without the hint, the
rationale teaches the reasoning for that prompt. What it risks: a rationale that only works *because* of
the hint (it states the answer first and back-fills, or mentions the hint). `leaked` catches the obvious
cases: a completion that says "hint", or whose first line holds the gold answer when reasoning lines follow;
those are kept as scorer errors (``rationalize: ...``), so they are counted and never selected. It cannot
catch a rationale that is wrong but lands on the right answer; nothing short of a step checker can.

Off by default (`selection.rationalize` null: the stage writes nothing). The samples are drawn by the
round's policy with the round's sampling settings on their own seed stream (`RATIONALIZE_ROUND_OFFSET`),
numbered from `FIRST_INDEX` so they never share an index with a plain sample, and scored by the run's
scorer against the prompt's own fields. The stage resumes like sampling (`resumable_map`). It does not
select: the select stage runs the rules on these groups where the plain samples kept nothing, and counts
what it kept from them apart (`rationalized`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from rsft.core.errors import RsftError
from rsft.core.records import Group, Prompt, Score
from rsft.core.rundir.files import iter_groups
from rsft.core.rundir.resumable import resumable_map
from rsft.parts.scoring.base import score_groups
from rsft.stages.run import Run

RATIONALIZE_ROUND_OFFSET = 2_000_000  # seeds apart from the rounds' and the eval's (EVAL_ROUND_OFFSET)
FIRST_INDEX = 10_000
LEAK = "rationalize: "  # the error prefix of a rationale the leak check refused


def hinted(prompt: Prompt, template: str, field: str) -> Prompt:
    """`prompt` with its text (a chat prompt: its last user turn) rewritten by the template, the gold answer
    in it; the id and fields stay, so the scorer checks against the same gold."""
    if field not in prompt.fields:
        raise RsftError(f"key 'selection.rationalize.field': prompt {prompt.id!r} has no field {field!r} "
                        f"(its fields: {sorted(prompt.fields)})")
    answer = str(prompt.fields[field])
    if prompt.messages is None:
        return dataclasses.replace(prompt, text=template.format(prompt=prompt.text, answer=answer))
    messages = [dict(m) for m in prompt.messages]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last is None:
        raise RsftError(f"prompt {prompt.id!r}: no user turn to give the hint in (selection.rationalize)")
    messages[last]["content"] = template.format(prompt=messages[last]["content"], answer=answer)
    return dataclasses.replace(prompt, messages=tuple(messages))


_ANNOUNCE = re.compile(r"^\W*(the\s+)?(final\s+|correct\s+)?answer\s*(is\b|:|=)", re.IGNORECASE)


def leaked(text: str, answer: str | None) -> str | None:
    """Why a rationale is refused, or None: it names the hint, or its first line announces the answer ("The
    answer is 42", or just "42") and reasoning follows (the answer came from the hint, not the reasoning).
    A first line that reasons its way to the answer ("6 times 7 makes 42") is not a leak."""
    if "hint" in text.lower():
        return "mentions the hint"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if answer and len(lines) > 1:
        first = lines[0]
        if (_ANNOUNCE.match(first) and answer in first) or first.strip(" .:*#").lower() == answer.strip().lower():
            return "states the answer before its reasoning"
    return None


def unsolved(run: Run, r: int) -> Iterator[Group]:
    """The round's scored groups with no accepted sample (score >= accept_min), in file order."""
    for g in iter_groups(run.round(r).scored):
        if not any(c.passes(run.cfg.accept_min) for c in g.scores):
            yield g


def rationalize_batch(run: Run, r: int, batch: list[Group]) -> list[dict[str, Any]]:
    cfg = run.cfg.selection.rationalize
    params = dataclasses.replace(run.sampling_params(r), round=RATIONALIZE_ROUND_OFFSET + r, first_index=FIRST_INDEX)
    prompts = [g.prompt for g in batch]
    samples = run.engine(run.policy(r)).generate([hinted(p, cfg.template, cfg.field) for p in prompts], cfg.n, params)
    groups = score_groups(run.scorer, [Group(p, tuple(s)) for p, s in zip(prompts, samples, strict=True)],
                          run.cfg.scoring.timeout)
    out = []
    for g in groups:
        scores = []
        for s, c in g.scored:
            why = leaked(s.text, c.answer) if c.ok else None
            scores.append(Score(None, c.parts, f"{LEAK}{why}", c.answer) if why else c)
        out.append(g.with_scores(scores).to_json())
    return out


def rationalize_stage(run: Run, r: int) -> None:
    if run.cfg.selection.rationalize is None:
        return
    rd = run.round(r)
    resumable_map(unsolved(run, r), rd.rationalized, lambda batch: rationalize_batch(run, r, batch),
                  max(1, run.cfg.sampling.batch_size), f"round {r} rationalize", lambda g: g.prompt.id)
    if not rd.rationalized.exists():
        rd.rationalized.write_text("")  # every prompt was solved: nothing to rationalize, and the select stage knows


def rationalized_groups(run: Run, r: int) -> Iterator[Group]:
    """What the stage wrote, in scored.jsonl's order (empty when off)."""
    path = run.round(r).rationalized
    if run.cfg.selection.rationalize is not None and path.exists():
        yield from iter_groups(path)
