"""The order of the stages, and the one function that runs a stage: skip it when done, check that what it
needs is done, time it, and write its done-marker last.

Round stages run in `ROUND_STAGES` order in ``round-NNN/``; the base stages
(build or warm-start the base model, then evaluate it) run once in the run
directory. A stage that finds an earlier stage's output unusable raises
`RedoFrom`: the runner clears that stage and everything after it, exactly as
``--force`` would, and reports the stage's message.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rsft.core.errors import RedoFrom, RsftError
from rsft.core.rundir.layout import TRAIN_RESULT, RoundDir, is_done, mark_done, record_time
from rsft.stages.base_model import base_stage
from rsft.stages.evaluate import eval_base_stage, eval_stage
from rsft.stages.metrics import metrics_stage
from rsft.stages.monitor import monitor_stage
from rsft.stages.rationalize import rationalize_stage
from rsft.stages.run import Run
from rsft.stages.sample import sample_stage
from rsft.stages.score import score_stage
from rsft.stages.select import select_stage
from rsft.stages.train import train_stage

ROUND_STAGES: dict[str, Callable[[Run, int], None]] = {
    "sample": sample_stage, "score": score_stage, "rationalize": rationalize_stage, "select": select_stage, "train": train_stage,
    "eval": eval_stage, "metrics": metrics_stage, "monitor": monitor_stage,
}
ROUND_STAGE_NAMES = tuple(ROUND_STAGES)


def resumed_from(rd: RoundDir, stage: str, passes: tuple[str, ...] = ("draw", "presample")) -> list[Path]:
    """The files a stage resumes from: a forced or redone stage deletes them first (`passes`: the
    allocation's sampling passes, each with its own file)."""
    return {"sample": [*(rd.pass_file(p) for p in dict.fromkeys(("draw", "presample", *passes))), rd.allocation],
            "score": [rd.scored], "rationalize": [rd.rationalized], "train": [rd.model_work, rd.model / TRAIN_RESULT]}.get(stage, [])


def reset_from(rd: RoundDir, stage: str, passes: tuple[str, ...] = ("draw", "presample")) -> None:
    """Un-mark `stage` and the round's later stages, and delete what `stage` onwards would resume from."""
    for later in ROUND_STAGE_NAMES[ROUND_STAGE_NAMES.index(stage):]:
        rd.done_marker(later).unlink(missing_ok=True)
        for target in resumed_from(rd, later, passes):
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def check_ready(run: Run, r: int, stage: str) -> None:
    """What a round stage needs is done: the round's earlier stages, and for sampling the previous round's model."""
    if stage not in ROUND_STAGE_NAMES:
        raise RsftError(f"unknown stage {stage!r}, expected one of {list(ROUND_STAGE_NAMES)}")
    if r < 0:
        raise RsftError(f"round {r}: rounds are numbered from 0")
    if stage == "sample" and r > 0 and not run.round(r - 1).done("train"):
        raise RsftError(f"round {r}: round {r - 1} has no trained model yet; run its stages first")
    for prev in ROUND_STAGE_NAMES[: ROUND_STAGE_NAMES.index(stage)]:
        if not run.round(r).done(prev) and not skipped(run, prev):
            raise RsftError(f"round {r}: stage '{prev}' has not finished; "
                            f"run `rsft {prev} {run.dir} --round {r}` first")


def skipped(run: Run, stage: str) -> bool:
    """A stage the config leaves out (rationalize without `selection.rationalize`): never run, never waited for."""
    return stage == "rationalize" and run.cfg.selection.rationalize is None


def _timed(where: Path, name: str, call: Callable[[], None]) -> None:
    where.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    call()
    record_time(where, name, time.perf_counter() - t0)
    mark_done(where, name)


def run_stage(run: Run, r: int, name: str, force: bool = False) -> bool:
    """Run one stage of round r unless its done-marker exists; True if it ran.

    `force` redoes the stage from scratch and un-marks the round's later stages
    (whose inputs it replaces); it does not touch later rounds.
    """
    check_ready(run, r, name)
    rd = run.round(r)
    if (rd.done(name) and not force) or skipped(run, name):
        return False
    if force:
        reset_from(rd, name, run.allocation.passes)
    fn = ROUND_STAGES[name]
    if name == "train":
        run.release_engines(keep_switchable=True)  # training needs the memory the sampling engine holds
    try:
        _timed(rd.path, name, lambda: fn(run, r))
    except RedoFrom as e:
        reset_from(rd, e.stage, run.allocation.passes)
        raise
    return True


BASE_STAGES: dict[str, Callable[[Run], None]] = {"base": base_stage, "base-eval": eval_base_stage}


def run_base_stage(run: Run, name: str) -> bool:
    """Run one of the base stages (prepare the base model; evaluate it) unless done; True if it ran."""
    if is_done(run.dir, name):
        return False
    _timed(run.dir, name, lambda: BASE_STAGES[name](run))
    return True
