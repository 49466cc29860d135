"""The score stage: one score per sample, appended to scored.jsonl per batch; failures stay on their sample.

Adaptive allocation already scored its groups with the same scorer while it
sampled; those scores are kept, not recomputed. A round where the scorer failed
on every sample stops: its errors are moved to ``scored.failed.jsonl``, so a
fixed scorer scores afresh on the next run. When the samples themselves were
drawn by those scores (adaptive allocation), the stage asks the runner to redo
the sample stage too (`RedoFrom`), rather than deleting another stage's files.
"""

from __future__ import annotations

from typing import Any

from rsft.errors import RedoFrom
from rsft.records import Group
from rsft.rundir import read_groups, resumable_map
from rsft.scoring.base import score_groups
from rsft.stages.run import Run


def score_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    groups = read_groups(rd.samples)

    def score(batch: list[Group]) -> list[dict[str, Any]]:
        todo = [g for g in batch if not g.scores and g.samples]
        scored = score_groups(run.scorer, todo, run.cfg.scoring.timeout) if todo else []
        done = {id(old): new for old, new in zip(todo, scored, strict=True)}
        return [done.get(id(g), g).to_json() for g in batch]

    resumable_map(groups, rd.scored, score, max(1, run.cfg.sampling.batch_size), f"round {r} score",
                  lambda g: g.prompt.id)
    scores = [c for g in read_groups(rd.scored) for c in g.scores]
    if scores and all(not c.ok for c in scores):
        first = next(c.error for c in scores)
        failed = rd.scored.with_name("scored.failed.jsonl")
        rd.scored.replace(failed)
        message = (f"round {r}: the scorer failed on all {len(scores)} samples (first error: {first}); "
                   f"the errors are in {failed}; fix the scorer and run again")
        # adaptive sampling chose how many to draw from these errors: its samples are redrawn too
        raise RedoFrom("sample" if run.cfg.sampling.allocation != "uniform" else "score", message)
