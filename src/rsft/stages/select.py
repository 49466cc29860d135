"""The select stage: each scored group through the rules, then decontamination, then one writer per output.

    scored group ─┬─► RuleChain ─► Decontaminate ─┬─► KeptWriter      kept.jsonl
                  │                               ├─► JsonlWriter     selected.jsonl: SFT rows (`sft_rows`)
                  │                               └─► ReplayWriter    earlier rounds' rows, after those
                  └─► PairsWriter (`decontaminated_pairs`)            pairs.jsonl
    and selection.json (`write_selection`) from what each step counted.

Every output is written whole and atomically (a temporary file renamed into place; an error leaves none):
- ``kept.jsonl``: the groups as the rules and decontamination left them (empty groups dropped);
- ``selected.jsonl``: the SFT set, TRL prompt/completion rows plus provenance (prompt id, reward, and
  ``round`` on rows replayed from earlier rounds, `rsft.stages.select_replay`);
- ``pairs.jsonl``: each group's best-vs-worst preference pair, TRL DPO format, made of the whole scored
  group less what overlaps the held-out prompts (none for agent trajectories: `has_tool_output`);
- ``selection.json``: survivors after each rule, the row counts, what decontamination dropped
  (`rsft.parts.decontamination`), the mean selection score of what was kept and, when round samples are
  judged too, the judge's precision on them; the metrics stage reads it instead of selecting again.

It reads scored.jsonl one group at a time (rules never look across groups) and streams every output,
replay included, so its memory does not grow with the round. The row formats live in
`rsft.stages.select_rows`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rsft.core import metrics_schema as M
from rsft.core.errors import RsftError
from rsft.core.progress import notice
from rsft.core.records import Group
from rsft.core.rundir.files import JsonlWriter, atomic_write_json, iter_groups
from rsft.parts.decontamination import Contamination
from rsft.parts.selection import Rule, distinct_texts
from rsft.stages.rationalize import LEAK, rationalized_groups
from rsft.stages.run import Run
from rsft.stages.select_replay import EarlierRounds, ReplayWriter, replay_row
from rsft.stages.select_rows import decontaminated_pairs, has_tool_output, sft_rows


def select_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    rules = RuleChain(run.cfg.selection.rules)
    contamination = held_out(run)
    clean = Decontaminate(contamination)
    control = RandomControl(run.cfg.seed, r) if run.cfg.selection.control == "random" else None
    rationales = Rationales(rationalized_groups(run, r), run.cfg.selection.rationalize is not None)
    earlier = EarlierRounds([run.round(q).kept for q in range(r)] if run.cfg.train.replay == "all_rounds" else [])
    with KeptWriter(rd.kept, run.cfg.eval.pass_threshold) as kept_out, JsonlWriter(rd.selected) as selected_out, \
            PairsWriter(rd.pairs, contamination) as pairs_out, ReplayWriter(r) as replay_out:
        for g in iter_groups(rd.scored):  # one group at a time: memory does not grow with the round
            pairs_out.write(g)  # the whole group (a pair needs the worst samples, which rules drop), decontaminated
            chosen = rationales.chain(g, rules)  # the rules; on an unsolved prompt, on its rationales
            if control is not None:
                chosen = control(g, len(chosen.samples))
            kept = clean.group(chosen)
            rationales.count(g, kept)
            kept_out.write(kept)
            rows = sft_rows([kept])
            for row in rows:
                selected_out.write(row)
            before = earlier.take(g.prompt.id)
            replay_out.write(before, clean.rows(replay_row(before, rows)))
        earlier.check_finished()
        rationales.check_finished()
        # an allocation that may keep none (carry skips solved prompts): the replayed rows are then all it trains on
        if not kept_out.kept and not (replay_out.replayed and run.allocation.may_keep_none):
            raise nothing_kept(r, rules, clean, kept_out.kept)
        replay_out.append_to(selected_out)  # this round's rows first, then the replayed ones
    pairs_out.notice(r)
    kept_out.notice(r)
    write_selection(rd.selection_file, rules, clean, kept_out, replay_out, pairs_out, rationales, control)


def held_out(run: Run) -> Contamination:
    """The held-out prompts indexed for the decontamination test (`selection.decontaminate`): the one
    the select stage applies, and `rsft export pairs` with it, so an export holds no pair the stage would
    not have written."""
    return Contamination(run.task.eval, run.cfg.selection.decontaminate, run.task.train)


class RuleChain:
    """Step 1: the configured rules over one group (errored samples dropped first, `select_group`), and how
    many samples were left after each rule over the round so far.

    It looks at one group at a time, as the rules do; it does not decontaminate (the next step does, so the
    survivor counts describe the round as sampled).
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._left = [0] * len(rules)
        self._distinct = [0] * len(rules)
        self.groups_in = self.distinct_in = 0

    def __call__(self, group: Group) -> Group:
        current = group.keep([(s, c) for s, c in group.scored if c.ok])
        self.groups_in += 1
        self.distinct_in += distinct_texts(current)
        for i, rule in enumerate(self.rules):
            current = rule(current)
            self._left[i] += len(current.samples)
            self._distinct[i] += distinct_texts(current)
        return current

    def others(self, group: Group) -> Group:
        """The chain over a group that is not one of the round's own (rationales): the same rules, not
        counted in the survivors."""
        current = group.keep([(s, c) for s, c in group.scored if c.ok])
        for rule in self.rules:
            current = rule(current)
        return current

    def survivors(self) -> list[tuple[str, int]]:
        """(rule name, samples left after it), in chain order."""
        return [(rule.rule, n) for rule, n in zip(self.rules, self._left, strict=True)]

    def distinct(self) -> dict[str, float]:
        """Distinct samples per prompt (normalized text) before the chain and after each rule: what `dedup`
        and `diverse` change, beside what `cap` would keep."""
        per = max(self.groups_in, 1)
        out = {"scored": self.distinct_in / per}
        for rule, n in zip(self.rules, self._distinct, strict=True):
            out[rule.rule] = n / per
        return out


