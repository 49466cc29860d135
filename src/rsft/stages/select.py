"""The select stage: the rule chain over each scored group, and what selection hands on.

It writes, all whole and atomically:
- ``kept.jsonl``: the groups as the rules left them (empty groups dropped);
- ``selected.jsonl``: the SFT set, TRL prompt/completion rows plus provenance
  (prompt id, reward, and ``round`` on rows replayed from earlier rounds);
- ``pairs.jsonl``: each group's best-vs-worst preference pair, TRL DPO format (none for agent
  trajectories: `has_tool_output`);
- ``selection.json``: survivors after each rule, the row counts, what decontamination
  dropped (`rsft.decontamination`), the mean selection score of what was kept and, when
  round samples are judged too, the judge's precision on them; the metrics stage reads
  it instead of selecting again.

It reads scored.jsonl one group at a time (rules never look across groups) and
streams every output, replay included (`EarlierRounds`), so its memory does not
grow with the round. The row formats (`sft_rows`, `replay_row`, `group_pairs`)
live here because they are this stage's outputs; `rsft export pairs` reuses
`group_pairs`.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rsft.data.formats import completion_text, is_trajectory_row, sft_row, trajectory_row
from rsft.decontamination import Contamination
from rsft.errors import RsftError
from rsft.progress import notice
from rsft.records import Group, Prompt, Sample, Score
from rsft.rundir import JsonlWriter, atomic_write_json, iter_groups
from rsft.selection import best_sample, normalize, rank_key, select_group
from rsft.stages.run import Run


def select_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    rules = run.cfg.selection.rules
    contamination = Contamination(run.task.eval, run.cfg.selection.decontaminate)
    earlier = EarlierRounds([run.round(q).kept for q in range(r)] if run.cfg.train.replay == "all_rounds" else [])
    t = _Tally(len(rules))
    # replayed rows go after this round's, grouped by the earlier round that first kept their prompt
    replay_outs = [tempfile.TemporaryFile("w+", encoding="utf-8") for _ in range(r)]
    with JsonlWriter(rd.kept) as kept_out, JsonlWriter(rd.pairs) as pairs_out, \
            JsonlWriter(rd.selected) as selected_out, contextlib.ExitStack() as temps:
        for f in replay_outs:
            temps.enter_context(f)
        for g in iter_groups(rd.scored):  # one group at a time: memory does not grow with the round
            if has_tool_output(g):  # TRL's DPOTrainer would put the tool output in its loss
                t.trajectory_groups += 1
            else:
                for row in group_pairs(g):
                    pairs_out.write(row)
            chosen, left = select_group(g, rules)
            t.survivors = [a + b for a, b in zip(t.survivors, left, strict=True)]
            kept, dropped = contamination.groups([chosen] if chosen.samples else [])
            t.decontaminated += dropped
            rows = []
            for k in kept:
                kept_out.write(k.to_json())
                t.add(k, run.cfg.eval.pass_threshold)
                rows = sft_rows([k])
                for row in rows:
                    selected_out.write(row)
            before = earlier.take(g.prompt.id)
            replayed, dropped = contamination.rows(replay_row(before, rows))
            t.decontaminated += dropped
            for row in replayed:
                replay_outs[before[0][0]].write(json.dumps(row, ensure_ascii=False) + "\n")
                t.replayed += 1
        earlier.check_finished()
        if not t.kept and not (t.replayed and run.cfg.sampling.allocation == "carry"):  # carry may skip them all
            chain = ", ".join(f"{rule.rule}: {n}" for rule, n in zip(rules, t.survivors, strict=True))
            raise RsftError(f"round {r}: selection kept no samples (left after each rule: {chain}); "
                            "lower the pass threshold, raise sampling.n, or warm-start the model")
        for f in replay_outs:  # this round's rows first, then the replayed ones
            f.seek(0)
            selected_out.copy_lines(f)
    if t.trajectory_groups:
        notice(f"round {r}: pairs.jsonl has no pairs of agent trajectories ({t.trajectory_groups} groups): TRL's "
               "DPOTrainer scores every token after the prompt, tool output included (it has no assistant-only mask)")
    if t.truncated:  # only possible when the chain has no drop_truncated rule
        notice(f"round {r}: {t.truncated} kept samples stopped at sampling.max_new_tokens and are trained with "
               "EOS appended; add {rule: drop_truncated} to the selection rules to drop them")
    atomic_write_json(rd.path / "selection.json", {
        "survivors": {rule.rule: n for rule, n in zip(rules, t.survivors, strict=True)}, "kept": t.kept,
        "rows": t.kept, "replayed": t.replayed, "decontaminated": t.decontaminated,
        "selection_score": t.score_sum / t.kept if t.kept else None,
        "judge_precision_kept": t.judge_passed / t.judged if t.judged else None,
        "pairs_skipped_trajectories": t.trajectory_groups,
    })


class _Tally:
    """What selection.json reports, counted as the groups stream by."""

    def __init__(self, n_rules: int) -> None:
        self.survivors = [0] * n_rules
        self.kept = self.replayed = self.decontaminated = self.truncated = self.trajectory_groups = 0
        self.score_sum = 0.0
        self.judged = self.judge_passed = 0

    def add(self, kept: Group, pass_threshold: float) -> None:
        for s, c in kept.scored:
            self.kept += 1
            self.score_sum += c.value
            self.truncated += s.finish_reason == "length"
            if "judge" in c.parts:
                self.judged += 1
                self.judge_passed += c.parts["judge"] >= pass_threshold


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
    instead of tokenizing the text again (`rsft.training.tokens`); TRL ignores the column."""
    if sample.turns:
        return trajectory_row(prompt, sample)
    row = sft_row(prompt, sample.text)
    if sample.token_ids:
        row["completion_ids"] = list(sample.token_ids)
    return row


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    completion = row["completion"]
    text = json.dumps(completion) if is_trajectory_row(row) else normalize(completion_text(completion))
    return row["prompt_id"], text


