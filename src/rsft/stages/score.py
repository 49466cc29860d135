"""The score stage: one score per sample, appended to scored.jsonl per batch; failures stay on their sample.

An allocation that scores while sampling (`scores_while_sampling`: early_stop, carry, gvm) already
scored its groups with the same scorer; those scores are kept, not recomputed. A round where the scorer failed
on every sample stops: its errors are moved to ``scored.failed.jsonl``, so a
fixed scorer scores afresh on the next run. When the samples themselves were
drawn by those scores, the stage asks the runner to redo
the sample stage too (`RedoFrom`), rather than deleting another stage's files.

With `monitor.judge_samples` (or a reward_hacking trigger and a separate `eval.scorer`), every sample is
scored by the judge too, kept as ``parts["judge"]``: the reward-hacking metrics compare the two.

Where the batches are scored is the executor's (`rsft.stages.executors`): in this process, or each batch as a Ray task
(`rsft.stages.workers.score_task`); the driver appends the results in prompt order either way.
"""

from __future__ import annotations

from typing import Any

from rsft.core.errors import RedoFrom
from rsft.core.records import Group, Score
from rsft.core.rundir.files import count_lines, iter_groups
from rsft.core.rundir.resumable import resumable_map
from rsft.parts.scoring.base import score_groups, scorer_name
from rsft.stages.executors import executor_for
from rsft.stages.run import Run


def with_judge(groups: list[Group], judged: list[Group]) -> list[Group]:
    """Each score gains the judge's verdict on the same sample as ``parts["judge"]`` (absent on a judge error)."""
    out = []
    for g, j in zip(groups, judged, strict=True):
        scores = [Score(c.value, {**c.parts, **({"judge": float(v.value)} if v.ok else {})}, c.error, c.answer)
                  for c, v in zip(g.scores, j.scores, strict=True)]
        out.append(g.with_scores(scores))
    return out


def score_batch(run: Run, batch: list[Group]) -> list[dict[str, Any]]:
    """One line per group of `batch`: its scores (kept when adaptive sampling already scored it), and the
    judge's when round samples are judged."""
    todo = [g for g in batch if not g.scores and g.samples]
    scored = score_groups(run.scorer, todo, run.cfg.scoring.timeout) if todo else []
    done = {id(old): new for old, new in zip(todo, scored, strict=True)}
    out = [done.get(id(g), g) for g in batch]
    if run.cfg.judge_samples:
        out = with_judge(out, score_groups(run.eval_scorer, [Group(g.prompt, g.samples) for g in out],
                                           run.cfg.scoring.timeout))
    return [g.to_json() for g in out]


def score_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    mapper = executor_for(run).scoring(run, r, lambda batch: score_batch(run, batch))  # the driver writes, in prompt order
    resumable_map(iter_groups(rd.samples), rd.scored, None, max(1, run.cfg.sampling.batch_size), f"round {r} score",
                  lambda g: g.prompt.id, total=count_lines(rd.samples), mapper=mapper)
    n, drawn, first = 0, 0, None  # drawn: samples the scorer saw (the others failed while sampling)
    for g in iter_groups(rd.scored):
        for c in g.scores:
            if c.ok:
                return
            n, first = n + 1, first if first is not None else c.error
            drawn += not (c.error or "").startswith(SAMPLING)
    if n:
        failed = rd.scored_failed
        rd.scored.replace(failed)
        if not drawn:  # nothing reached the scorer: the samples must be drawn again once the cause is fixed
            cause = what_failed(run, str(first)[len(SAMPLING):])
            raise RedoFrom("sample", f"round {r}: {cause} on all {n} samples, so none could be scored (first "
                                     f"error: {str(first)[len(SAMPLING):]}); the errors are in {failed}; fix it and "
                                     "run again")
        message = (f"round {r} ({scorer_name(run.scorer)}): the scorer failed on all {n} samples (first error: "
                   f"{first}); the errors are in {failed}; fix the scorer and run again")
        # an allocation that scores while sampling chose how many to draw from these errors: redrawn too
        raise RedoFrom("sample" if run.allocation.scores_while_sampling else "score", message)


SAMPLING = "sampling: "  # how `score_groups` marks a sample that failed before the scorer saw it


def what_failed(run: Run, error: str) -> str:
    """What to blame for samples that failed while drawn: the agent environment, or the engine."""
    if error.startswith("environment:"):
        env = repr(run.cfg.rollout.env) if run.cfg.rollout.env else "the task's own"
        return f"the environment ({env}, rollout.env) failed"
    return f"sampling (engine {run.cfg.sampling.engine!r}, sampling.engine) failed"