class RandomControl:
    """The matched random control (`selection.control: random`): per prompt, as many samples as the rules kept,
    drawn at random from all the prompt's samples the scorer did not fail on (truncated and failed ones
    included: that is the point), seeded by the run's seed, the round and the prompt id. The control then
    trains on the same number of rows of the same prompts as the real chain would, so a difference between
    the two runs is the selection's, not the SFT on self-samples.

    It is applied after the rules (whose counts it matches) and before decontamination, like them."""

    def __init__(self, seed: int, r: int) -> None:
        self.seed, self.round = seed, r

    def __call__(self, group: Group, n: int) -> Group:
        pool = [(s, c) for s, c in group.scored if c.ok]
        chosen = random.Random(f"{self.seed}:{self.round}:{group.prompt.id}").sample(range(len(pool)), min(n, len(pool)))
        return group.keep([pool[i] for i in sorted(chosen)])


class Rationales:
    """Step 1b: the rationalize stage's groups (STaR), walked in step with scored.jsonl. Where the rules keep
    nothing of a prompt's own samples and it has rationales, the rules run on those instead (the prompt
    without the hint); what that keeps, after decontamination, is counted as `rationalized`, and the
    rationales the leak check refused as `rationalize_leaks`.

    Only unsolved prompts have rationales, in scored.jsonl's order, so one look-ahead group is enough."""

    def __init__(self, groups: Any, enabled: bool) -> None:
        self.enabled = enabled
        self._groups = iter(groups)
        self._next: Group | None = next(self._groups, None)
        self.kept = self.leaks = 0
        self._used: set[str] = set()

    def chain(self, group: Group, rules: RuleChain) -> Group:
        chosen = rules(group)
        nxt = self._next
        if nxt is None or nxt.prompt.id != group.prompt.id:
            return chosen
        self._next = next(self._groups, None)
        self.leaks += sum((c.error or "").startswith(LEAK) for c in nxt.scores)
        if chosen.samples:
            return chosen
        self._used.add(group.prompt.id)
        return rules.others(nxt)

    def count(self, group: Group, kept: Group) -> None:
        if group.prompt.id in self._used:
            self.kept += len(kept.samples)

    def check_finished(self) -> None:
        if self._next is not None:
            raise RsftError(f"rationalized.jsonl: prompt {self._next.prompt.id!r} is not an unsolved prompt of "
                            "scored.jsonl in order; redo the round's rationalize stage (rsft rationalize --force)")


