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

from rsft.core.records import Group
from rsft.stages.run import Run
from rsft.stages.sample import pass_lines
from rsft.stages.score import score_batch

_runs: dict[str, Run] = {}


def _run(run_dir: str) -> Run:
    if run_dir not in _runs:
        _runs[run_dir] = Run.open(run_dir)
    return _runs[run_dir]


class SampleWorker:
    """One engine on round r's sampling model; each of the allocation's passes (``draw``, GVM's
    ``presample``, a user strategy's own) is a method giving a batch's JSONL lines."""

    def __init__(self, run_dir: str, r: int) -> None:
        self.run, self.r = Run.open(run_dir), r
        self.run.engine(self.run.sampler(r))  # load the engine now: a worker that cannot is reported at start
        self._lines: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "run" not in self.__dict__ or name not in self.run.allocation.passes:
            raise AttributeError(name)
        if name not in self._lines:  # built on first use: GVM's plan exists only once its presample is done
            self._lines[name] = pass_lines(self.run, self.r, name)
        return self._lines[name]

    def close(self) -> None:
        self.run.release_engines()


def score_task(run_dir: str, batch: list[Group]) -> list[dict[str, Any]]:
    """The score stage's lines for one batch of groups (a Ray task)."""
    return score_batch(_run(run_dir), batch)