class EarlierRounds:
    """Earlier rounds' ``kept.jsonl`` files read in step with this round's groups.

    Every round's files list the same prompts in the same order (a prompt without kept samples is
    simply absent), so one pass over all of them side by side finds each prompt's earlier groups while
    holding one group per file: replay streams like the rest of the stage. Missing files (rounds
    without a select stage) are skipped.
    """

    def __init__(self, kept_files: Iterable[Path]) -> None:
        self._files = [(q, path, iter_groups(path)) for q, path in enumerate(kept_files) if path.exists()]
        self._heads = [next(it, None) for _, _, it in self._files]

    def take(self, prompt_id: str) -> list[tuple[int, Group]]:
        """(round, group) of each earlier round that kept samples of `prompt_id`, in round order."""
        out = []
        for i, (q, _, it) in enumerate(self._files):
            head = self._heads[i]
            if head is not None and head.prompt.id == prompt_id:
                out.append((q, head))
                self._heads[i] = next(it, None)
        return out

    def check_finished(self) -> None:
        for (_, path, _), head in zip(self._files, self._heads, strict=True):
            if head is not None:
                raise RsftError(f"{path}: kept prompt {head.prompt.id!r} out of this round's prompt order; "
                                "the run's prompts changed, start a new run")


def replay_row(earlier: list[tuple[int, Group]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best kept sample of one prompt over earlier rounds (at most one row), unless this round already
    trains on the same text.

    Llama 2 found that training only on the latest round's samples regressed
    some capabilities; keeping the top samples of all earlier rounds fixed it.
    Ties between rounds go to the later round.
    """
    best: tuple[float, dict[str, Any]] | None = None
    for q, g in earlier:
        top = best_sample(g)
        if top is None:
            continue
        sample, score = top
        value = score.value if score.ok else float("-inf")
        if best is None or value >= best[0]:
            best = (value, {**sample_row(g.prompt, sample), "prompt_id": g.prompt.id, "reward": score.value,
                            "round": q})
    if best is None or _row_key(best[1]) in {_row_key(row) for row in current}:
        return []
    return [best[1]]


def _ranked(group: Group) -> list[tuple[Sample, Score]]:
    return sorted([(s, c) for s, c in group.scored if c.ok], key=rank_key)


def has_tool_output(group: Group) -> bool:
    """Whether a group's samples are trajectories with environment output after the first action: a DPO
    pair of them would train the model to predict that output (TRL's DPOTrainer has no assistant-only
    mask, unlike SFT's `assistant_only_loss`), so no pairs are made of them."""
    for s in group.samples:
        roles = [t.role for t in s.turns]
        if "assistant" in roles and any(role != "assistant" for role in roles[roles.index("assistant"):]):
            return True
    return False


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