class Decontaminate:
    """Step 2: what the rules kept, and the rows replayed from earlier rounds, less what overlaps the
    held-out prompts (`Contamination`); it counts the kept samples it took in and all it dropped.

    It removes samples and rows and never reorders or adds any. Pairs do not pass through it: they are made
    of the whole scored group, which `decontaminated_pairs` tests the same way (`PairsWriter`).
    """

    def __init__(self, contamination: Contamination) -> None:
        self._c = contamination
        self.samples_in = self.dropped = 0

    def group(self, group: Group) -> Group:
        """`group` less its samples that overlap (possibly none left)."""
        clean, dropped = self._c.groups([group])
        self.samples_in += len(group.samples)
        self.dropped += dropped
        return clean[0] if clean else group.keep([])

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replayed SFT rows less those that overlap."""
        keep, dropped = self._c.rows(rows)
        self.dropped += dropped
        return keep


class KeptWriter:
    """kept.jsonl: each group as the rules and decontamination left it (an empty group is not written); and
    what selection.json says of those samples: how many, their summed selection score, how many a judge
    scored and passed, how many stopped at max_new_tokens. Later rounds replay from this file.

    It writes what it is given; choosing is the steps' business.
    """

    def __init__(self, path: Path, pass_threshold: float) -> None:
        self._out = JsonlWriter(path)
        self._pass = pass_threshold
        self.kept = self.prompts = self.truncated = self.judged = self.judge_passed = 0
        self.score_sum = 0.0

    def __enter__(self) -> KeptWriter:
        self._out.__enter__()
        return self

    def write(self, group: Group) -> None:
        if not group.samples:
            return
        self._out.write(group.to_json())
        self.prompts += 1
        for s, c in group.scored:
            self.kept += 1
            self.score_sum += c.value
            self.truncated += s.finish_reason == "length"
            if "judge" in c.parts:
                self.judged += 1
                self.judge_passed += c.parts["judge"] >= self._pass

    def notice(self, r: int) -> None:
        if self.truncated:  # only possible when the chain has no drop_truncated rule
            notice(f"round {r}: {self.truncated} kept samples stopped at sampling.max_new_tokens and are trained "
                   "with EOS appended; add {rule: drop_truncated} to the selection rules to drop them")

    def __exit__(self, *exc: Any) -> None:
        self._out.__exit__(*exc)


class PairsWriter:
    """pairs.jsonl: each scored group's preference pairs (TRL DPO format, `decontaminated_pairs`, the
    function `rsft export pairs` calls too), so a held-out prompt gives no pair, as it gives no SFT row.

    It takes the whole scored group, not what the rules kept: a pair needs the worst samples. It makes no
    pairs of agent trajectories with tool output (`has_tool_output`): it counts those groups and says so.
    """

    def __init__(self, path: Path, contamination: Contamination) -> None:
        self._out = JsonlWriter(path)
        self._c = contamination
        self.trajectory_groups = self.decontaminated = 0

    def __enter__(self) -> PairsWriter:
        self._out.__enter__()
        return self

    def write(self, group: Group) -> None:
        if has_tool_output(group):  # TRL's DPOTrainer would put the tool output in its loss
            self.trajectory_groups += 1
            return
        rows, dropped = decontaminated_pairs(group, self._c)
        self.decontaminated += dropped
        for row in rows:
            self._out.write(row)

    def notice(self, r: int) -> None:
        if self.trajectory_groups:
            notice(f"round {r}: pairs.jsonl has no pairs of agent trajectories ({self.trajectory_groups} groups): "
                   "TRL's DPOTrainer scores every token after the prompt, tool output included (it has no "
                   "assistant-only mask)")

    def __exit__(self, *exc: Any) -> None:
        self._out.__exit__(*exc)


def nothing_kept(r: int, rules: RuleChain, clean: Decontaminate, kept: int) -> RsftError:
    """The error of a round that keeps nothing to train on: how many samples each step left, and what to change
    (the rules and the sampling, or, when decontamination took what the rules kept, the data)."""
    left = ", ".join(f"{name}: {n}" for name, n in [*rules.survivors(), ("decontamination", kept)])
    if clean.samples_in:  # the rules kept samples: decontamination took them all
        fix = ("every sample the rules kept shares text with a held-out prompt (selection.decontaminate); train on "
               "prompts that are not the eval prompts")
    else:
        fix = "lower the pass threshold, raise sampling.n, or warm-start the model"
    return RsftError(f"round {r}: selection kept no samples (left after each rule: {left}); {fix}")


def write_selection(path: Path, rules: RuleChain, clean: Decontaminate, kept: KeptWriter, replay: ReplayWriter,
                    pairs: PairsWriter, rationales: Rationales, control: RandomControl | None) -> None:
    """selection.json, from the counts each step and writer kept (`decontaminated`: samples and replayed rows
    kept out of selected.jsonl; `pairs_decontaminated`: scored samples kept out of pairs.jsonl)."""
    atomic_write_json(path, {  # under the metric keys where the metrics row takes them over
        M.SURVIVORS: dict(rules.survivors()), M.KEPT: kept.kept, "rows": kept.kept, M.REPLAYED: replay.replayed,
        M.DECONTAMINATED: clean.dropped, "pairs_decontaminated": pairs.decontaminated,
        M.SELECTION_SCORE: kept.score_sum / kept.kept if kept.kept else None,
        M.JUDGE_PRECISION_KEPT: kept.judge_passed / kept.judged if kept.judged else None,
        "pairs_skipped_trajectories": pairs.trajectory_groups,
        M.KEPT_COVERAGE: kept.prompts / rules.groups_in if rules.groups_in else None,
        M.DISTINCT_AFTER: rules.distinct(),
        M.RATIONALIZED: rationales.kept if rationales.enabled else None,
        M.RATIONALIZE_LEAKS: rationales.leaks if rationales.enabled else None,
        M.CONTROL: "random" if control is not None else None,
    })
