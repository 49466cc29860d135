"""Preference pairs from rsft's own scored samples, in TRL's DPO format.

Per prompt, the default pair is its best sample (chosen) against its worst
(rejected); groups whose samples all scored the same give no pair. With
`all_pairs`, every accepted × rejected combination (accepted: score at least
`threshold`) is emitted, best-first, up to `cap` per prompt. Each pair carries
its reward margin and, with `tau`, the soft label hp = σ(margin / τ) that the
reward-model trainer honours. Pairs whose two texts normalize to the same
string, and repeats, are dropped.

Rows are {prompt, chosen, rejected}: strings for text prompts, message lists
for chat prompts (TRL's conversational preference format), plus margin, p and
prompt_id, which DPOTrainer ignores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rsft.data.formats import scorer_completion, scorer_prompt
from rsft.errors import RsftError
from rsft.records import Group, Sample, Score
from rsft.rundir import atomic_write_jsonl, read_jsonl, round_dirs
from rsft.selection import normalize


def _ranked(group: Group) -> list[tuple[Sample, Score]]:
    ok = [(s, c) for s, c in group.scored if c.ok]
    return sorted(ok, key=lambda p: (-p[1].value, p[0].index))


def group_pairs(group: Group, all_pairs: bool = False, threshold: float = 1.0, cap: int = 16,
                tau: float | None = None) -> list[dict[str, Any]]:
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
        key = (normalize(cs.text), normalize(rs.text))
        if margin <= 0 or key[0] == key[1] or key in seen:
            continue
        seen.add(key)
        row = {"prompt": scorer_prompt(group.prompt), "chosen": scorer_completion(group.prompt, cs.text),
               "rejected": scorer_completion(group.prompt, rs.text), "margin": margin, "prompt_id": group.prompt.id}
        if tau is not None:
            row["p"] = 1 / (1 + math.exp(-margin / tau))
        rows.append(row)
        if len(rows) >= cap:
            break
    return rows


def export_pairs(run_dir: str | Path, round_index: int | None = None, output: str | Path | None = None,
                 all_pairs: bool = False, threshold: float = 1.0, cap: int = 16,
                 tau: float | None = None) -> tuple[Path, int]:
    """Write the pairs of one round (or of every scored round) of a run; returns (path, count)."""
    run_dir = Path(run_dir)
    rounds = [rd for rd in round_dirs(run_dir) if rd.scored.exists() and rd.done("score")]
    if round_index is not None:
        rounds = [rd for rd in rounds if rd.index == round_index]
    if not rounds:
        which = f"round {round_index}" if round_index is not None else "any round"
        raise RsftError(f"{run_dir}: no scored samples for {which}; run the score stage first")
    rows, seen = [], set()
    for rd in rounds:
        for d in read_jsonl(rd.scored):
            for row in group_pairs(Group.from_json(d), all_pairs, threshold, cap, tau):
                key = (row["prompt_id"], normalize(str(row["chosen"])), normalize(str(row["rejected"])))
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    if output is None:
        # never the round's own pairs.jsonl: that file belongs to the select stage
        name = f"pairs-round-{round_index:03d}.jsonl" if round_index is not None else "pairs-all-rounds.jsonl"
        output = run_dir / "exports" / name
    atomic_write_jsonl(Path(output), rows)
    return Path(output), len(rows)
