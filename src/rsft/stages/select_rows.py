"""The row formats the select stage writes: TRL prompt/completion rows (`sft_rows`, `sample_row`) and TRL DPO
preference pairs (`group_pairs`, and `decontaminated_pairs`, the pairs both the stage and `rsft export pairs` write).

They live with the select stage because they are its outputs; the export command and the benchmarks reuse
them instead of formatting rows of their own. They format and never select: which samples become rows is the
rule chain's and decontamination's business (`rsft.stages.select`).
"""

from __future__ import annotations

import math
from typing import Any

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.inputs.data.formats import sft_row, trajectory_row
from rsft.parts.decontamination import Contamination
from rsft.parts.selection import normalize, rank_key


def sft_rows(kept: list[Group]) -> list[dict[str, Any]]:
    """One TRL prompt/completion row per kept sample, with its prompt id and reward."""
    rows = []
    for g in kept:
        for s, c in g.scored:
            rows.append({**sample_row(g.prompt, s), "prompt_id": g.prompt.id, "reward": c.value})
    return rows


def sample_row(prompt: Prompt, sample: Sample) -> dict[str, Any]:
    """A TRL prompt/completion row for one sample: its text, or its whole trajectory (agent tasks). A
    single-turn row also carries the ids the engine sampled (``completion_ids``), which training uses
    instead of tokenizing the text again (`rsft.learning.training.tokens`); TRL ignores the column."""
    if sample.turns:
        return trajectory_row(prompt, sample)
    row = sft_row(prompt, sample.text)
    if sample.token_ids:
        row["completion_ids"] = list(sample.token_ids)
    return row


def has_tool_output(group: Group) -> bool:
    """Whether a group's samples are trajectories with environment output after the first action: a DPO
    pair of them would train the model to predict that output (TRL's DPOTrainer has no assistant-only
    mask, unlike SFT's `assistant_only_loss`), so no pairs are made of them."""
    for s in group.samples:
        roles = [t.role for t in s.turns]
        if "assistant" in roles and any(role != "assistant" for role in roles[roles.index("assistant"):]):
            return True
    return False


def decontaminated_pairs(group: Group, contamination: Contamination, all_pairs: bool = False,
                         threshold: float = 1.0, cap: int = 16,
                         tau: float | None = None) -> tuple[list[dict[str, Any]], int]:
    """The pairs of one scored group once the samples that overlap the held-out prompts are out (the test
    the SFT rows get, `Contamination`): a held-out prompt gives no pair, and a completion that quotes one is
    in none. Returns the pairs and how many samples were left out.

    The one place pairs are decontaminated: the select stage's pairs.jsonl and `rsft export pairs` both
    call it, so the two files cannot disagree on what counts as contaminated. It takes the whole scored
    group, not what the rules kept: a pair needs the worst samples, which the rules drop.
    """
    clean, dropped = contamination.groups([group])
    if not clean:
        return [], dropped
    return group_pairs(clean[0], all_pairs, threshold, cap, tau), dropped


def _ranked(group: Group) -> list[tuple[Sample, Score]]:
    return sorted([(s, c) for s, c in group.scored if c.ok], key=rank_key)


def group_pairs(group: Group, all_pairs: bool = False, threshold: float = 1.0, cap: int = 16,
                tau: float | None = None) -> list[dict[str, Any]]:
    """Preference pairs of one group in TRL's DPO format: best vs worst, or with `all_pairs` every accepted ×
    rejected combination (accepted: score at least `threshold`), best first, up to `cap`.

    Each pair carries how much better `chosen` is, once: its reward `margin` (TRL's RewardTrainer margin),
    or with `tau` the soft label p = σ(margin / τ) in place of it (the gap stays, as `reward_gap`, which no
    trainer reads). Pairs whose two texts normalize to the same string, and repeats, are dropped; a group
    whose samples all scored the same gives none. It does not decontaminate (`decontaminated_pairs` does).
    """
    ranked = _ranked(group)
    if len(ranked) < 2:
        return []
    if all_pairs:
        accepted = [p for p in ranked if p[1].value >= threshold]
        rejected = [p for p in reversed(ranked) if p[1].value < threshold]
        candidates = [(a, r) for a in accepted for r in rejected]
    else:
        candidates = [(ranked[0], ranked[-1])]
    rows, seen = [], set()
    for (cs, cc), (rs, rc) in candidates:
        margin = cc.value - rc.value
        key = (normalize("\n".join(cs.actions)), normalize("\n".join(rs.actions)))
        if margin <= 0 or key[0] == key[1] or key in seen:
            continue
        seen.add(key)
        chosen, rejected = sample_row(group.prompt, cs), sample_row(group.prompt, rs)
        row = {"prompt": chosen["prompt"], "chosen": chosen["completion"], "rejected": rejected["completion"],
               "prompt_id": group.prompt.id}
        if tau is None:
            row["margin"] = margin
        else:
            row.update({"p": 1 / (1 + math.exp(-margin / tau)), "reward_gap": margin})
        rows.append(row)
        if len(rows) >= cap:
            break
    return rows
