"""What Ray's workers run: the sample stage's drawing on an actor, and the score stage's scoring as a task.

Each opens the run directory itself (`Run.open`), so a worker builds exactly
what the driver would have built, from the config written there: the engine on
the round's model, the scorer, GVM's plan. A worker process keeps the `Run` of
a run directory it has opened (`_runs`), so the tasks of a stage, which share
worker processes, build a scorer (a reward model, a sandbox pool) once, not
once per batch. Nothing here writes to the run directory: the driver writes.
"""

from __future__ import annotations

from typing import Any

from rsft.records import Group, Prompt
from rsft.stages.run import Run
from rsft.stages.sample import drawer, presampler
from rsft.stages.score import score_batch

_runs: dict[str, Run] = {}


def _run(run_dir: str) -> Run:
    if run_dir not in _runs:
        _runs[run_dir] = Run.open(run_dir)
    return _runs[run_dir]


class SampleWorker:
    """One engine on round r's sampling model; `draw` and `presample` give a batch's JSONL lines."""

    def __init__(self, run_dir: str, r: int) -> None:
        self.run, self.r = Run.open(run_dir), r
        self.run.engine(self.run.sampler(r))  # load the engine now: a worker that cannot is reported at start
        self._draw: Any = None

    def draw(self, batch: list[Prompt]) -> list[dict[str, Any]]:
        if self._draw is None:  # GVM's plan exists only once the presample pass is done
            self._draw = drawer(self.run, self.r)
        return self._draw(batch)

    def presample(self, batch: list[Prompt]) -> list[dict[str, Any]]:
        return presampler(self.run, self.r)(batch)

    def close(self) -> None:
        self.run.release_engines()


def score_task(run_dir: str, batch: list[Group]) -> list[dict[str, Any]]:
    """The score stage's lines for one batch of groups (a Ray task)."""
    return score_batch(_run(run_dir), batch)
