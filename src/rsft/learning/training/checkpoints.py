"""Resuming a killed training run: which checkpoint is complete, and the loss the whole run would record.

Two things transformers' Trainer does not do for us:

- **A kill mid-save wedges the run.** The Trainer writes ``checkpoint-N/`` in
  place, and ``resume_from_checkpoint=True`` takes the highest-numbered
  directory whether complete or not; every later run then fails on the torn
  one. So `CheckpointLedger` writes a marker into a checkpoint once every rank
  has saved it (its `on_save`), and only then removes the older ones (the
  Trainer's own rotation is off: it would delete the last complete checkpoint
  before the new one is marked). `resume_point` removes what has no marker and
  returns the newest marked checkpoint, which the caller passes to
  ``train()`` by path.
- **The recorded loss restarts at a resume.** ``TrainOutput.training_loss`` is
  the mean over the steps run since the resume. The ledger makes every save
  step a logging step too, so a checkpoint's ``log_history`` holds the loss of
  every step up to it (`logged_loss`); `run_loss` adds the steps after the
  resume and divides by all of them: what an uninterrupted run records.
- **A resume from the last step trains one more.** Resumed at ``max_steps``
  (killed during the final save), the Trainer runs a step past the end.
  `end_guard` stops it before the first step, once the checkpoint's weights are
  loaded, by raising `AlreadyFinished` for the caller to catch.

It does not make a checkpoint durable against power loss (nothing is fsynced:
a killed process's writes survive, a crashed machine's may not), and it does not
repair a checkpoint: an unmarked one is deleted and its steps are trained again.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "rsft-complete"
_NAME = re.compile(r"checkpoint-(\d+)")


def _step(path: Path) -> int:
    m = _NAME.fullmatch(path.name)
    return int(m.group(1)) if m else -1


def checkpoints(work: Path) -> list[Path]:
    """The ``checkpoint-N`` directories under `work`, oldest step first."""
    found = [p for p in Path(work).glob("checkpoint-*") if p.is_dir() and _step(p) >= 0]
    return sorted(found, key=_step)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / MARKER).is_file()


def remove_checkpoint(checkpoint: Path) -> None:
    """Unmark first, then delete: a kill half-way leaves an unmarked directory, never a marked torn one."""
    (checkpoint / MARKER).unlink(missing_ok=True)
    shutil.rmtree(checkpoint, ignore_errors=True)


def resume_point(work: Path) -> Path | None:
    """The newest complete checkpoint in `work`, after removing every incomplete one (a save a kill
    interrupted, or one from an rsft that wrote no marker); None when there is none to resume from."""
    complete = []
    for c in checkpoints(work):
        if is_complete(c):
            complete.append(c)
        else:
            remove_checkpoint(c)
    return complete[-1] if complete else None


def logged_loss(checkpoint: Path) -> tuple[int, float]:
    """(global step, sum of the per-step losses up to it) from a checkpoint's trainer state.

    Each logged ``loss`` is the mean over the steps since the previous log, so it counts
    (step − previous step) times. The ledger logs at every save, so nothing is left unlogged."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    step, total, previous = int(state["global_step"]), 0.0, 0
    for entry in state.get("log_history", []):
        if "loss" in entry and entry.get("step", 0) <= step:
            total += float(entry["loss"]) * (int(entry["step"]) - previous)
            previous = int(entry["step"])
    return step, total


def logged_tokens(checkpoint: Path) -> float:
    """TRL's running count of tokens trained on (``num_tokens``) at a checkpoint's step, 0 if not logged."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    counts = [e["num_tokens"] for e in state.get("log_history", [])
              if "num_tokens" in e and e.get("step", 0) <= int(state["global_step"])]
    return counts[-1] if counts else 0


def run_loss(training_loss: float | None, steps: int, start_step: int, start_sum: float) -> float:
    """The mean training loss over all `steps`, when the Trainer's `training_loss` covers only the steps
    after `start_step` (the resume) and `start_sum` is the loss summed over the ones before."""
    if training_loss is None or steps <= 0:
        return math.nan
    if start_step == 0:
        return float(training_loss)
    return (start_sum + float(training_loss) * (steps - start_step)) / steps


class AlreadyFinished(Exception):
    """The checkpoint resumed from is the run's last step: its weights are loaded, there is nothing to train."""


def end_guard() -> Any:
    """The TrainerCallback that raises `AlreadyFinished` at train begin when the resumed step is the last.

    It must come first among the callbacks: the ones after it (a progress bar) have not started yet."""
    from transformers import TrainerCallback

    class EndGuard(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if 0 < state.max_steps <= state.global_step:
                raise AlreadyFinished(state.global_step)

    return EndGuard()


def checkpoint_ledger() -> Any:
    """The TrainerCallback that logs at every save and marks each checkpoint complete (see the module)."""
    from transformers import TrainerCallback

    class CheckpointLedger(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            # added after the flow callback (and a caller's stopper): a step that saves or ends also logs,
            # so the loss of every step up to a checkpoint is in the log history the checkpoint carries
            if control.should_save or control.should_training_stop:
                control.should_log = True
            return control

        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # every rank has written its part (its RNG state, its shard)
            if args.should_save:
                saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if saved.is_dir():
                    (saved / MARKER).write_text(f"{state.global_step}\n", encoding="utf-8")
                    for older in checkpoints(Path(args.output_dir)):
                        if older != saved:
                            remove_checkpoint(older)
            return control

    return CheckpointLedger()
