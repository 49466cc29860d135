"""One SFT training as records: what is asked (`TrainJob`), what that means here (`TrainPlan`), and its key.

A `TrainJob` is the argument of `rsft.learning.training.sft.train_sft` and, as JSON, the
spec each rank of a multi-process training reads (`rsft.learning.training.launch`
writes it, `sft_job` reads it back): the init model, where the model goes, the
train settings, the seed, the model dtype, the trackers. What is not JSON stays
out of it: the rows (a file beside the spec), callbacks (in-process objects) and
the trackers' environment (it may hold a token).

`plan_job` resolves the two things the settings leave to the machine, once,
in the driver: the step count (`rsft.learning.training.steps`) and the precision
(`rsft.learning.training.precision`). The ranks train by the plan they are handed; they
decide neither again. `fingerprint` hashes the job, the plan and the rows, so
a model in place is reused only when it was trained exactly so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.config import TrainConfig
from rsft.core.rundir.layout import TRAIN_RESULT, work_dir
from rsft.learning.training.precision import Precision, decide_precision
from rsft.learning.training.steps import Steps, decide_steps, global_batch


@dataclass(frozen=True)
class TrainJob:
    """One SFT training as asked. `train` is not copied: it must not change while the job runs."""

    init_path: str  # the model it starts from (a directory or a hub id)
    out_dir: Path  # where the trained model goes; its checkpoints go to work_dir(out_dir) meanwhile
    train: TrainConfig
    seed: int = 0
    dtype: str = "float32"  # the dtype the model is loaded and trained in (model.dtype)
    label: str | None = "train"  # the progress bar's name; None: no bar (nor the precision notices)
    report_to: tuple[str, ...] = ()  # TRL's trackers

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "report_to", tuple(self.report_to))

    @property
    def work(self) -> Path:
        """Checkpoints while it trains, and the finished model before it is renamed into `out_dir`."""
        return work_dir(self.out_dir)

    @property
    def adapter(self) -> Path:
        """Where a LoRA adapter is kept, beside the merged model."""
        return self.out_dir.parent / f"{self.out_dir.name}-adapter"

    def to_json(self) -> dict[str, Any]:
        return {"init_path": self.init_path, "out_dir": str(self.out_dir), "train": self.train.model_dump(mode="json"),
                "seed": self.seed, "dtype": self.dtype, "label": self.label, "report_to": list(self.report_to)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainJob:
        return cls(**{**data, "train": TrainConfig.model_validate(data["train"])})


@dataclass(frozen=True)
class TrainPlan:
    """What a `TrainJob` means on this machine for its rows: the steps and the precision, decided."""

    steps: Steps
    precision: Precision

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainPlan:
        return cls(steps=Steps(**data["steps"]), precision=Precision(**data["precision"]))


def plan_job(job: TrainJob, rows: int | None) -> TrainPlan:
    """The steps for `rows` training rows (None: before there are rows, TRL counts) and the precision,
    for `job` on this machine."""
    return plan_for(job.train, rows, job.dtype, job.init_path)


def plan_for(train: TrainConfig, rows: int | None, dtype: str = "float32", init_path: str | None = None) -> TrainPlan:
    """`plan_job` from the settings alone; without `init_path` (a check before the model exists) the
    precision is that of a model as wide as BF16_MIN_WIDTH or wider."""
    return TrainPlan(steps=decide_steps(train, rows, global_batch(train)),
                     precision=decide_precision(train, dtype, init_path))


def fingerprint(rows: list[dict[str, Any]], job: TrainJob, plan: TrainPlan) -> str:
    """sha256 of what a training run depends on: the rows, the settings and their plan (the steps and
    precision they resolved to here), and the init model (its own result's fingerprint when rsft
    trained it, so a retrained previous round changes this one). Not the label, the trackers or
    where the model goes."""
    init_result = Path(job.init_path) / TRAIN_RESULT
    init_key = None
    if init_result.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            init_key = json.loads(init_result.read_text(encoding="utf-8")).get("fingerprint")
    h = hashlib.sha256(json.dumps({"init": job.init_path, "init_fingerprint": init_key, "seed": job.seed,
                                   "train": job.train.model_dump(mode="json"), "plan": plan.to_json()},
                                  sort_keys=True).encode())
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()
