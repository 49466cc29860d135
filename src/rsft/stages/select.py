"""The select stage: the rule chain over each scored group, and what selection hands on.

It writes, all whole and atomically:
- ``kept.jsonl``: the groups as the rules left them (empty groups dropped);
- ``selected.jsonl``: the SFT set, TRL prompt/completion rows plus provenance
  (prompt id, reward, and ``round`` on rows replayed from earlier rounds);
- ``pairs.jsonl``: each group's best-vs-worst preference pair, TRL DPO format;
- ``selection.json``: survivors after each rule, the row counts, what decontamination
  dropped (`rsft.decontamination`), the mean selection score of what was kept and, when
  round samples are judged too, the judge's precision on them; the metrics stage reads
  it instead of selecting again.

The row formats (`sft_rows`, `replay_rows`, `group_pairs`) live here because
they are this stage's outputs; `rsft export pairs` reuses `group_pairs`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rsft.data.formats import completion_text, is_trajectory_row, sft_row, trajectory_row
from rsft.decontamination import Contamination
from rsft.errors import RsftError
from rsft.progress import notice
from rsft.records import Group, Prompt, Sample, Score
from rsft.rundir import atomic_write_json, atomic_write_jsonl, read_groups, read_jsonl
from rsft.selection import best_sample, normalize, rank_key, select
from rsft.stages.run import Run


def select_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    scored = read_groups(rd.scored)
    selection = select(scored, run.cfg.selection.rules)
    contamination = Contamination(run.task.eval, run.cfg.selection.decontaminate)
    kept, dropped = contamination.groups([g for g in selection.groups if g.samples])
    if not kept:
        chain = ", ".join(f"{name}: {n}" for name, n in selection.survivors)
        raise RsftError(f"round {r}: selection kept no samples (left after each rule: {chain}); "
                        "lower the pass threshold, raise sampling.n, or warm-start the model")
    truncated = sum(s.finish_reason == "length" for g in kept for s in g.samples)
    if truncated:  # only possible when the chain has no drop_truncated rule
        notice(f"round {r}: {truncated} kept samples stopped at sampling.max_new_tokens and are trained with "
                      "EOS appended; add {rule: drop_truncated} to the selection rules to drop them")
    rows = sft_rows(kept)
    replayed = replay_rows([run.round(q).kept for q in range(r)], rows) if run.cfg.train.replay == "all_rounds" else []
    replayed, replay_dropped = contamination.rows(replayed)
    atomic_write_jsonl(rd.kept, [g.to_json() for g in kept])
    atomic_write_jsonl(rd.pairs, [row for g in scored for row in group_pairs(g)])
    atomic_write_jsonl(rd.selected, rows + replayed)
    kept_scores = [c for g in kept for c in g.scores]
    judged = [c.parts["judge"] for c in kept_scores if "judge" in c.parts]
    atomic_write_json(rd.path / "selection.json", {
        "survivors": dict(selection.survivors), "kept": len(kept_scores), "rows": len(rows),
        "replayed": len(replayed), "decontaminated": dropped + replay_dropped,
        "selection_score": sum(c.value for c in kept_scores) / len(kept_scores),
        "judge_precision_kept": (sum(v >= run.cfg.eval.pass_threshold for v in judged) / len(judged)
                                 if judged else None),
    })


def sft_rows(kept: list[Group]) -> list[dict[str, Any]]:
    """One TRL prompt/completion row per kept sample, with its prompt id and reward."""
    rows = []
    for g in kept:
        for s, c in g.scored:
            rows.append({**sample_row(g.prompt, s), "prompt_id": g.prompt.id, "reward": c.value})
    return rows


def sample_row(prompt: Prompt, sample: Sample) -> dict[str, Any]:
    """A TRL prompt/completion row for one sample: its text, or its whole trajectory (agent tasks)."""
    return trajectory_row(prompt, sample) if sample.turns else sft_row(prompt, sample.text)


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    completion = row["completion"]
    text = json.dumps(completion) if is_trajectory_row(row) else normalize(completion_text(completion))
    return row["prompt_id"], text


def replay_rows(kept_files: Iterable[Path], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best kept sample per prompt over earlier rounds' ``kept.jsonl`` (in round order), minus what this
    round already trains on.

    Llama 2 found that training only on the latest round's samples regressed
    some capabilities; keeping the top samples of all earlier rounds fixed it.
    Ties between rounds go to the later round.
    """
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for q, path in enumerate(kept_files):
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
                row = {**sample_row(g.prompt, sample), "prompt_id": g.prompt.id, "reward": score.value, "round": q}
                best[g.prompt.id] = (value, row)
    have = {_row_key(row) for row in current}
    return [row for _, row in best.values() if _row_key(row) not in have]


def _ranked(group: Group) -> list[tuple[Sample, Score]]:
    return sorted([(s, c) for s, c in group.scored if c.ok], key=rank_key)


def group_pairs(group: Group, all_pairs: bool = False, threshold: float = 1.0, cap: int = 16,
                tau: float | None = None) -> list[dict[str, Any]]:
    """Preference pairs of one group in TRL's DPO format: best vs worst, or with `all_pairs` every accepted ×
    rejected combination (accepted: score at least `threshold`), best first, up to `cap`.

    Each pair carries how much better `chosen` is, once: its reward `margin` (TRL's RewardTrainer margin),
    or with `tau` the soft label p = σ(margin / τ) in place of it (the gap stays, as `reward_gap`, which no
    trainer reads). Pairs whose two texts normalize to the same string, and repeats, are dropped; a group
    whose samples all scored the same gives none.
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
