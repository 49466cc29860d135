"""Turning kept groups into SFT rows, and replaying the best of earlier rounds.

Rows are TRL prompt/completion rows plus provenance (prompt id, reward,
round), which the trainer ignores and a reader of `selected.jsonl` wants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rsft.data.formats import completion_text, sft_row
from rsft.records import Group
from rsft.rundir import read_jsonl
from rsft.selection import best_sample, normalize

if TYPE_CHECKING:
    from rsft.stages import Run


def sft_rows(kept: list[Group], round_index: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for g in kept:
        for s, c in g.scored:
            row = sft_row(g.prompt, s.text)
            row.update({"prompt_id": g.prompt.id, "reward": c.value})
            if round_index is not None:
                row["round"] = round_index
            rows.append(row)
    return rows


def replay_rows(run: Run, r: int, current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best kept sample per prompt over rounds < r, minus what this round already trains on.

    Llama 2 found that training only on the latest round's samples regressed
    some capabilities; keeping the top samples of all earlier rounds fixed it.
    Ties between rounds go to the later round.
    """
    best: dict[str, tuple[float, int, dict[str, Any]]] = {}
    for q in range(r):
        path = run.round(q).kept
        if not path.exists():
            continue
        for d in read_jsonl(path):
            g = Group.from_json(d)
            top = best_sample(g)
            if top is None:
                continue
            sample, score = top
            value = score.value if score.ok else float("-inf")
            if g.prompt.id not in best or value >= best[g.prompt.id][0]:
                row = sft_row(g.prompt, sample.text)
                row.update({"prompt_id": g.prompt.id, "reward": score.value, "round": q})
                best[g.prompt.id] = (value, q, row)
    have = {(row["prompt_id"], normalize(completion_text(row["completion"]))) for row in current}
    return [row for _, _, row in best.values() if (row["prompt_id"], normalize(completion_text(row["completion"]))) not in have]
